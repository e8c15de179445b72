// The lossless acceptance rule of one speculation round (DESIGN.md, "One speculation round"):
// the verifier-side helpers that turn target logits into per-position verdict data, and the
// gateway-side rule that accepts draft tokens and picks the next token. No libtorch.
#ifndef SPECDEC_COMMON_SPECULATIVE_ACCEPTANCE_H_
#define SPECDEC_COMMON_SPECULATIVE_ACCEPTANCE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/sampling/sampling.h"

namespace specdec {

// One draft token x_i and q_i(x_i), the probability the draft's reported distribution q_i gave
// it. The draft must have sampled x_i from exactly that q_i (with UniformAt(seed, pos, kDraft)).
struct DraftProposal {
  int32_t token = -1;
  float q_prob = 0.0f;
};

// What the verifier returns for position i of a round with K draft tokens, i in [0, K].
// For i < K: p_i(x_i) and a residual sample r_i ~ norm(max(0, p_i - q_i)).
// For i == K: p_prob_of_draft is 0 and fallback_token is the bonus sample ~ p_K.
// Greedy: p_prob_of_draft is 1 when x_i is the argmax (else 0); fallback_token is the argmax.
// Coupling::kSharedNoise: p_prob_of_draft is p_i(x_i) and fallback_token is the target's race
// draw at every position (what plain decoding would emit there), so no residual is needed.
struct VerifiedPosition {
  float p_prob_of_draft = 0.0f;
  int32_t fallback_token = -1;
};

// The gateway's verdict on one round: the first `num_accepted` draft tokens are committed,
// followed by `next_token` (the residual sample at the first rejection, or the bonus token).
// A round therefore always commits num_accepted + 1 tokens.
struct RoundOutcome {
  int num_accepted = 0;
  int32_t next_token = -1;
};

// How many tokens a draft's q keeps by default (ToDistribution's max_support), in process and
// in the draft service alike, so both draw the same tokens. A sparse q keeps what the draft
// sends small; 512 keeps sampled acceptance within a few points of an uncapped q on the trained
// checkpoint (docs/benchmarks/speculative.md), where 64 cost over ten points.
constexpr int32_t kDefaultDraftSupport = 512;

// A proposal for `token` drawn from `q` (q_prob = q.ProbOf(token)).
DraftProposal MakeProposal(int32_t token, const TokenDistribution& q);

// The draft's draw at `position`: x ~ q by DrawToken (UniformAt(seed, position, kDraft), or the
// shared race noise under Coupling::kSharedNoise), returned with q(x). With greedy params q is
// one-hot (ToDistribution), so this is the argmax with q(x) = 1.
DraftProposal DrawDraftToken(const TokenDistribution& q, const SamplingParams& params,
                             int64_t position);

// Checks what the gateway receives over the wire before AcceptProposals: K+1 verified
// positions for K proposals, finite probabilities in [0, 1], non-negative fallback tokens.
absl::Status ValidateRound(absl::Span<const DraftProposal> proposals,
                           absl::Span<const VerifiedPosition> verified);

// The gateway's acceptance rule. Draft token i sits at position first_position + i.
// Greedy: accept x_i while x_i == fallback_token_i (the target's argmax).
// Coupling::kSharedNoise: the same equality, with fallback_token_i the target's own race draw.
// Sampling (Coupling::kRejection): accept x_i while u_i < min(1, p_i(x_i) / q_i(x_i)), with
// u_i = UniformAt(seed, first_position + i, kAccept); q_i(x_i) <= 0 (or NaN) always rejects.
// On the first rejection emit fallback_token_i; if all K are accepted emit fallback_token_K.
// Precondition: verified.size() == proposals.size() + 1 (see ValidateRound). With fewer
// verified positions it only considers the proposals it has a verdict for; with none it
// returns {0, -1}.
RoundOutcome AcceptProposals(const SamplingParams& params, int64_t first_position,
                             absl::Span<const DraftProposal> proposals,
                             absl::Span<const VerifiedPosition> verified);

// norm(max(0, p - q)) over p's support, in p's layout (dense stays dense; sparse drops zeros).
// When the residual has no mass (p <= q everywhere, i.e. p == q) it returns p: a rejection
// then cannot happen, and p keeps the result a valid distribution.
TokenDistribution ResidualDistribution(const TokenDistribution& p, const TokenDistribution& q);

// The verifier's side of a round. `logits` holds K+1 rows of `cols` floats, row-major
// ([K + 1, cols]): row i is the target's prediction for position first_position + i, i.e.
// after the committed tokens and draft tokens 0..i-1. `vocab_ids` (nullable) maps column ->
// token id. `draft_dists[i]` is the q_i that draft_tokens[i] was sampled from; it may be
// empty for greedy params. A missing (or empty) q_i is treated as q_i = 0 everywhere, so its
// residual is p_i (and the gateway, seeing q_prob = 0, rejects).
// Residual and bonus samples use UniformAt(seed, first_position + i, kTarget), the same stream
// plain decoding uses, so with K = 0 the bonus token is exactly the non-speculative token.
std::vector<VerifiedPosition> VerifyProposals(const float* logits, int64_t cols,
                                              const int32_t* vocab_ids,
                                              const SamplingParams& params, int64_t first_position,
                                              absl::Span<const int32_t> draft_tokens,
                                              absl::Span<const TokenDistribution> draft_dists);

// VerifyProposals and AcceptProposals in one, for a caller that holds both sides (in-process
// generation): rows are turned into distributions only up to the first rejection, and the one
// residual needed is the only one drawn. The outcome is exactly
// AcceptProposals(params, first_position, proposals, VerifyProposals(...)).
RoundOutcome VerifyAndAccept(const float* logits, int64_t cols, const int32_t* vocab_ids,
                             const SamplingParams& params, int64_t first_position,
                             absl::Span<const DraftProposal> proposals,
                             absl::Span<const TokenDistribution> draft_dists);

}  // namespace specdec

#endif  // SPECDEC_COMMON_SPECULATIVE_ACCEPTANCE_H_
