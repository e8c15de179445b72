// specdec-score: next-token scores of a token sequence (top-k ids and logits, logsumexp) and
// the perplexity of a text file. This is how model quality is measured (e.g. KV policies).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/base/flags.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/kv_cache/kv_cache_config.h"
#include "common/model/model.h"
#include "common/sampling/logprobs.h"
#include "common/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model_dir, "", "Hugging Face GPT-NeoX checkpoint folder");
ABSL_FLAG(std::string, ids, "",
          "token ids to score, e.g. 1,2,3 (with --json: per position the logsumexp, the top-k "
          "and next_logprob, the log-probability of the next id)");
ABSL_FLAG(std::string, text_file, "", "text file whose perplexity to measure (tokenized with the model's tokenizer.json)");
ABSL_FLAG(int, top_k, 20, "top-k next tokens reported per position");
ABSL_FLAG(int64_t, window, 1024, "tokens per scoring window for --text_file (capped at the model's context)");
ABSL_FLAG(int64_t, max_tokens, 0, "score at most this many tokens of --text_file (0: all)");
ABSL_FLAG(bool, json, false, "JSON lines output");
ABSL_FLAG(std::string, device, "auto", "auto, cpu or cuda");
ABSL_FLAG(int, threads, 0, "compute threads (0: all cores)");
ABSL_FLAG(std::string, kv_policy, "",
          "score through the paged KV cache under this policy (full, int8, sink_window:sink=4,window=1020, "
          "h2o:budget=256,recent=64, hierarchical:..., query_aware:pages=8, int8+<policy>); tokens are fed "
          "--kv_chunk at a time and committed after each forward, as a verifier does. Empty: one "
          "uncached forward per window");
ABSL_FLAG(int64_t, kv_chunk, 1, "tokens per forward with --kv_policy (1: decode)");
ABSL_FLAG(int64_t, kv_pool_blocks, 0, "blocks in the KV pool with --kv_policy (0: default)");

namespace specdec {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "specdec-score: %s\n", status.ToString().c_str());
  return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

int Main() {
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  if (model_dir.empty()) return Fail(absl::InvalidArgumentError("--model_dir is required"));
  ConfigureComputeThreads(absl::GetFlag(FLAGS_threads));
  auto model = Model::Load(model_dir, LoadOptions{absl::GetFlag(FLAGS_device), "f32"});
  if (!model.ok()) return Fail(model.status());
  const bool json = absl::GetFlag(FLAGS_json);

  std::vector<int32_t> ids;
  const bool per_position = !absl::GetFlag(FLAGS_ids).empty();
  if (per_position) {
    for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_ids), ',')) {
      int32_t id;
      if (!absl::SimpleAtoi(part, &id)) return Fail(absl::InvalidArgumentError("--ids must be comma-separated integers"));
      ids.push_back(id);
    }
  } else if (!absl::GetFlag(FLAGS_text_file).empty()) {
    auto tokenizer = Tokenizer::FromFile(model_dir + "/tokenizer.json");
    if (!tokenizer.ok()) return Fail(tokenizer.status());
    std::ifstream in(absl::GetFlag(FLAGS_text_file), std::ios::binary);
    if (!in) return Fail(absl::NotFoundError(absl::GetFlag(FLAGS_text_file) + ": cannot open"));
    std::stringstream text;
    text << in.rdbuf();
    auto encoded = (*tokenizer)->Encode(text.str());
    if (!encoded.ok()) return Fail(encoded.status());
    ids = *std::move(encoded);
    if (absl::GetFlag(FLAGS_max_tokens) > 0 && static_cast<int64_t>(ids.size()) > absl::GetFlag(FLAGS_max_tokens)) {
      ids.resize(absl::GetFlag(FLAGS_max_tokens));
    }
  } else {
    return Fail(absl::InvalidArgumentError("give --ids 1,2,3 or --text_file FILE"));
  }
  if (ids.size() < 2 && !per_position) return Fail(absl::InvalidArgumentError("need at least 2 tokens"));

  std::shared_ptr<const ModelView> view = (*model)->FullView();
  const bool paged = !absl::GetFlag(FLAGS_kv_policy).empty();
  const int64_t chunk = std::max<int64_t>(1, absl::GetFlag(FLAGS_kv_chunk));
  bool unbounded = false;  // sink_window runs past max_position_embeddings
  if (paged) {
    auto kv = ParseKvCacheConfig(absl::GetFlag(FLAGS_kv_policy));
    if (!kv.ok()) return Fail(kv.status());
    kv->pool_blocks = absl::GetFlag(FLAGS_kv_pool_blocks);
    auto kv_view = (*model)->View(LayerPlan{}, *kv);
    if (!kv_view.ok()) return Fail(kv_view.status());
    view = *kv_view;
    unbounded = kv->RerotatesKeys();
  }
  const int64_t window = unbounded ? absl::GetFlag(FLAGS_window)
                                   : std::min(absl::GetFlag(FLAGS_window), (*model)->config().max_position_embeddings);
  double nll = 0;
  int64_t scored = 0;
  // Non-overlapping windows: each token but a window's first is predicted from its window prefix.
  for (size_t begin = 0; begin < ids.size(); begin += window) {
    const size_t end = std::min(ids.size(), begin + static_cast<size_t>(window));
    auto seq = view->NewSequence();
    for (size_t from = begin; from < end;) {
    const size_t to = paged ? std::min(end, from + static_cast<size_t>(chunk)) : end;
    // Under a KV policy the chunk runs in forwards split at its compression boundaries,
    // committed as they go, so the scores do not depend on --kv_chunk.
    auto logits = paged ? ForwardCommitted(*seq, absl::MakeConstSpan(ids).subspan(from, to - from),
                                           LogitsWanted::kAll)
                        : seq->Forward(absl::MakeConstSpan(ids).subspan(from, to - from));
    if (!logits.ok()) return Fail(logits.status());
    for (int64_t r = 0; r < logits->rows; ++r) {
      const float* row = logits->row(r);
      const double lse = LogSumExp(row, logits->cols);
      const size_t next = from + r + 1;
      if (next < end) {
        nll += lse - row[ids[next]];
        ++scored;
      }
      if (per_position) {
        std::vector<int32_t> order(logits->cols);
        for (int64_t c = 0; c < logits->cols; ++c) order[c] = static_cast<int32_t>(c);
        const int k = std::min<int64_t>(absl::GetFlag(FLAGS_top_k), logits->cols);
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [&](int32_t a, int32_t b) { return row[a] > row[b]; });
        nlohmann::json line;
        line["position"] = from + r;
        line["logsumexp"] = lse;
        // log p(next token): what the gateway's OpenAI logprobs report for it.
        if (next < end) line["next_logprob"] = row[ids[next]] - lse;
        std::vector<int32_t> top(order.begin(), order.begin() + k);
        std::vector<float> top_logits;
        for (int32_t t : top) top_logits.push_back(row[t]);
        line["top_ids"] = top;
        line["top_logits"] = top_logits;
        if (json) {
          std::cout << line.dump() << "\n";
        } else {
          std::printf("position %zu: logsumexp %.4f top %d (%.4f)\n", from + r, lse, top[0], top_logits[0]);
        }
      }
    }
    from = to;
    }
  }
  const double ppl = scored > 0 ? std::exp(nll / scored) : 0.0;
  if (json) {
    nlohmann::json out{{"tokens", scored}, {"perplexity", ppl}};
    if (paged) out["kv_policy"] = view->kv_cache_config()->ToString();
    std::cout << out.dump() << std::endl;
  } else {
    std::printf("tokens %lld perplexity %.4f\n", static_cast<long long>(scored), ppl);
  }
  return 0;
}

}  // namespace
}  // namespace specdec

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Scores tokens: specdec-score --model_dir DIR (--ids 1,2,3 | --text_file F)");
  specdec::NormalizeFlagSpelling(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return specdec::Main();
}
