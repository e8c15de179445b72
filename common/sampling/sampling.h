// Token sampling without libtorch: temperature, top-k, top-p, greedy, and a counter-based
// random stream so that every draw is a pure function of (seed, position, purpose).
#ifndef SPECDEC_COMMON_SAMPLING_SAMPLING_H_
#define SPECDEC_COMMON_SAMPLING_SAMPLING_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace specdec {

// How a sampled speculative round couples the draft's draws with the target's
// (docs/pipeline.md, "Sampling couplings").
enum class Coupling {
  // DESIGN.md's rule: the draft draws x ~ q, the gateway accepts with probability
  // min(1, p(x)/q(x)) and a rejection draws from the residual. Exact in distribution; the
  // tokens depend on the draft (its plan, K, where rounds end).
  kRejection,
  // Every draw is an exponential race on noise keyed by (seed, position, token), the target's
  // and the draft's alike; a draft token is accepted when it equals the target's own draw.
  // The output is plain decoding's token for token, whatever the draft, K or failures.
  kSharedNoise,
};

// "rejection" or "shared_noise" (flags and configuration files); INVALID_ARGUMENT otherwise.
absl::StatusOr<Coupling> ParseCoupling(absl::string_view name);
const char* CouplingName(Coupling coupling);

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy (argmax)
  int32_t top_k = 0;         // 0: no top-k
  float top_p = 1.0f;        // 1: no nucleus truncation
  uint64_t seed = 0;
  Coupling coupling = Coupling::kRejection;

  bool greedy() const { return temperature <= 0.0f; }
  // Sampled, with draws that do not depend on the draft: acceptance is token equality.
  bool shared_noise() const { return !greedy() && coupling == Coupling::kSharedNoise; }
  // INVALID_ARGUMENT for NaN/negative temperature, negative top_k, top_p outside (0, 1].
  absl::Status Validate() const;
};

// A probability distribution over token ids. Dense when `ids` is empty (probs[i] is token i),
// sparse otherwise (probs[i] is token ids[i]). Probabilities sum to 1.
struct TokenDistribution {
  std::vector<int32_t> ids;
  std::vector<float> probs;

  bool dense() const { return ids.empty(); }
  int64_t size() const { return static_cast<int64_t>(probs.size()); }
  int32_t IdAt(int64_t i) const { return dense() ? static_cast<int32_t>(i) : ids[i]; }
  // Probability of `token` (0 when outside the support). O(1) dense, O(n) sparse.
  float ProbOf(int32_t token) const;
};

// What each random draw is for. Distinct streams keep draws independent of each other.
enum class RandomPurpose : uint64_t {
  kTarget = 1,    // a token drawn from the target model (plain decoding, residual, bonus)
  kDraft = 2,     // a token drawn by the draft
  kAccept = 3,    // the uniform u_i of the acceptance test
  kShared = 4,    // per-token noise of the exponential race (Coupling::kSharedNoise)
};

// A uniform double in [0, 1) that depends only on its arguments (SplitMix64 of their mix).
double UniformAt(uint64_t seed, int64_t position, RandomPurpose purpose);

// The distribution to sample from for one row of logits, after temperature, top-k and top-p.
// `vocab_ids` (nullable) maps column -> token id for vocabulary-subset heads; the result is
// then sparse over those ids. `max_support` > 0 additionally keeps at most that many tokens
// (how a draft sends q sparse). Greedy params give a one-hot distribution on the argmax.
// A truncated (sparse) support's order is deterministic but unspecified (heaviest first for
// peaked rows; a flat row's nucleus keeps most tokens in column order): draws are reproducible,
// and the distribution is the same whatever the order.
TokenDistribution ToDistribution(const float* logits, int64_t cols, const int32_t* vocab_ids,
                                 const SamplingParams& params, int32_t max_support = 0);

// Index of the largest logit (first on ties) mapped through vocab_ids when given.
int32_t ArgmaxToken(const float* logits, int64_t cols, const int32_t* vocab_ids);

// Inverse-CDF draw with uniform `u` in [0, 1).
int32_t SampleToken(const TokenDistribution& dist, double u);

// A draw from `dist` by exponential race: the token t minimising -log(U_t) / p_t, with U_t a
// uniform keyed by (seed, position, t) (ties to the lower id). Token t wins with probability p_t,
// and the result does not depend on the order of dist's support: two distributions drawn at
// the same position share their noise, so they agree on a token far more often than
// independent draws would (when p == q, always).
int32_t RaceToken(const TokenDistribution& dist, uint64_t seed, int64_t position);

// The draw `params` asks for at `position`: RaceToken under Coupling::kSharedNoise (whatever
// `purpose`: draft and target share the noise), else SampleToken with
// UniformAt(params.seed, position, purpose). A greedy params' one-hot dist gives its token.
int32_t DrawToken(const TokenDistribution& dist, const SamplingParams& params, int64_t position,
                  RandomPurpose purpose);

// Convenience: greedy argmax, or DrawToken of the row's distribution.
int32_t PickToken(const float* logits, int64_t cols, const int32_t* vocab_ids,
                  const SamplingParams& params, int64_t position, RandomPurpose purpose);

}  // namespace specdec

#endif  // SPECDEC_COMMON_SAMPLING_SAMPLING_H_
