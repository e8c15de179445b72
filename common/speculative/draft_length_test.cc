// Tests for the draft-length policies: constant, HF's heuristic, expected throughput.
#include "common/speculative/draft_length.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace specdec {
namespace {

TEST(DraftLengthPolicyTest, ConstantNeverMoves) {
  DraftLengthPolicy policy = DraftLengthPolicy::Constant(4);
  EXPECT_EQ(policy.NextK(), 4);
  policy.Observe(4, 0);
  policy.Observe(4, 4);
  policy.SetCostRatio(10.0);
  EXPECT_EQ(policy.NextK(), 4);
  EXPECT_EQ(DraftLengthPolicy::Constant(-3).NextK(), 0);
  EXPECT_EQ(DraftLengthPolicy::Constant(0).NextK(), 0);
}

TEST(DraftLengthPolicyTest, HeuristicGrowsByTwoAndShrinksByOne) {
  DraftLengthPolicy policy = DraftLengthPolicy::Heuristic(5, 10);
  EXPECT_EQ(policy.NextK(), 5);
  policy.Observe(5, 5);
  EXPECT_EQ(policy.NextK(), 7);
  policy.Observe(7, 7);
  EXPECT_EQ(policy.NextK(), 9);
  policy.Observe(9, 9);
  EXPECT_EQ(policy.NextK(), 10);  // capped at max
  policy.Observe(10, 3);
  EXPECT_EQ(policy.NextK(), 9);
  for (int i = 0; i < 20; ++i) policy.Observe(policy.NextK(), 0);
  EXPECT_EQ(policy.NextK(), 1);  // never below 1
  policy.Observe(0, 0);          // a round without a draft changes nothing
  EXPECT_EQ(policy.NextK(), 1);
  EXPECT_EQ(DraftLengthPolicy::Heuristic(50, 8).NextK(), 8);
}

TEST(DraftLengthPolicyTest, BestKMaximisesExpectedThroughput) {
  // Brute force against the closed form (1 - a^(K+1)) / ((1 - a)(K c + 1)).
  for (double alpha : {0.0, 0.3, 0.6, 0.8, 0.9, 0.99}) {
    for (double c : {0.0, 0.02, 0.1, 0.3, 1.0}) {
      int best = 1;
      double best_rate = 0.0;
      for (int k = 1; k <= 16; ++k) {
        const double rate =
            (alpha == 1.0 ? k + 1 : (1 - std::pow(alpha, k + 1)) / (1 - alpha)) / (k * c + 1);
        if (rate > best_rate * (1 + 1e-12)) best_rate = rate, best = k;
      }
      EXPECT_EQ(DraftLengthPolicy::BestK(alpha, c, 16), best) << alpha << " " << c;
    }
  }
  EXPECT_EQ(DraftLengthPolicy::BestK(0.0, 0.1, 16), 1);   // a useless draft: minimum
  EXPECT_EQ(DraftLengthPolicy::BestK(1.0, 0.0, 16), 16);  // a free, perfect draft: maximum
  EXPECT_EQ(DraftLengthPolicy::BestK(1.0, 0.1, 16), 16);
  // alpha 0.8, c 0.1: K=3 gives 2.952/1.3 = 2.27, K=4 3.36/1.4 = 2.40, K=5 3.69/1.5 = 2.46,
  // K=6 3.95/1.6 = 2.47, K=7 4.16/1.7 = 2.45.
  EXPECT_EQ(DraftLengthPolicy::BestK(0.8, 0.1, 16), 6);
}

TEST(DraftLengthPolicyTest, ExpectedThroughputTracksAcceptance) {
  DraftLengthPolicy policy = DraftLengthPolicy::ExpectedThroughput(12, 0.6, 0.05, 0.2);
  EXPECT_NEAR(policy.acceptance_rate(), 0.6, 1e-12);
  EXPECT_EQ(policy.NextK(), DraftLengthPolicy::BestK(0.6, 0.05, 12));

  // A draft that is always right pushes alpha to 1 and K to the maximum.
  for (int i = 0; i < 60; ++i) policy.Observe(policy.NextK(), policy.NextK());
  EXPECT_GT(policy.acceptance_rate(), 0.99);
  EXPECT_EQ(policy.NextK(), 12);

  // A draft that is always wrong pushes alpha to 0, and drafting stops paying: K = 0
  // (paused) but for the probes.
  for (int i = 0; i < 200; ++i) policy.Observe(policy.NextK(), 0);
  EXPECT_LT(policy.acceptance_rate(), 0.05);  // below the cost ratio: K=1 no longer pays
  EXPECT_TRUE(policy.paused());
  EXPECT_EQ(policy.NextK(), 0);
}

TEST(DraftLengthPolicyTest, PausedPolicyProbesWithBackoff) {
  DraftLengthPolicy policy = DraftLengthPolicy::ExpectedThroughput(8, 0.6, 0.3);
  EXPECT_FALSE(policy.paused());
  EXPECT_GE(policy.NextK(), 1);
  // Never accepted: alpha falls below the cost ratio and the policy pauses.
  int rounds = 0;
  while (!policy.paused() && rounds < 100) {
    policy.Observe(policy.NextK(), 0);
    ++rounds;
  }
  ASSERT_TRUE(policy.paused());
  EXPECT_LT(rounds, 20);  // a few rounds, not the whole request
  // Paused: 15 rounds without a draft, then a probe with the best K >= 1; each probe that
  // finds nothing doubles the wait (16, 32, 64, 128, 128...).
  std::vector<int> probe_rounds;
  for (int i = 0; i < 16 + 32 + 64 + 128 + 128; ++i) {
    const int k = policy.NextK();
    if (k > 0) probe_rounds.push_back(i);
    policy.Observe(k, 0);
  }
  EXPECT_EQ(probe_rounds, (std::vector<int>{15, 47, 111, 239, 367}));
  // Probes that are accepted bring the acceptance estimate back up, and drafting resumes.
  for (int i = 0; i < 40 * DraftLengthPolicy::kMaxProbeEvery && policy.paused(); ++i) {
    const int k = policy.NextK();
    policy.Observe(k, k);
  }
  EXPECT_FALSE(policy.paused());
  EXPECT_GE(policy.NextK(), 1);
}

TEST(DraftLengthPolicyTest, FirstRoundsOutweighThePrior) {
  // The prior (0.6) is one pseudo-trial; the first round weighs as much as it (a running mean),
  // not ema_weight: one round of K=3 rejected at once halves the estimate.
  DraftLengthPolicy policy = DraftLengthPolicy::ExpectedThroughput(8, 0.6, 0.1, 0.1);
  policy.Observe(3, 0);
  EXPECT_NEAR(policy.acceptance_rate(), 0.3, 1e-12);
  policy.Observe(1, 0);  // weight 1/3
  EXPECT_NEAR(policy.acceptance_rate(), 0.2, 1e-12);
  // A draft that is always right is believed as quickly.
  DraftLengthPolicy good = DraftLengthPolicy::ExpectedThroughput(8, 0.6, 0.1, 0.1);
  good.Observe(good.NextK(), good.NextK());
  EXPECT_GT(good.acceptance_rate(), 0.8);
}

TEST(DraftLengthPolicyTest, FreeDraftingNeverPauses) {
  DraftLengthPolicy policy = DraftLengthPolicy::ExpectedThroughput(4, 0.0, 0.0);
  for (int i = 0; i < 50; ++i) policy.Observe(policy.NextK(), 0);
  EXPECT_FALSE(policy.paused());
  EXPECT_EQ(policy.NextK(), 1);
  // Constant K never pauses, whatever it observes.
  DraftLengthPolicy constant = DraftLengthPolicy::Constant(3);
  for (int i = 0; i < 50; ++i) constant.Observe(3, 0);
  EXPECT_FALSE(constant.paused());
  EXPECT_EQ(constant.NextK(), 3);
}

TEST(DraftLengthPolicyTest, ExpectedThroughputEstimatesThePerTokenRate) {
  // Rounds of K=4 where each token is accepted with probability 0.7, fed as their expected
  // composition: the estimate converges to accepted / (accepted + rejections).
  DraftLengthPolicy policy = DraftLengthPolicy::ExpectedThroughput(8, 0.5, 0.1, 0.05);
  // Deterministic pattern with 7 accepted tokens per 3 rejections: 7 / 10 = 0.7.
  for (int i = 0; i < 400; ++i) {
    policy.Observe(4, 2);  // 2 successes, 1 failure
    policy.Observe(4, 2);  // 2 successes, 1 failure
    policy.Observe(4, 3);  // 3 successes, 1 failure
    policy.Observe(0, 0);  // ignored
  }
  EXPECT_NEAR(policy.acceptance_rate(), 0.7, 0.02);
}

TEST(DraftLengthPolicyTest, CostRatioMovesK) {
  DraftLengthPolicy policy = DraftLengthPolicy::ExpectedThroughput(16, 0.8, 0.0);
  EXPECT_EQ(policy.NextK(), 16);  // free drafting: as long as allowed
  policy.SetCostRatio(0.1);
  EXPECT_EQ(policy.NextK(), 6);
  policy.SetCostRatio(0.5);  // drafting a token costs half a verification: short rounds
  EXPECT_EQ(policy.NextK(), DraftLengthPolicy::BestK(0.8, 0.5, 16));
  EXPECT_EQ(policy.NextK(), 2);  // K=2: 2.44 tokens for 2 units, K=1: 1.8 for 1.5
  // A whole verification per draft token: even K=1 (1.8 tokens for 2 units) loses to plain
  // decoding (1 for 1), so drafting pauses.
  policy.SetCostRatio(1.0);
  EXPECT_TRUE(policy.paused());
  EXPECT_EQ(policy.NextK(), 0);
  policy.SetCostRatio(NAN);  // ignored
  policy.SetCostRatio(-1.0);
  EXPECT_DOUBLE_EQ(policy.cost_ratio(), 1.0);
}

}  // namespace
}  // namespace specdec
