// KV-cache policy benchmark (not a pass/fail test): per policy, bytes per cached token, the
// pool's peak for 64 sessions of 1,024 tokens, and decode tokens/s at 1,024 tokens of context
// against the plain contiguous cache. Quality (perplexity) is measured with specdec-score
// --kv_policy by tests/bench/kv_cache_bench.sh. Results: docs/benchmarks/kv_cache.md.
// Usage: kv_cache_bench [--model_dir DIR] [--policies "full;int8;..."]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "common/base/flags.h"
#include "common/kv_cache/kv_cache_config.h"
#include "common/model/model.h"

ABSL_FLAG(std::string, model_dir, "../shared/models/specdec-tiny-py", "checkpoint");
ABSL_FLAG(std::string, policies,
          "full;int8;sink_window:sink=4,window=252;int8+sink_window:sink=4,window=252;"
          "h2o:budget=256,recent=64;int8+h2o:budget=256,recent=64;"
          "hierarchical:sink=4,recent=64,budget=256,pool=4;query_aware:pages=16",
          "';'-separated --kv_policy values");
ABSL_FLAG(int, sessions, 64, "sessions for the peak-memory run");
ABSL_FLAG(int, context, 1024, "tokens per session");
ABSL_FLAG(int, prefill_chunk, 128, "tokens per forward (then commit) while filling sessions");
ABSL_FLAG(int, decode_tokens, 32, "tokens decoded per timing run");
ABSL_FLAG(int, repeats, 3, "timing runs (median reported)");
ABSL_FLAG(int, threads, 0, "compute threads (0: all cores)");

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<int32_t> Tokens(int n, int seed, int64_t vocab) {
  std::vector<int32_t> t;
  uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
  for (int i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    t.push_back(static_cast<int32_t>(x % std::min<int64_t>(vocab, 20000)));
  }
  return t;
}

// Fills a session with `context` tokens, committing after each chunk as a verifier would.
absl::Status Fill(Sequence& seq, const std::vector<int32_t>& tokens, int chunk) {
  for (size_t i = 0; i < tokens.size(); i += chunk) {
    const size_t n = std::min(tokens.size() - i, static_cast<size_t>(chunk));
    // Split further at the policy's compression boundaries, committed as it goes.
    auto r = ForwardCommitted(seq, absl::MakeConstSpan(tokens).subspan(i, n), LogitsWanted::kLast);
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

double DecodeTokensPerSecond(const ModelView& view, int context, int decode, int repeats) {
  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) {
    auto seq = view.NewSequence();
    if (!Fill(*seq, Tokens(context, 1000 + r, view.model().config().vocab_size), 128).ok()) return 0;
    auto start = Clock::now();
    int32_t token = 5;
    for (int i = 0; i < decode; ++i) {
      auto logits = seq->Forward({token}, LogitsWanted::kLast);
      if (!logits.ok()) return 0;
      if (view.kv_cache_config()) (void)seq->Commit(seq->length());
      token = static_cast<int32_t>(std::max_element(logits->row(0), logits->row(0) + logits->cols) - logits->row(0));
    }
    rates.push_back(decode / std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

int Main() {
  ConfigureComputeThreads(absl::GetFlag(FLAGS_threads));
  auto model = Model::Load(absl::GetFlag(FLAGS_model_dir), LoadOptions{"cpu", "f32"});
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  const int sessions = absl::GetFlag(FLAGS_sessions), context = absl::GetFlag(FLAGS_context);
  const int decode = absl::GetFlag(FLAGS_decode_tokens), repeats = absl::GetFlag(FLAGS_repeats);
  const ModelConfig& c = (*model)->config();
  std::printf("model %s: %s\n", absl::GetFlag(FLAGS_model_dir).c_str(), c.Summary().c_str());
  const double plain_rate = DecodeTokensPerSecond(*(*model)->FullView(), context, decode, repeats);
  std::printf("| policy | bytes/token | vs full | peak pool MiB, %d x %d tokens | decode tok/s @%d | vs contiguous |\n",
              sessions, context, context);
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  std::printf("| contiguous (no policy) | %lld | | | %.1f | 1.00 |\n",
              static_cast<long long>(2 * c.num_hidden_layers * c.hidden_size * 4), plain_rate);
  int64_t full_bytes = 0;
  for (absl::string_view text : absl::StrSplit(absl::GetFlag(FLAGS_policies), ';')) {
    auto kv = ParseKvCacheConfig(text);
    if (!kv.ok()) {
      std::fprintf(stderr, "%s\n", kv.status().ToString().c_str());
      return 1;
    }
    // Room for every session at full length, so that the peak is what the policy needs.
    kv->pool_blocks = static_cast<int64_t>(sessions) * ((context + decode + 2 * kv->block_tokens) / kv->block_tokens + 1);
    auto view = (*model)->View(LayerPlan{}, *kv);
    if (!view.ok()) {
      std::fprintf(stderr, "%s\n", view.status().ToString().c_str());
      return 1;
    }
    const KvPoolStats empty = (*view)->kv_pool_stats();
    const int64_t per_token = empty.bytes_per_block / empty.block_tokens;
    {
      std::vector<std::unique_ptr<Sequence>> live;
      for (int s = 0; s < sessions; ++s) {
        live.push_back((*view)->NewSequence());
        auto st = Fill(*live.back(), Tokens(context, s, c.vocab_size), absl::GetFlag(FLAGS_prefill_chunk));
        if (!st.ok()) {
          std::fprintf(stderr, "%s: %s\n", kv->ToString().c_str(), st.ToString().c_str());
          return 1;
        }
      }
    }
    const KvPoolStats after = (*view)->kv_pool_stats();
    const int64_t peak = after.peak_used_blocks * after.bytes_per_block;
    if (kv->policy == KvPolicy::kFull && !kv->int8) full_bytes = peak;
    const double rate = DecodeTokensPerSecond(**view, context, decode, repeats);
    std::printf("| %s | %lld | %s | %.1f%s | %.1f | %.2f |\n", kv->ToString().c_str(),
                static_cast<long long>(per_token),
                full_bytes ? std::to_string(static_cast<double>(peak) / full_bytes).substr(0, 5).c_str() : "",
                peak / 1048576.0, "", rate, rate / plain_rate);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace specdec

int main(int argc, char** argv) {
  specdec::NormalizeFlagSpelling(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return specdec::Main();
}
