// How many tokens the draft proposes next round (K). Speed only: any K is lossless.
// One DraftLengthPolicy per session; it is a small value type, cheap to copy.
#ifndef SPECDEC_COMMON_SPECULATIVE_DRAFT_LENGTH_H_
#define SPECDEC_COMMON_SPECULATIVE_DRAFT_LENGTH_H_

namespace specdec {

class DraftLengthPolicy {
 public:
  enum class Kind { kConstant, kHeuristic, kExpectedThroughput };

  // Always `k` (clamped to >= 0; 0 means decode with the verifier alone).
  static DraftLengthPolicy Constant(int k);
  // Hugging Face's assisted-generation schedule: start at `initial_k`, +2 after a round whose
  // proposals were all accepted, -1 after any rejection, kept within [1, max_k].
  static DraftLengthPolicy Heuristic(int initial_k, int max_k);
  // Picks K in [1, max_k] maximising expected tokens per unit of time,
  //   E[tokens] / cost = (1 - a^(K+1)) / ((1 - a) (K c + 1)),
  // where a is an exponential moving average of the per-token acceptance rate (starting at
  // `initial_alpha`, each round weighted by `ema_weight`) and c = draft cost per token /
  // verifier cost per round (SetCostRatio; starts at `initial_cost_ratio`).
  static DraftLengthPolicy ExpectedThroughput(int max_k, double initial_alpha = 0.6,
                                              double initial_cost_ratio = 0.1,
                                              double ema_weight = 0.1);

  // K for the next round.
  int NextK() const { return k_; }
  // Feeds back one round: `proposed` draft tokens of which the first `accepted` were accepted.
  void Observe(int proposed, int accepted);
  // The measured c = draft cost per token / verifier cost per round (ExpectedThroughput only;
  // ignored when negative or not finite).
  void SetCostRatio(double cost_ratio);

  Kind kind() const { return kind_; }
  int max_k() const { return max_k_; }
  // The current estimate of the per-token acceptance rate (ExpectedThroughput only).
  double acceptance_rate() const;
  double cost_ratio() const { return cost_ratio_; }

  // The K in [1, max_k] that maximises (1 - a^(K+1)) / ((1 - a) (K c + 1)) (smallest on ties).
  static int BestK(double alpha, double cost_ratio, int max_k);

 private:
  DraftLengthPolicy(Kind kind, int k, int max_k) : kind_(kind), k_(k), max_k_(max_k) {}
  void Recompute();

  Kind kind_;
  int k_;
  int max_k_;
  // ExpectedThroughput: EMAs of accepted tokens and of acceptance trials per round; their
  // ratio is the maximum-likelihood per-token acceptance rate (a round with a rejection is
  // `accepted` successes and one failure; a fully accepted round has no failure).
  double ema_accepted_ = 0.0;
  double ema_trials_ = 0.0;
  double ema_weight_ = 0.1;
  double cost_ratio_ = 0.0;
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_SPECULATIVE_DRAFT_LENGTH_H_
