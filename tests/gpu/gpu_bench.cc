// gpu_bench: our greedy decoding (plain and speculative, in process) on one checkpoint, one
// stream and several concurrent sequences, timed the way tests/gpu/hf_bench.py times Hugging
// Face's generate on the same checkpoint and prompts, so that tests/gpu/run.sh can put the two
// side by side. Not a pass/fail test; it exits 1 when a run fails, never printing a number it
// did not measure. Built for any device (--device cpu exercises it where there is no GPU).
//
// Concurrent sequences run as one batched forward per step (Sequence::ForwardBatch): every
// sequence's rows in one pass, attention per sequence. Speculative rounds over a batch use the
// acceptance rule of common/speculative, as GenerateSpeculative does for one sequence.
//
// Usage: gpu_bench --model_dir DIR [--device cuda] [--dtype f32] [--batches 1,8,64]
//          [--prompt_len 32] [--new_tokens 128] [--k 4] [--draft_layers 0,1] [--draft_vocab 0]
//          [--runs 3] [--json FILE]
// Prompts: sequence b's token j is (1000 + 37 * j + 101 * b) mod vocab_size (hf_bench.py too).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/base/flags.h"
#include "common/base/status_macros.h"
#include "common/generation/generator.h"
#include "common/model/model.h"
#include "common/sampling/sampling.h"
#include "common/speculative/acceptance.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model_dir, "", "Hugging Face GPT-NeoX checkpoint folder");
ABSL_FLAG(std::string, device, "cuda", "cuda, cpu or cpu-libtorch");
ABSL_FLAG(std::string, dtype, "f32", "compute dtype (GPU: f32, f16, bf16)");
ABSL_FLAG(std::string, batches, "1,8,64", "concurrent sequences to measure");
ABSL_FLAG(int, prompt_len, 32, "prompt tokens per sequence");
ABSL_FLAG(int, new_tokens, 128, "tokens generated per sequence (EOS ignored)");
ABSL_FLAG(int, k, 4, "draft tokens per speculative round");
ABSL_FLAG(std::string, draft_layers, "0,1", "layers the draft runs (empty: all)");
ABSL_FLAG(int64_t, draft_vocab, 0, "draft LM head scores the N most frequent ids (0: all)");
ABSL_FLAG(int, runs, 3, "timed runs per measurement, after one warm-up (median reported)");
ABSL_FLAG(bool, tf32, false, "allow TF32 for f32 products on the GPU");
ABSL_FLAG(std::string, json, "", "write the results here as JSON");

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::vector<int32_t>> Prompts(int batch, int length, int64_t vocab) {
  std::vector<std::vector<int32_t>> prompts(batch, std::vector<int32_t>(length));
  for (int b = 0; b < batch; ++b) {
    for (int j = 0; j < length; ++j) prompts[b][j] = static_cast<int32_t>((1000 + 37 * j + 101 * b) % vocab);
  }
  return prompts;
}

const int32_t* IdsOf(const Logits& logits) {
  return logits.vocab_ids ? logits.vocab_ids->data() : nullptr;
}

// Greedy plain decoding of every prompt at once: one batched forward per step.
absl::StatusOr<std::vector<std::vector<int32_t>>> BatchedPlain(
    const ModelView& view, const std::vector<std::vector<int32_t>>& prompts, int new_tokens) {
  const size_t n = prompts.size();
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<std::vector<int32_t>> out(n);
  std::vector<Sequence::BatchItem> items;
  for (size_t i = 0; i < n; ++i) {
    seqs.push_back(view.NewSequence());
    items.push_back({seqs.back().get(), prompts[i], LogitsWanted::kLast});
  }
  std::vector<std::vector<int32_t>> feed(n);
  for (int step = 0; step < new_tokens; ++step) {
    std::vector<absl::StatusOr<Logits>> logits = Sequence::ForwardBatch(items);
    for (size_t i = 0; i < n; ++i) {
      if (!logits[i].ok()) return logits[i].status();
      const Logits& l = *logits[i];
      feed[i] = {ArgmaxToken(l.row(l.rows - 1), l.cols, IdsOf(l))};
      out[i].push_back(feed[i][0]);
      items[i].tokens = feed[i];
    }
  }
  return out;
}

// Greedy speculative decoding of every prompt at once: per round, K batched draft steps and one
// batched verification over each sequence's [pending, x_1 .. x_k]; acceptance per sequence.
// Returns the tokens and the mean accepted draft tokens per round.
absl::StatusOr<std::vector<std::vector<int32_t>>> BatchedSpeculative(
    const ModelView& target, const ModelView& draft,
    const std::vector<std::vector<int32_t>>& prompts, int new_tokens, int k_max,
    double* mean_accepted) {
  const size_t n = prompts.size();
  const SamplingParams greedy;
  std::vector<std::unique_ptr<Sequence>> t(n), d(n);
  std::vector<std::vector<int32_t>> committed(prompts), out(n);
  std::vector<Sequence::BatchItem> items;
  for (size_t i = 0; i < n; ++i) {
    t[i] = target.NewSequence();
    d[i] = draft.NewSequence();
  }
  // Both caches hold every committed token but the pending (last) one.
  for (auto* seqs : {&t, &d}) {
    items.clear();
    for (size_t i = 0; i < n; ++i) {
      items.push_back({(*seqs)[i].get(), absl::MakeConstSpan(committed[i]).first(committed[i].size() - 1),
                       LogitsWanted::kLast});
    }
    for (auto& result : Sequence::ForwardBatch(items)) RETURN_IF_ERROR(result.status());
  }
  int64_t rounds = 0, accepted = 0;
  while (true) {
    std::vector<size_t> active;
    std::vector<int> k(n, 0);
    for (size_t i = 0; i < n; ++i) {
      const int remaining = new_tokens - static_cast<int>(out[i].size());
      if (remaining <= 0) continue;
      active.push_back(i);
      k[i] = std::min(k_max, remaining - 1);  // a round commits accepted + 1 tokens
    }
    if (active.empty()) break;
    // Draft: catch up on committed tokens, then propose.
    std::vector<std::vector<int32_t>> proposed(n), feed(n);
    std::vector<std::vector<DraftProposal>> proposals(n);
    for (size_t i : active) feed[i].assign(committed[i].begin() + d[i]->length(), committed[i].end());
    for (int step = 0;; ++step) {
      items.clear();
      std::vector<size_t> who;
      for (size_t i : active) {
        if (k[i] > step) {
          items.push_back({d[i].get(), feed[i], LogitsWanted::kLast});
          who.push_back(i);
        }
      }
      if (items.empty()) break;
      std::vector<absl::StatusOr<Logits>> logits = Sequence::ForwardBatch(items);
      for (size_t j = 0; j < who.size(); ++j) {
        RETURN_IF_ERROR(logits[j].status());
        const size_t i = who[j];
        const int64_t position = static_cast<int64_t>(committed[i].size()) + step;
        TokenDistribution q = ToDistribution(logits[j]->row(0), logits[j]->cols, IdsOf(*logits[j]), greedy);
        proposals[i].push_back(DrawDraftToken(q, greedy, position));
        proposed[i].push_back(proposals[i].back().token);
        feed[i] = {proposed[i].back()};
      }
    }
    // Verify every active sequence in one pass.
    items.clear();
    std::vector<std::vector<int32_t>> verify(n);
    for (size_t i : active) {
      verify[i] = {committed[i].back()};
      verify[i].insert(verify[i].end(), proposed[i].begin(), proposed[i].end());
      items.push_back({t[i].get(), verify[i], LogitsWanted::kAll});
    }
    std::vector<absl::StatusOr<Logits>> logits = Sequence::ForwardBatch(items);
    for (size_t j = 0; j < active.size(); ++j) {
      RETURN_IF_ERROR(logits[j].status());
      const size_t i = active[j];
      const int64_t length = static_cast<int64_t>(committed[i].size());
      std::vector<VerifiedPosition> verified = VerifyProposals(
          logits[j]->values.data(), logits[j]->cols, IdsOf(*logits[j]), greedy, length, proposed[i], {});
      RoundOutcome outcome = AcceptProposals(greedy, length, proposals[i], verified);
      RETURN_IF_ERROR(t[i]->Truncate(length + outcome.num_accepted));
      RETURN_IF_ERROR(d[i]->Truncate(std::min(d[i]->length(), length + outcome.num_accepted)));
      std::vector<int32_t> emitted(proposed[i].begin(), proposed[i].begin() + outcome.num_accepted);
      emitted.push_back(outcome.next_token);
      committed[i].insert(committed[i].end(), emitted.begin(), emitted.end());
      out[i].insert(out[i].end(), emitted.begin(), emitted.end());
      ++rounds;
      accepted += outcome.num_accepted;
    }
  }
  *mean_accepted = rounds ? static_cast<double>(accepted) / rounds : 0;
  return out;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "gpu_bench: %s\n", status.ToString().c_str());
  return 1;
}

int Main() {
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  if (model_dir.empty()) return Fail(absl::InvalidArgumentError("--model_dir is required"));
  const int prompt_len = absl::GetFlag(FLAGS_prompt_len), new_tokens = absl::GetFlag(FLAGS_new_tokens);
  const int k = absl::GetFlag(FLAGS_k), runs = std::max(1, absl::GetFlag(FLAGS_runs));
  if (prompt_len < 2 || new_tokens < 1 || k < 1) {
    return Fail(absl::InvalidArgumentError("--prompt_len >= 2, --new_tokens >= 1 and --k >= 1"));
  }
  std::vector<int> batches;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',')) {
    int b;
    if (!absl::SimpleAtoi(part, &b) || b < 1) return Fail(absl::InvalidArgumentError("--batches: positive integers"));
    batches.push_back(b);
  }
  ConfigureComputeThreads(0);
  AllowTf32OnCuda(absl::GetFlag(FLAGS_tf32));
  auto model = Model::Load(model_dir, LoadOptions{absl::GetFlag(FLAGS_device), absl::GetFlag(FLAGS_dtype)});
  if (!model.ok()) return Fail(model.status());
  auto plan = LayerPlanFromFlags(absl::GetFlag(FLAGS_draft_layers), "", absl::GetFlag(FLAGS_draft_vocab));
  if (!plan.ok()) return Fail(plan.status());
  auto draft = (*model)->View(*plan);
  if (!draft.ok()) return Fail(draft.status());
  auto target = (*model)->FullView();
  const ModelConfig& config = (*model)->config();
  if (prompt_len + new_tokens > config.max_position_embeddings) {
    return Fail(absl::InvalidArgumentError("prompt_len + new_tokens exceed the model's positions"));
  }

  nlohmann::json report;
  report["engine"] = "specdec";
  report["model_dir"] = model_dir;
  report["device"] = (*model)->device();
  report["runs_on"] = (*model)->cpu_kernels();
  report["dtype"] = (*model)->dtype();
  report["prompt_len"] = prompt_len;
  report["new_tokens"] = new_tokens;
  report["k"] = k;
  report["draft"] = (*plan).Summary();
  report["results"] = nlohmann::json::array();

  std::vector<int32_t> single_plain;  // sequence 0's tokens, single stream (the reference)
  for (int batch : batches) {
    const auto prompts = Prompts(batch, prompt_len, config.vocab_size);
    std::vector<std::vector<int32_t>> plain_tokens;  // this batch's plain output, every sequence
    for (const bool speculative : {false, true}) {
      std::vector<double> seconds;
      std::vector<std::vector<int32_t>> tokens;
      double mean_accepted = 0;
      for (int run = 0; run <= runs; ++run) {  // run 0 warms up (CUDA context, cuBLAS handles)
        const auto start = Clock::now();
        if (batch == 1) {
          GenerateOptions options;
          options.max_new_tokens = new_tokens;
          options.num_draft_tokens = speculative ? k : 0;
          auto result = speculative ? GenerateSpeculative(*target, **draft, prompts[0], options)
                                    : GeneratePlain(*target, prompts[0], options);
          if (!result.ok()) return Fail(result.status());
          tokens = {result->tokens};
          if (speculative) {
            int64_t accepted = 0;
            for (const auto& r : result->rounds) accepted += r.num_accepted;
            mean_accepted = result->rounds.empty() ? 0 : static_cast<double>(accepted) / result->rounds.size();
          }
        } else {
          auto result = speculative ? BatchedSpeculative(*target, **draft, prompts, new_tokens, k, &mean_accepted)
                                    : BatchedPlain(*target, prompts, new_tokens);
          if (!result.ok()) return Fail(result.status());
          tokens = *std::move(result);
        }
        const double s = std::chrono::duration<double>(Clock::now() - start).count();
        if (run > 0) seconds.push_back(s);
      }
      for (const auto& t : tokens) {
        if (static_cast<int>(t.size()) != new_tokens) {
          return Fail(absl::InternalError(absl::StrFormat("a sequence got %d tokens, not %d", t.size(), new_tokens)));
        }
      }
      if (batch == 1 && !speculative) single_plain = tokens[0];
      if (!speculative) plain_tokens = tokens;
      const double median = Median(seconds);
      nlohmann::json row;
      row["mode"] = speculative ? "speculative" : "plain";
      row["batch"] = batch;
      row["seconds"] = seconds;
      row["tokens_per_s"] = batch * new_tokens / median;
      if (speculative) {
        row["mean_accepted"] = mean_accepted;
        // Greedy speculation is lossless: every sequence's tokens are plain decoding's.
        int equal = 0;
        for (size_t i = 0; i < tokens.size(); ++i) equal += tokens[i] == plain_tokens[i];
        row["sequences_equal_plain"] = equal;
      }
      row["tokens_seq0"] = tokens[0];
      // Sequence 0 has the same prompt at every batch size: its greedy tokens should not depend
      // on the batch or the mode (up to float rounding of products over different row counts).
      row["seq0_equals_single_plain"] = !single_plain.empty() && tokens[0] == single_plain;
      const std::string note =
          speculative ? absl::StrFormat(", %.2f accepted/round, %d of %d sequences = plain", mean_accepted,
                                        row["sequences_equal_plain"].get<int>(), batch)
                      : "";
      std::printf("%-11s batch %3d: %9.1f tokens/s (median of %d, %s)%s\n", speculative ? "speculative" : "plain",
                  batch, batch * new_tokens / median, runs, (*model)->device().c_str(), note.c_str());
      std::fflush(stdout);
      report["results"].push_back(row);
    }
  }
  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << report.dump(1) << "\n";
    if (!out) return Fail(absl::InternalError("cannot write " + json_path));
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
