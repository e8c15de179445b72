// The decisions of one speculation round that do not depend on where the models run: how many
// tokens to draft (the draft-length policy's K fitted to the token budget, the context and a
// per-round cap), the draft-cost estimate that feeds an adaptive K, whether to draft the next
// round ahead (pre-draft), and why generation ends. The in-process generator and the gateway's
// session both plan their rounds here, so they decide alike (and their outputs match).
#ifndef SPECDEC_COMMON_SPECULATIVE_ROUND_PLANNER_H_
#define SPECDEC_COMMON_SPECULATIVE_ROUND_PLANNER_H_

#include <cstdint>
#include <limits>

#include "absl/types/span.h"
#include "common/speculative/draft_length.h"

namespace specdec {

// Why generation ended. kNone: it has not.
enum class FinishReason { kNone, kLength, kEos, kStop, kContext };

// The API's name: "length", "eos", "stop", "context" ("none" for kNone).
const char* FinishReasonName(FinishReason reason);

class RoundPlanner {
 public:
  // No cap on a round's K beyond the policy, the budget and the context.
  static constexpr int kNoCap = std::numeric_limits<int>::max();

  // `max_new_tokens`: the token budget; `max_positions`: the model's context (positions).
  RoundPlanner(DraftLengthPolicy policy, int64_t max_new_tokens, int64_t max_positions);

  // The policy of a request: adaptive (expected throughput, K in [1, adaptive_max_k]) or
  // Constant(num_draft_tokens) (0: no draft).
  static DraftLengthPolicy PolicyFor(int num_draft_tokens, bool adaptive, int adaptive_max_k);

  // Before a round at committed length `length` (the pending token included) with `generated`
  // tokens emitted so far: kLength when the budget is spent, kContext when the context is full,
  // else kNone (run the round).
  FinishReason BeforeRound(int64_t length, int64_t generated) const;

  // K for the round: the policy's K (0 when `draft_allowed` is false), fitted so that the
  // round's accepted + 1 tokens stay inside the budget and the context.
  // `max_draft_tokens` is the one place for any other per-round cap on K (e.g. what one verify
  // forward may hold); it applies to pre-drafts too (PredraftK).
  int PlanK(int64_t length, int64_t generated, bool draft_allowed = true,
            int max_draft_tokens = kNoCap) const;

  // Overlapped rounds: once all `k` proposals of the round at `length` are in, the draft may be
  // asked for the next round as if all of them were accepted. Returns that round's K (fitted
  // like PlanK at length + k + 1), or 0 when a pre-draft does not pay: only when all k proposals
  // came (`proposed == k`), when the acceptance estimate makes a fully accepted round likely
  // enough (adaptive policies), and while recent pre-drafts were used often enough (or a probe
  // is due). The caller adds 1 token for the draft's guess at the bonus.
  int PredraftK(int k, int proposed, int64_t length, int64_t generated,
                int max_draft_tokens = kNoCap) const;
  // Once per round: whether a pre-draft was sent, and if so whether it was used.
  void ObservePredraft(bool sent, bool used);

  // Feeds back a round: `proposed` draft tokens of which the first `accepted` were accepted,
  // the draft's time for them and the verifier's time for the round (any unit, the same for
  // both; only their ratios are used). Every round, those without proposals too.
  // The adaptive policy's cost ratio c is (draft time per token + verify time per draft token)
  // / verify time of a round without draft tokens: a round of K then costs K c + 1 in units of
  // that base, as the policy's model has it. The verify line (base + per token * K) is fitted
  // to recent rounds by weighted least squares once their K differed; until then the whole
  // verify time is the base (details in ObserveRound). Dividing by the whole time of long
  // rounds instead made drafting
  // look cheaper the longer the rounds got, and K grew past its best where each verified row
  // costs (sampling).
  void ObserveRound(int proposed, int accepted, double draft_time, double verify_time);

  // How many of a round's `tokens` are emitted: all, or up to and including the first `eos`
  // (then *eos is set).
  static size_t CutAtEos(absl::Span<const int32_t> tokens, int32_t eos, bool* eos_found);

  const DraftLengthPolicy& policy() const { return policy_; }
  // An adaptive policy found that drafting does not pay (rounds run without a draft).
  bool paused() const { return policy_.paused(); }

  // Pre-drafts are not tried while fewer than this share of them (a moving average) was used,
  // except one probe every kPredraftProbeEvery rounds.
  static constexpr double kMinPredraftUseRate = 0.25;
  static constexpr int kPredraftProbeEvery = 8;

 private:
  int Fit(int64_t wanted, int64_t length, int64_t generated, int max_draft_tokens) const;

  DraftLengthPolicy policy_;
  int64_t max_new_tokens_;
  int64_t max_positions_;
  // Recent rounds with proposals, weighted by kCostDecay^age: the draft's time per token, and
  // the sums of the least-squares fit of verify time (y) against K (x).
  static constexpr double kCostDecay = 0.8;
  // The most a draft token adds to a verification, as a share of a verification without drafts
  // (measured on specdec-tiny-py: about 0.05 greedy, 0.1 - 0.2 sampled).
  static constexpr double kMaxRowShare = 0.25;
  double draft_per_token_ema_ = -1;
  double fit_w_ = 0, fit_x_ = 0, fit_y_ = 0, fit_xx_ = 0, fit_xy_ = 0;
  double predraft_use_rate_ = 1.0;  // starts hopeful
  int rounds_without_predraft_ = 0;
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_SPECULATIVE_ROUND_PLANNER_H_
