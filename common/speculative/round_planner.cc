// The round planner (see round_planner.h).
#include "common/speculative/round_planner.h"

#include <algorithm>
#include <cmath>

namespace specdec {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength: return "length";
    case FinishReason::kEos: return "eos";
    case FinishReason::kStop: return "stop";
    case FinishReason::kContext: return "context";
    case FinishReason::kNone: break;
  }
  return "none";
}

RoundPlanner::RoundPlanner(DraftLengthPolicy policy, int64_t max_new_tokens,
                           int64_t max_positions)
    : policy_(policy), max_new_tokens_(max_new_tokens), max_positions_(max_positions) {}

DraftLengthPolicy RoundPlanner::PolicyFor(int num_draft_tokens, bool adaptive,
                                          int adaptive_max_k) {
  return adaptive ? DraftLengthPolicy::ExpectedThroughput(adaptive_max_k)
                  : DraftLengthPolicy::Constant(num_draft_tokens);
}

FinishReason RoundPlanner::BeforeRound(int64_t length, int64_t generated) const {
  if (generated >= max_new_tokens_) return FinishReason::kLength;
  if (length >= max_positions_) return FinishReason::kContext;
  return FinishReason::kNone;
}

int RoundPlanner::Fit(int64_t wanted, int64_t length, int64_t generated,
                      int max_draft_tokens) const {
  // A round commits accepted + 1 tokens: K + 1 must fit the budget and the context.
  const int64_t remaining = max_new_tokens_ - generated;
  return static_cast<int>(std::max<int64_t>(
      0, std::min<int64_t>({wanted, remaining - 1, max_positions_ - length - 1,
                            static_cast<int64_t>(max_draft_tokens)})));
}

int RoundPlanner::PlanK(int64_t length, int64_t generated, bool draft_allowed,
                        int max_draft_tokens) const {
  return Fit(draft_allowed ? policy_.NextK() : 0, length, generated, max_draft_tokens);
}

int RoundPlanner::PredraftK(int k, int proposed, int64_t length, int64_t generated,
                            int max_draft_tokens) const {
  if (k <= 0 || proposed != k) return 0;
  // A pre-draft is used only when all k proposals are accepted (about a^k for an adaptive
  // request, which knows a): below the use threshold it is not even tried. On a random
  // checkpoint the first rounds' pre-drafts only took CPU from the verifier.
  const bool adaptive = policy_.kind() == DraftLengthPolicy::Kind::kExpectedThroughput;
  if (adaptive && std::pow(policy_.acceptance_rate(), k) < kMinPredraftUseRate) return 0;
  // A wasted pre-draft delays the draft's next real request and takes CPU from the verifier
  // (measured: 0.94x of sequential rounds with a draft whose rounds never fully accepted).
  if (predraft_use_rate_ < kMinPredraftUseRate &&
      rounds_without_predraft_ + 1 < kPredraftProbeEvery) {
    return 0;
  }
  DraftLengthPolicy next = policy_;
  next.Observe(k, k);
  return Fit(next.NextK(), length + k + 1, generated + k + 1, max_draft_tokens);
}

void RoundPlanner::ObservePredraft(bool sent, bool used) {
  if (!sent) {
    ++rounds_without_predraft_;
    return;
  }
  predraft_use_rate_ = 0.8 * predraft_use_rate_ + 0.2 * (used ? 1.0 : 0.0);
  rounds_without_predraft_ = 0;
}

void RoundPlanner::ObserveRound(int proposed, int accepted, double draft_time,
                                double verify_time) {
  // Rounds without proposals count too: a paused policy counts them towards its next probe.
  policy_.Observe(proposed, accepted);
  if (proposed <= 0) return;
  const double per_token = draft_time / proposed;
  draft_per_token_ema_ = draft_per_token_ema_ < 0
                             ? per_token
                             : kCostDecay * draft_per_token_ema_ + (1 - kCostDecay) * per_token;
  const double x = proposed, y = std::max(verify_time, 1e-6);
  fit_w_ = kCostDecay * fit_w_ + 1;
  fit_x_ = kCostDecay * fit_x_ + x;
  fit_y_ = kCostDecay * fit_y_ + y;
  fit_xx_ = kCostDecay * fit_xx_ + x * x;
  fit_xy_ = kCostDecay * fit_xy_ + x * y;
  const double mean_x = fit_x_ / fit_w_, mean_y = fit_y_ / fit_w_;
  const double var_x = fit_xx_ / fit_w_ - mean_x * mean_x;
  // Until recent rounds' K differed (by about one token or more), the line cannot be told from
  // a constant: the whole verify time is the base.
  double per_draft_token = 0.0, base = mean_y;
  if (fit_w_ >= 3 && var_x >= 0.25) {
    // Timing noise tilts the line (a slow first verification, a busy core): the slope is shrunk
    // towards 0 when few different K support it (ridge), and a draft token's verification may
    // cost at most kMaxRowShare of the base, so that noise can slow K's growth but never make
    // drafting look as dear as to pause it.
    const double slope = (fit_xy_ / fit_w_ - mean_x * mean_y) / (var_x + 1.0);
    per_draft_token =
        std::clamp(slope, 0.0, kMaxRowShare * mean_y / (1.0 + kMaxRowShare * mean_x));
    base = mean_y - per_draft_token * mean_x;
  }
  policy_.SetCostRatio((draft_per_token_ema_ + per_draft_token) / base);
}

size_t RoundPlanner::CutAtEos(absl::Span<const int32_t> tokens, int32_t eos, bool* eos_found) {
  *eos_found = false;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] == eos) {
      *eos_found = true;
      return i + 1;
    }
  }
  return tokens.size();
}

}  // namespace specdec
