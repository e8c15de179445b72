// query_aware benchmark (not a pass/fail test; tests/bench/query_aware_report.sh writes
// docs/benchmarks/query_aware.md from it). Two parts, every figure from this run:
// - speed: decode tokens/s of `full` and `query_aware:pages=P` at --context positions on a
//   checkpoint (default: a generated random Pythia-70M-shaped one), for 1 and 16 sessions decoded
//   together through Sequence::ForwardBatch (one pass, as the verifier batches sessions), with a
//   commit per step; min / median / max over --runs interleaved runs, ratios of the same run; and
//   the bytes of cache attention reads per token (keys, values and, for query_aware, the page
//   summaries scored), from the definition, which query_aware_test checks the kernel against.
// - quality: on a trained checkpoint, perplexity of held-out text and greedy agreement with
//   `full` (the share of positions whose argmax equals full's) for query_aware at several page
//   counts and sink_window at the same token budget, run as a verifier does (chunks of
//   --chunk tokens, each committed), over windows of --context positions.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/base/flags.h"
#include "common/kv_cache/kv_cache_config.h"
#include "common/model/checkpoint_writer.h"
#include "common/model/model.h"
#include "common/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model_dir, "", "speed checkpoint (default: a generated Pythia-70M-shaped one)");
ABSL_FLAG(std::string, quality_model_dir, "", "trained checkpoint for quality (empty: skip)");
ABSL_FLAG(std::string, text_file, "", "held-out text for quality");
ABSL_FLAG(int, context, 2048, "positions per session (speed) and per scoring window (quality)");
ABSL_FLAG(int, decode_tokens, 32, "tokens decoded per session per speed run, ending at --context");
ABSL_FLAG(int, runs, 3, "speed runs (min / median / max)");
ABSL_FLAG(std::string, sessions, "1,16", "concurrent sessions to measure");
ABSL_FLAG(int, pages, 8, "query_aware pages for the speed part");
ABSL_FLAG(std::string, quality_pages, "4,8,16,32", "query_aware pages for the quality part");
ABSL_FLAG(int, quality_tokens, 8192, "tokens of held-out text scored at most");
ABSL_FLAG(int, chunk, 16, "tokens per forward (then commit) in the quality part");
ABSL_FLAG(int, threads, 0, "compute threads (0: the default)");
ABSL_FLAG(std::string, out, "", "write the markdown sections here too");
ABSL_FLAG(bool, speed, true, "run the speed part");

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

struct Spread {
  double min = 0, median = 0, max = 0;
};
Spread SpreadOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v.front(), v[v.size() / 2], v.back()};
}
std::string Show(const Spread& s) { return absl::StrFormat("%.1f (%.1f-%.1f)", s.median, s.min, s.max); }

std::shared_ptr<const ModelView> ViewOf(const Model& model, const std::string& policy, int64_t pool_blocks) {
  auto config = ParseKvCacheConfig(policy);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    std::exit(1);
  }
  config->pool_blocks = pool_blocks;
  auto view = model.View(LayerPlan{}, *config);
  if (!view.ok()) {
    std::fprintf(stderr, "%s\n", view.status().ToString().c_str());
    std::exit(1);
  }
  return *view;
}

void Check(const absl::Status& status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
    std::exit(1);
  }
}

// Bytes of cache one query at `position` reads per head and layer (keys + values, f32).
int64_t BytesRead(int64_t position, int64_t head_dim, int64_t block, int64_t pages) {
  const int64_t eligible = position / block, row = 2 * head_dim * 4;
  if (pages <= 0 || eligible <= pages) return (position + 1) * row;  // full, or nothing to select
  return eligible * row + (pages * block + position - eligible * block + 1) * row;  // summaries + rows
}

std::string Speed(const std::string& dir) {
  auto model = Model::Load(dir, LoadOptions{"cpu", "f32"});
  Check(model.status(), "load");
  const ModelConfig& c = (*model)->config();
  const int context = std::min<int>(absl::GetFlag(FLAGS_context), c.max_position_embeddings);
  const int decode = absl::GetFlag(FLAGS_decode_tokens), runs = absl::GetFlag(FLAGS_runs);
  const int fill = context - decode;
  const int pages = absl::GetFlag(FLAGS_pages);
  std::vector<int> counts;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_sessions), ',')) {
    int n = 0;
    if (absl::SimpleAtoi(s, &n) && n > 0) counts.push_back(n);
  }
  const int most = *std::max_element(counts.begin(), counts.end());
  const std::vector<std::string> policies = {"full", absl::StrFormat("query_aware:pages=%d", pages)};
  struct Arm {
    std::shared_ptr<const ModelView> view;
    std::vector<std::unique_ptr<Sequence>> seqs;
    std::vector<std::vector<double>> rates;  // per session count, per run
  };
  std::vector<Arm> arms;
  for (const std::string& policy : policies) {
    Arm arm;
    arm.view = ViewOf(**model, policy, static_cast<int64_t>(most) * (context / 16 + 2));
    for (int s = 0; s < most; ++s) {
      arm.seqs.push_back(arm.view->NewSequence());
      const std::vector<int32_t> t = Tokens(fill, s, c.vocab_size);
      for (int i = 0; i < fill; i += 256) {
        const int n = std::min(256, fill - i);
        Check(arm.seqs.back()->Forward(absl::MakeConstSpan(t).subspan(i, n), LogitsWanted::kLast).status(), "fill");
        Check(arm.seqs.back()->Commit(i + n), "commit");
      }
    }
    arm.rates.resize(counts.size());
    arms.push_back(std::move(arm));
    std::fprintf(stderr, "filled %d sessions of %d tokens under %s\n", most, fill, policy.c_str());
  }
  // Runs interleave the arms; each decodes from the same filled state (Truncate is exact).
  for (int run = 0; run < runs; ++run) {
    for (size_t k = 0; k < counts.size(); ++k) {
      for (Arm& arm : arms) {
        const int sessions = counts[k];
        std::vector<int32_t> next(sessions, 5);
        auto start = Clock::now();
        for (int step = 0; step < decode; ++step) {
          std::vector<Sequence::BatchItem> items(sessions);
          for (int s = 0; s < sessions; ++s) {
            items[s].sequence = arm.seqs[s].get();
            items[s].tokens = absl::MakeConstSpan(&next[s], 1);
            items[s].wanted = LogitsWanted::kLast;
          }
          auto out = Sequence::ForwardBatch(items);
          for (int s = 0; s < sessions; ++s) {
            Check(out[s].status(), "decode");
            const float* row = out[s]->row(0);
            next[s] = static_cast<int32_t>(std::max_element(row, row + out[s]->cols) - row);
            Check(arm.seqs[s]->Commit(arm.seqs[s]->length()), "commit");
          }
        }
        arm.rates[k].push_back(sessions * decode / std::chrono::duration<double>(Clock::now() - start).count());
        for (int s = 0; s < sessions; ++s) Check(arm.seqs[s]->Truncate(fill), "truncate");
      }
      std::fprintf(stderr, "run %d, %d sessions: full %.1f, query_aware %.1f tok/s\n", run, counts[k],
                   arms[0].rates[k].back(), arms[1].rates[k].back());
    }
  }
  int64_t full_bytes = 0, qa_bytes = 0;
  for (int p = fill; p < context; ++p) {
    full_bytes += BytesRead(p, c.head_dim(), 16, 0);
    qa_bytes += BytesRead(p, c.head_dim(), 16, pages);
  }
  const int64_t per_head = c.num_hidden_layers * c.num_attention_heads;
  full_bytes = full_bytes * per_head / decode;
  qa_bytes = qa_bytes * per_head / decode;
  std::string md = absl::StrFormat(
      "## Decode speed at %d positions\n\n- checkpoint: `%s` (%s)\n- sessions filled to %d "
      "tokens (committed), then %d tokens decoded per session and run (positions %d-%d), every "
      "session's step in one batched pass (`Sequence::ForwardBatch`) and committed; %d runs, "
      "interleaved; tokens/s counts every session's tokens\n- policies: `full` and `%s` (16-token "
      "pages)\n\n| sessions | full tok/s | query_aware tok/s | ratio (same run) |\n|---:|---:|---:|---:|\n",
      context, dir, c.Summary(), fill, decode, fill, context - 1, runs, policies[1]);
  for (size_t k = 0; k < counts.size(); ++k) {
    std::vector<double> ratios;
    for (int r = 0; r < runs; ++r) ratios.push_back(arms[1].rates[k][r] / arms[0].rates[k][r]);
    const Spread ratio = SpreadOf(ratios);
    md += absl::StrFormat("| %d | %s | %s | %.2fx (%.2f-%.2f) |\n", counts[k], Show(SpreadOf(arms[0].rates[k])),
                          Show(SpreadOf(arms[1].rates[k])), ratio.median, ratio.min, ratio.max);
  }
  md += absl::StrFormat(
      "\nCache read by attention per decoded token (all layers and heads, keys + values + "
      "summaries, mean over the decoded positions, from the definition): full %.2f MiB, %s %.2f "
      "MiB (%.1f%% of full). For scale, the f32 weights a batched pass reads once (layers and "
      "LM head): %.1f MiB.\n",
      full_bytes / 1048576.0, policies[1], qa_bytes / 1048576.0, 100.0 * qa_bytes / full_bytes,
      4.0 * (c.num_hidden_layers * (4.0 * c.hidden_size * c.hidden_size + 2.0 * c.hidden_size * c.intermediate_size) +
             1.0 * c.hidden_size * c.vocab_size) / 1048576.0);
  return md;
}

struct Scores {
  double nll = 0;
  int64_t scored = 0;
  std::vector<int32_t> argmax;
};

// Teacher-forced scoring of `ids` in windows of `context` tokens, each window a fresh session fed
// `chunk` tokens per forward and committed after each.
Scores Score(const ModelView& view, const std::vector<int32_t>& ids, int context, int chunk) {
  Scores s;
  for (size_t begin = 0; begin + 1 < ids.size(); begin += context) {
    const size_t end = std::min(ids.size() - 1, begin + context);
    auto seq = view.NewSequence();
    for (size_t i = begin; i < end; i += chunk) {
      const size_t n = std::min<size_t>(chunk, end - i);
      auto logits = seq->Forward(absl::MakeConstSpan(ids).subspan(i, n));
      Check(logits.status(), "score");
      for (size_t r = 0; r < n; ++r) {
        const float* row = logits->row(static_cast<int64_t>(r));
        const float top = *std::max_element(row, row + logits->cols);
        double z = 0;
        for (int64_t k = 0; k < logits->cols; ++k) z += std::exp(static_cast<double>(row[k]) - top);
        s.nll += top + std::log(z) - row[ids[i + r + 1]];
        s.scored += 1;
        s.argmax.push_back(static_cast<int32_t>(std::max_element(row, row + logits->cols) - row));
      }
      Check(seq->Commit(seq->length()), "commit");
    }
  }
  return s;
}

std::string Quality(const std::string& dir, const std::string& text_file) {
  auto tokenizer = Tokenizer::FromFile(dir + "/tokenizer.json");
  Check(tokenizer.status(), "tokenizer");
  std::ifstream in(text_file);
  std::stringstream text;
  text << in.rdbuf();
  auto all = (*tokenizer)->Encode(text.str());
  Check(all.status(), "tokenize");
  std::vector<int32_t> ids(all->begin(), all->begin() + std::min<size_t>(all->size(), absl::GetFlag(FLAGS_quality_tokens) + 1));
  auto model = Model::Load(dir, LoadOptions{"cpu", "f32"});
  Check(model.status(), "load");
  const int context = std::min<int>(absl::GetFlag(FLAGS_context), (*model)->config().max_position_embeddings);
  const int chunk = absl::GetFlag(FLAGS_chunk);
  std::vector<std::string> policies = {"full"};
  for (absl::string_view p : absl::StrSplit(absl::GetFlag(FLAGS_quality_pages), ',')) {
    int pages = 0;
    if (!absl::SimpleAtoi(p, &pages)) continue;
    // The same budget: `pages` whole pages + the partial one for query_aware; sink + window
    // committed tokens (plus at most a block of slack and the uncommitted chunk) for sink_window.
    policies.push_back(absl::StrFormat("query_aware:pages=%d", pages));
    policies.push_back(absl::StrFormat("sink_window:sink=4,window=%d", pages * 16 - 4));
  }
  std::string md = absl::StrFormat(
      "## Quality on held-out text\n\n- checkpoint: `%s`; text: `%s`, first %d tokens scored, in "
      "windows of %d positions, %d tokens per forward, each committed (as a verifier runs)\n"
      "- agreement: positions whose argmax equals full's (teacher forced)\n\n"
      "| policy | tokens attended per query (at most) | perplexity | vs full | greedy agreement |\n"
      "|---|---:|---:|---:|---:|\n",
      dir, text_file, static_cast<int>(ids.size()) - 1, context, chunk);
  Scores full;
  for (const std::string& policy : policies) {
    const Scores s = Score(*ViewOf(**model, policy, 0), ids, context, chunk);
    if (policy == "full") full = s;
    int64_t same = 0;
    for (size_t i = 0; i < s.argmax.size(); ++i) same += s.argmax[i] == full.argmax[i];
    const double ppl = std::exp(s.nll / s.scored), full_ppl = std::exp(full.nll / full.scored);
    auto config = ParseKvCacheConfig(policy);
    std::string budget = "all";
    if (config->policy == KvPolicy::kQueryAware) budget = absl::StrFormat("%d", config->pages * 16 + 16);
    if (config->policy == KvPolicy::kSinkWindow) budget = absl::StrFormat("%d", config->sink + config->window + 16 + chunk);
    md += absl::StrFormat("| `%s` | %s | %.3f | %+.2f%% | %.2f%% |\n", policy, budget, ppl,
                          100.0 * (ppl / full_ppl - 1), 100.0 * same / s.argmax.size());
    std::fprintf(stderr, "%s: perplexity %.3f\n", policy.c_str(), ppl);
  }
  return md;
}

int Main() {
  if (absl::GetFlag(FLAGS_threads) > 0) ConfigureComputeThreads(absl::GetFlag(FLAGS_threads));
  std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (dir.empty()) {
    dir = (std::filesystem::temp_directory_path() / "specdec_query_aware_bench_pythia70m").string();
    if (!std::filesystem::exists(dir + "/config.json")) {
      std::filesystem::create_directories(dir);
      Check(WriteRandomCheckpoint(*PresetConfig("pythia-70m"), CheckpointOptions{1, "f32", 1, ""}, dir), "write");
    }
  }
  std::string md = absl::GetFlag(FLAGS_speed) ? Speed(dir) : "";
  std::printf("%s\n", md.c_str());
  std::fflush(stdout);
  if (!absl::GetFlag(FLAGS_quality_model_dir).empty()) {
    const std::string q = Quality(absl::GetFlag(FLAGS_quality_model_dir), absl::GetFlag(FLAGS_text_file));
    std::printf("%s\n", q.c_str());
    md += "\n" + q;
  }
  if (!absl::GetFlag(FLAGS_out).empty()) std::ofstream(absl::GetFlag(FLAGS_out)) << md;
  return 0;
}

}  // namespace
}  // namespace specdec

int main(int argc, char** argv) {
  specdec::NormalizeFlagSpelling(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return specdec::Main();
}
