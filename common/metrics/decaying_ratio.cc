// Exponentially decayed ratio (see decaying_ratio.h).
#include "common/metrics/decaying_ratio.h"

#include <cmath>

namespace specdec {

void DecayingRatio::DecayTo(absl::Time now) {
  if (last_ == absl::InfinitePast()) {
    last_ = now;
    return;
  }
  if (now <= last_) return;
  const double factor = std::exp(-absl::FDivDuration(now - last_, time_constant_));
  numerator_ *= factor;
  denominator_ *= factor;
  last_ = now;
}

void DecayingRatio::Add(double numerator, double denominator, absl::Time now) {
  absl::MutexLock lock(&mu_);
  DecayTo(now);
  numerator_ += numerator;
  denominator_ += denominator;
}

double DecayingRatio::Ratio() const {
  absl::MutexLock lock(&mu_);
  return denominator_ > 0 ? numerator_ / denominator_ : -1.0;
}

double DecayingRatio::Weight(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  if (last_ == absl::InfinitePast() || now <= last_) return denominator_;
  return denominator_ * std::exp(-absl::FDivDuration(now - last_, time_constant_));
}

}  // namespace specdec
