// specdec-generate: plain or in-process speculative generation from a checkpoint folder.
// Prints text (or JSON with the tokens and per-round records) to stdout.
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/base/flags.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/generation/generator.h"
#include "common/model/model.h"
#include "common/tokenizer/incremental_decoder.h"
#include "common/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model_dir, "", "Hugging Face GPT-NeoX checkpoint folder");
ABSL_FLAG(std::string, prompt, "", "prompt text (needs tokenizer.json in --model_dir)");
ABSL_FLAG(std::string, prompt_ids, "", "prompt as token ids, e.g. 0,5,9");
ABSL_FLAG(int64_t, max_new_tokens, 32, "tokens to generate");
ABSL_FLAG(float, temperature, 0.0f, "0 = greedy");
ABSL_FLAG(int32_t, top_k, 0, "0 = off");
ABSL_FLAG(float, top_p, 1.0f, "1 = off");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed (runs are reproducible)");
ABSL_FLAG(std::string, coupling, "rejection",
          "sampled speculation: rejection, or shared_noise (the output equals plain decoding's "
          "for the seed, token for token)");
ABSL_FLAG(bool, ignore_eos, false, "keep generating past the model's EOS token");
ABSL_FLAG(bool, json, false, "print {\"ids\", \"text\", \"rounds\", ...} instead of text");
ABSL_FLAG(bool, speculate, false, "speculative decoding with a draft view of the same model");
ABSL_FLAG(std::string, draft_layers, "", "draft layers to run, e.g. 0,1,4,5 (empty: all)");
ABSL_FLAG(std::string, draft_plan, "", "draft LayerPlan JSON (from specdec-calibrate)");
ABSL_FLAG(bool, caching_allocator, true,
          "allocate tensors from the caching allocator, as the services do (false: the system "
          "allocator; for measurements)");
ABSL_FLAG(std::string, draft_dtype, "",
          "dtype of the draft when it differs from --dtype (e.g. int8; the checkpoint is then "
          "loaded twice)");
ABSL_FLAG(int64_t, draft_vocab, 0, "draft LM head scores the N most frequent ids (0: all)");
ABSL_FLAG(int, k, 4, "draft tokens per round");
ABSL_FLAG(bool, adaptive_k, false, "pick K per round from measured acceptance and cost");
ABSL_FLAG(std::string, device, "auto", "auto, cpu or cuda");
ABSL_FLAG(std::string, dtype, "f32",
          specdec::kDtypeFlagHelp);
ABSL_FLAG(std::string, kv_policy, "",
          "run the target (and a --speculate draft) on a paged KV cache under this policy, as the "
          "verifier's --kv_policy (docs/kv_cache.md); empty: the contiguous cache");
ABSL_FLAG(int, threads, 0, "compute threads (0: all cores)");

namespace specdec {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "specdec-generate: %s\n", status.ToString().c_str());
  return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

int Main() {
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  if (model_dir.empty()) return Fail(absl::InvalidArgumentError("--model_dir is required"));
  ConfigureComputeThreads(absl::GetFlag(FLAGS_threads));
  // As the services do, so in-process figures compare fairly.
  if (absl::GetFlag(FLAGS_caching_allocator)) UseCachingCpuAllocator();
  auto model = Model::Load(model_dir, LoadOptions{absl::GetFlag(FLAGS_device), absl::GetFlag(FLAGS_dtype)});
  if (!model.ok()) return Fail(model.status());
  std::unique_ptr<Tokenizer> tokenizer;
  if (auto t = Tokenizer::FromFile(model_dir + "/tokenizer.json"); t.ok()) tokenizer = *std::move(t);

  std::vector<int32_t> prompt;
  if (!absl::GetFlag(FLAGS_prompt_ids).empty()) {
    for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_prompt_ids), ',')) {
      int32_t id;
      if (!absl::SimpleAtoi(part, &id)) {
        return Fail(absl::InvalidArgumentError("--prompt_ids must be comma-separated integers"));
      }
      prompt.push_back(id);
    }
  } else if (!absl::GetFlag(FLAGS_prompt).empty()) {
    if (!tokenizer) return Fail(absl::FailedPreconditionError("--prompt needs tokenizer.json in --model_dir"));
    auto ids = tokenizer->Encode(absl::GetFlag(FLAGS_prompt));
    if (!ids.ok()) return Fail(ids.status());
    prompt = *std::move(ids);
  }
  if (prompt.empty()) return Fail(absl::InvalidArgumentError("give --prompt TEXT or --prompt_ids 1,2,3"));

  GenerateOptions options;
  options.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  options.sampling = {absl::GetFlag(FLAGS_temperature), absl::GetFlag(FLAGS_top_k),
                      absl::GetFlag(FLAGS_top_p), absl::GetFlag(FLAGS_seed)};
  absl::StatusOr<Coupling> coupling = ParseCoupling(absl::GetFlag(FLAGS_coupling));
  if (!coupling.ok()) return Fail(coupling.status());
  options.sampling.coupling = *coupling;
  options.eos_token_id =
      absl::GetFlag(FLAGS_ignore_eos) ? -1 : static_cast<int32_t>((*model)->config().eos_token_id);
  const bool json = absl::GetFlag(FLAGS_json);
  // Text streams as it is generated, never half a UTF-8 character.
  std::unique_ptr<IncrementalDecoder> decoder;
  if (tokenizer && !json) decoder = std::make_unique<IncrementalDecoder>(*tokenizer);
  auto print = [&](absl::Span<const int32_t> tokens) {
    if (decoder) {
      for (int32_t t : tokens) std::cout << decoder->Add(t);
      std::cout << std::flush;
    }
    return true;
  };

  absl::StatusOr<GenerateResult> result;
  std::shared_ptr<const ModelView> target = (*model)->FullView();
  std::optional<KvCacheConfig> kv_policy;
  if (!absl::GetFlag(FLAGS_kv_policy).empty()) {
    auto parsed = ParseKvCacheConfig(absl::GetFlag(FLAGS_kv_policy));
    if (!parsed.ok()) return Fail(parsed.status());
    kv_policy = *parsed;
    auto view = (*model)->View(LayerPlan{}, *kv_policy);
    if (!view.ok()) return Fail(view.status());
    target = *std::move(view);
  }
  if (absl::GetFlag(FLAGS_speculate)) {
    auto plan = LayerPlanFromFlags(absl::GetFlag(FLAGS_draft_layers), absl::GetFlag(FLAGS_draft_plan),
                                   absl::GetFlag(FLAGS_draft_vocab));
    if (!plan.ok()) return Fail(plan.status());
    std::shared_ptr<Model> draft_model = *model;
    const std::string draft_dtype = absl::GetFlag(FLAGS_draft_dtype);
    if (!draft_dtype.empty() && draft_dtype != absl::GetFlag(FLAGS_dtype)) {
      auto loaded = Model::Load(absl::GetFlag(FLAGS_model_dir),
                                LoadOptions{absl::GetFlag(FLAGS_device), draft_dtype});
      if (!loaded.ok()) return Fail(loaded.status());
      draft_model = *std::move(loaded);
    }
    // The draft shares the target's policy (its own pool), as a draft mirroring the verifier.
    auto draft = kv_policy ? draft_model->View(*plan, *kv_policy) : draft_model->View(*plan);
    if (!draft.ok()) return Fail(draft.status());
    options.num_draft_tokens = absl::GetFlag(FLAGS_k);
    options.adaptive = absl::GetFlag(FLAGS_adaptive_k);
    result = GenerateSpeculative(*target, **draft, prompt, options, print);
  } else {
    result = GeneratePlain(*target, prompt, options, print);
  }
  if (!result.ok()) return Fail(result.status());
  if (decoder) {
    std::cout << decoder->Flush() << std::endl;
  }
  const double tokens_per_s = result->tokens.size() / std::max(result->decode_ms / 1000.0, 1e-9);
  if (json) {
    nlohmann::json out;
    out["ids"] = result->tokens;
    if (tokenizer) out["text"] = tokenizer->Decode(result->tokens);
    out["finish_reason"] = FinishReasonName(result->finish_reason);
    out["prompt_tokens"] = prompt.size();
    out["prefill_ms"] = result->prefill_ms;
    out["decode_ms"] = result->decode_ms;
    out["tokens_per_s"] = tokens_per_s;
    nlohmann::json rounds = nlohmann::json::array();
    for (const auto& r : result->rounds) {
      rounds.push_back({{"round", r.round}, {"num_draft_tokens", r.num_draft_tokens},
                        {"requested_draft_tokens", r.requested_draft_tokens},
                        {"num_accepted", r.num_accepted}, {"tokens_emitted", r.tokens_emitted},
                        {"draft_ms", r.draft_ms}, {"verify_ms", r.verify_ms}, {"accept_ms", r.accept_ms}});
    }
    out["rounds"] = rounds;
    if (kv_policy) out["kv_policy"] = kv_policy->ToString();
    // Invalid UTF-8 (a cut character) is replaced rather than failing the dump.
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  } else {
    std::fprintf(stderr, "[%zu tokens, %.1f tokens/s, finish: %s]\n", result->tokens.size(),
                 tokens_per_s, FinishReasonName(result->finish_reason));
  }
  return 0;
}

}  // namespace
}  // namespace specdec

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Generates text: specdec-generate --model_dir DIR --prompt TEXT [--speculate ...]");
  specdec::NormalizeFlagSpelling(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return specdec::Main();
}
