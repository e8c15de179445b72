// The public TokenLogprob messages (gateway.proto) from what the verifier scored: a round's
// committed tokens (an accepted draft token is scored at its own position, the token that ends
// the round by its position's fallback score) and the prompt (scored at prefill).
#ifndef SPECDEC_SERVICES_GATEWAY_TOKEN_LOGPROBS_H_
#define SPECDEC_SERVICES_GATEWAY_TOKEN_LOGPROBS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"
#include "specdec/v1/gateway.pb.h"
#include "specdec/v1/verifier.pb.h"

namespace specdec {

// Token `token` committed at a verified position: `accepted_draft` says whether it is the
// position's draft token (draft_logprob) or its fallback, i.e. residual or bonus
// (fallback_logprob). `tokenizer` (nullable) gives the tokens' bytes.
v1::TokenLogprob RoundTokenLogprob(const v1::VerifiedPosition& position, int32_t token,
                                   bool accepted_draft, const Tokenizer* tokenizer);

// One entry per prompt token, the first without a logprob, from a prefill's prompt_scores
// (entry i scores prompt token i + 1). UNIMPLEMENTED when the verifier sent no scores (a version
// that predates them).
absl::StatusOr<std::vector<v1::TokenLogprob>> PromptLogprobs(const std::vector<int32_t>& prompt,
                                                             const v1::Prefilled& prefilled,
                                                             const Tokenizer* tokenizer);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_TOKEN_LOGPROBS_H_
