// A ratio of two exponentially decayed sums, e.g. accepted / drafted tokens "over the last
// minute": each observation weighs exp(-age / time_constant), so the ratio follows a change
// within about one time constant and never forgets abruptly (no window edge). Used for the
// gateway's windowed acceptance rate next to the lifetime counters, which Prometheus can window
// itself (rate()) but a dashboard-less operator reading /metrics cannot.
#ifndef SPECDEC_COMMON_METRICS_DECAYING_RATIO_H_
#define SPECDEC_COMMON_METRICS_DECAYING_RATIO_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace specdec {

// Thread-safe. Time is passed in, so tests drive it with a fake clock.
class DecayingRatio {
 public:
  explicit DecayingRatio(absl::Duration time_constant) : time_constant_(time_constant) {}

  // Adds `numerator` / `denominator` observed at `now` (times must not go backwards by much;
  // an earlier time is treated as `now` of the latest observation).
  void Add(double numerator, double denominator, absl::Time now);
  // The decayed numerator / decayed denominator; -1 while the denominator has no weight.
  // With no new observations the ratio stays (both sums decay alike); only its weight fades.
  double Ratio() const;
  // The decayed denominator at `now` (e.g. drafted tokens in the last time constant, roughly).
  double Weight(absl::Time now) const;

 private:
  void DecayTo(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration time_constant_;
  mutable absl::Mutex mu_;
  double numerator_ ABSL_GUARDED_BY(mu_) = 0;
  double denominator_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_METRICS_DECAYING_RATIO_H_
