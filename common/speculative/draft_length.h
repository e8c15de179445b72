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
  // `initial_alpha` as one pseudo-trial, round n weighted by max(ema_weight, 1 / (n + 2)):
  // a running mean at first, so the prior does not outweigh the first rounds' evidence, then an
  // EMA that follows changes) and c = draft cost per token /
  // verifier cost per round (SetCostRatio; starts at `initial_cost_ratio`).
  // When even the best K expects fewer tokens per unit of time than plain decoding (1 per
  // round of cost 1: roughly, when a < c, as with a random checkpoint whose draft is never
  // right), it pauses: K = 0, except for probe rounds, which draft the best K >= 1 so that a
  // draft that becomes right is noticed. The first probe comes kProbeEvery rounds after the
  // pause; each probe that leaves the policy paused doubles the wait, up to kMaxProbeEvery (a
  // probe costs the draft's catch-up on every token it missed, before the verification).
  static DraftLengthPolicy ExpectedThroughput(int max_k, double initial_alpha = 0.6,
                                              double initial_cost_ratio = 0.1,
                                              double ema_weight = 0.1);

  // K for the next round.
  int NextK() const { return k_; }
  // Feeds back one round: `proposed` draft tokens of which the first `accepted` were accepted.
  // Call it for every round, those without proposals too (they count towards the next probe
  // of a paused policy, and change nothing else).
  void Observe(int proposed, int accepted);
  // The measured c = draft cost per token / verifier cost per round (ExpectedThroughput only;
  // ignored when negative or not finite).
  void SetCostRatio(double cost_ratio);

  Kind kind() const { return kind_; }
  int max_k() const { return max_k_; }
  // The current estimate of the per-token acceptance rate (ExpectedThroughput only).
  double acceptance_rate() const;
  double cost_ratio() const { return cost_ratio_; }
  // Whether drafting is paused because it does not pay (ExpectedThroughput only).
  bool paused() const { return paused_; }

  // Rounds from a pause to the first probe, and the most between two probes.
  static constexpr int kProbeEvery = 16;
  static constexpr int kMaxProbeEvery = 128;

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
  int rounds_observed_ = 0;  // rounds with proposals
  double cost_ratio_ = 0.0;
  bool paused_ = false;
  int rounds_since_probe_ = 0;  // rounds without proposals while paused
  int probe_every_ = kProbeEvery;
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_SPECULATIVE_DRAFT_LENGTH_H_
