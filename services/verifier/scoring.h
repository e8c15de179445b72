// Log-probabilities on the verifier (OpenAI's logprobs and echo): the full model's log-softmax
// at temperature 1 of the tokens a round may commit, and of a prompt at prefill. Kept apart from
// the acceptance data: they never change what is accepted.
#ifndef SPECDEC_SERVICES_VERIFIER_SCORING_H_
#define SPECDEC_SERVICES_VERIFIER_SCORING_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/model/model.h"
#include "common/speculative/acceptance.h"
#include "services/common/model_session.h"
#include "specdec/v1/verifier.pb.h"

namespace specdec {

// INVALID_ARGUMENT unless top_n is in [0, kMaxTopLogprobs].
absl::Status CheckLogprobRequest(const v1::LogprobRequest& request);

// Fills draft_logprob, fallback_logprob and the top list of each of `result`'s positions from
// the verification's logits ([K + 1, cols]); sets has_logprobs.
void AddVerifyLogprobs(const Logits& logits, absl::Span<const int32_t> draft_tokens, int top_n,
                       v1::VerifyResult* result);

// A prefill that also scores the prompt: runs `prefill.tokens` into a fresh cache (in chunks, so
// that a long prompt's [tokens, vocab] logits are never held at once) and appends one
// PositionScore per token after the first, and one for prefill.next_token, to `out`.
absl::Status PrefillScored(const v1::VerifierPrefill& prefill, ModelSession* session,
                           v1::Prefilled* out);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_VERIFIER_SCORING_H_
