// Tests for the exponentially decayed ratio behind the windowed acceptance rate (fake clock).
#include "common/metrics/decaying_ratio.h"

#include <cmath>

#include "gtest/gtest.h"

namespace specdec {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1000000);

TEST(DecayingRatioTest, EmptyHasNoRatio) {
  DecayingRatio ratio(absl::Minutes(1));
  EXPECT_EQ(ratio.Ratio(), -1.0);
  EXPECT_EQ(ratio.Weight(kStart), 0.0);
}

TEST(DecayingRatioTest, SteadyObservationsGiveTheirRatio) {
  DecayingRatio ratio(absl::Minutes(1));
  for (int i = 0; i < 100; ++i) ratio.Add(3, 4, kStart + absl::Seconds(i));
  EXPECT_NEAR(ratio.Ratio(), 0.75, 1e-12);
}

TEST(DecayingRatioTest, OldObservationsFadeWithTheTimeConstant) {
  DecayingRatio ratio(absl::Minutes(1));
  ratio.Add(0, 100, kStart);  // 0% long ago
  // One time constant later the old 100 drafted weigh 100/e; 100 new ones, all accepted.
  ratio.Add(100, 100, kStart + absl::Minutes(1));
  EXPECT_NEAR(ratio.Ratio(), 100.0 / (100.0 + 100.0 / std::exp(1.0)), 1e-9);
  EXPECT_NEAR(ratio.Weight(kStart + absl::Minutes(1)), 100.0 + 100.0 / std::exp(1.0), 1e-9);
  // Ten time constants later the old rate is forgotten.
  ratio.Add(100, 100, kStart + absl::Minutes(11));
  EXPECT_NEAR(ratio.Ratio(), 1.0, 1e-4);
}

TEST(DecayingRatioTest, ShortWindowFollowsAChangeFasterThanALongOne) {
  DecayingRatio one(absl::Minutes(1)), five(absl::Minutes(5));
  absl::Time now = kStart;
  for (int i = 0; i < 600; ++i, now += absl::Seconds(1)) {  // 10 minutes at 80%
    one.Add(8, 10, now);
    five.Add(8, 10, now);
  }
  for (int i = 0; i < 120; ++i, now += absl::Seconds(1)) {  // then 2 minutes at 0%
    one.Add(0, 10, now);
    five.Add(0, 10, now);
  }
  EXPECT_LT(one.Ratio(), 0.15);
  EXPECT_GT(five.Ratio(), 0.45);
  EXPECT_LT(five.Ratio(), 0.8);
}

TEST(DecayingRatioTest, TimeGoingBackwardsDoesNotInflate) {
  DecayingRatio ratio(absl::Minutes(1));
  ratio.Add(1, 2, kStart + absl::Seconds(10));
  ratio.Add(1, 2, kStart);  // a thread that read the clock earlier
  EXPECT_NEAR(ratio.Ratio(), 0.5, 1e-12);
  EXPECT_NEAR(ratio.Weight(kStart + absl::Seconds(10)), 4.0, 1e-12);
}

}  // namespace
}  // namespace specdec
