// Plain autoregressive decoding (see generator.h).
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/generation/generator.h"

namespace specdec {

namespace {
double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

absl::StatusOr<GenerateResult> GeneratePlain(const ModelView& target,
                                             absl::Span<const int32_t> prompt,
                                             const GenerateOptions& options,
                                             const TokenCallback& on_tokens) {
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  RETURN_IF_ERROR(options.sampling.Validate());
  GenerateResult result;
  result.finish_reason = FinishReason::kLength;
  auto seq = target.NewSequence();
  auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(Logits logits, ForwardCommitted(*seq, prompt, LogitsWanted::kLast));
  result.prefill_ms = MsSince(start);
  start = std::chrono::steady_clock::now();
  const int64_t max_positions = target.model().config().max_position_embeddings;
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    const int64_t position = seq->length();  // the position the new token will occupy
    const int32_t token = PickToken(logits.row(logits.rows - 1), logits.cols,
                                    logits.vocab_ids ? logits.vocab_ids->data() : nullptr,
                                    options.sampling, position, RandomPurpose::kTarget);
    if (options.on_target_row) options.on_target_row(position, logits, logits.rows - 1);
    result.tokens.push_back(token);
    if (on_tokens && !on_tokens({token})) {
      result.finish_reason = FinishReason::kStop;
      break;
    }
    if (token == options.eos_token_id) {
      result.finish_reason = FinishReason::kEos;
      break;
    }
    if (i + 1 == options.max_new_tokens) break;
    if (seq->length() + 1 > max_positions) {
      result.finish_reason = FinishReason::kContext;
      break;
    }
    ASSIGN_OR_RETURN(logits, ForwardCommitted(*seq, {token}, LogitsWanted::kLast));
  }
  result.decode_ms = MsSince(start);
  return result;
}

}  // namespace specdec
