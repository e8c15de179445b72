// Draft-length policies: constant, Hugging Face's heuristic, and an expected-throughput model.
#include "common/speculative/draft_length.h"

#include <algorithm>
#include <cmath>

namespace specdec {

DraftLengthPolicy DraftLengthPolicy::Constant(int k) {
  k = std::max(0, k);
  return DraftLengthPolicy(Kind::kConstant, k, k);
}

DraftLengthPolicy DraftLengthPolicy::Heuristic(int initial_k, int max_k) {
  max_k = std::max(1, max_k);
  return DraftLengthPolicy(Kind::kHeuristic, std::clamp(initial_k, 1, max_k), max_k);
}

DraftLengthPolicy DraftLengthPolicy::ExpectedThroughput(int max_k, double initial_alpha,
                                                        double initial_cost_ratio,
                                                        double ema_weight) {
  max_k = std::max(1, max_k);
  DraftLengthPolicy policy(Kind::kExpectedThroughput, 1, max_k);
  // One pseudo-trial of prior; the EMA forgets it at the same rate as real rounds.
  policy.ema_accepted_ = std::isfinite(initial_alpha) ? std::clamp(initial_alpha, 0.0, 1.0) : 0.6;
  policy.ema_trials_ = 1.0;
  policy.ema_weight_ = std::isfinite(ema_weight) ? std::clamp(ema_weight, 1e-6, 1.0) : 0.1;
  policy.cost_ratio_ = std::isfinite(initial_cost_ratio) ? std::max(0.0, initial_cost_ratio) : 0.1;
  policy.Recompute();
  return policy;
}

void DraftLengthPolicy::Observe(int proposed, int accepted) {
  if (proposed <= 0) {
    // A round without a draft says nothing about the draft; it only brings the next probe
    // nearer.
    if (paused_) {
      ++rounds_since_probe_;
      Recompute();
    }
    return;
  }
  rounds_since_probe_ = 0;
  accepted = std::clamp(accepted, 0, proposed);
  switch (kind_) {
    case Kind::kConstant:
      return;
    case Kind::kHeuristic:
      k_ = std::clamp(accepted == proposed ? k_ + 2 : k_ - 1, 1, max_k_);
      return;
    case Kind::kExpectedThroughput: {
      const bool probe = paused_;
      const double trials = accepted + (accepted < proposed ? 1 : 0);
      const double weight = std::max(ema_weight_, 1.0 / (rounds_observed_ + 2));
      ++rounds_observed_;
      ema_accepted_ = (1.0 - weight) * ema_accepted_ + weight * accepted;
      ema_trials_ = (1.0 - weight) * ema_trials_ + weight * trials;
      Recompute();
      if (probe && paused_) {
        probe_every_ = std::min(2 * probe_every_, kMaxProbeEvery);
      } else if (!paused_) {
        probe_every_ = kProbeEvery;
      }
      return;
    }
  }
}

void DraftLengthPolicy::SetCostRatio(double cost_ratio) {
  if (!std::isfinite(cost_ratio) || cost_ratio < 0.0) return;
  cost_ratio_ = cost_ratio;
  if (kind_ == Kind::kExpectedThroughput) Recompute();
}

double DraftLengthPolicy::acceptance_rate() const {
  if (ema_trials_ <= 0.0) return 0.0;
  return std::clamp(ema_accepted_ / ema_trials_, 0.0, 1.0);
}

void DraftLengthPolicy::Recompute() {
  const double alpha = acceptance_rate();
  const int best = BestK(alpha, cost_ratio_, max_k_);
  // Tokens per unit of cost of the best K against plain decoding's 1 (written as the sum, as
  // in BestK).
  double expected = 1.0, term = 1.0;
  for (int k = 1; k <= best; ++k) expected += (term *= alpha);
  paused_ = expected / (best * cost_ratio_ + 1.0) < 1.0;
  k_ = paused_ && rounds_since_probe_ < probe_every_ - 1 ? 0 : best;
}

int DraftLengthPolicy::BestK(double alpha, double cost_ratio, int max_k) {
  alpha = std::isfinite(alpha) ? std::clamp(alpha, 0.0, 1.0) : 0.0;
  cost_ratio = std::isfinite(cost_ratio) ? std::max(0.0, cost_ratio) : 0.0;
  max_k = std::max(1, max_k);
  // E[tokens per round] = sum_{j=0..K} alpha^j = (1 - alpha^(K+1)) / (1 - alpha), written as
  // the sum so alpha = 1 needs no special case.
  int best_k = 1;
  double best_rate = -1.0;
  double expected = 1.0;
  double term = 1.0;
  for (int k = 1; k <= max_k; ++k) {
    term *= alpha;
    expected += term;
    const double rate = expected / (k * cost_ratio + 1.0);
    if (rate > best_rate * (1.0 + 1e-12)) {
      best_rate = rate;
      best_k = k;
    }
  }
  return best_k;
}

}  // namespace specdec
