// The round planner: K fitted to budget, context and cap; the draft-cost estimate; the
// pre-draft decision; finish reasons and their names.
#include "common/speculative/round_planner.h"

#include <vector>

#include "gtest/gtest.h"

namespace specdec {
namespace {

TEST(RoundPlannerTest, FinishReasonsHaveTheApiNames) {
  EXPECT_STREQ(FinishReasonName(FinishReason::kLength), "length");
  EXPECT_STREQ(FinishReasonName(FinishReason::kEos), "eos");
  EXPECT_STREQ(FinishReasonName(FinishReason::kStop), "stop");
  EXPECT_STREQ(FinishReasonName(FinishReason::kContext), "context");
  EXPECT_STREQ(FinishReasonName(FinishReason::kNone), "none");
}

TEST(RoundPlannerTest, BudgetEndsBeforeContext) {
  RoundPlanner planner(DraftLengthPolicy::Constant(4), /*max_new_tokens=*/10,
                       /*max_positions=*/100);
  EXPECT_EQ(planner.BeforeRound(50, 9), FinishReason::kNone);
  EXPECT_EQ(planner.BeforeRound(50, 10), FinishReason::kLength);
  EXPECT_EQ(planner.BeforeRound(100, 5), FinishReason::kContext);
  EXPECT_EQ(planner.BeforeRound(100, 10), FinishReason::kLength);
}

TEST(RoundPlannerTest, KFitsBudgetContextAndCap) {
  RoundPlanner planner(DraftLengthPolicy::Constant(4), 10, 100);
  EXPECT_EQ(planner.PlanK(20, 0), 4);
  EXPECT_EQ(planner.PlanK(20, 7), 2);   // 3 tokens left: K + 1 = 3
  EXPECT_EQ(planner.PlanK(20, 9), 0);   // one token left: the verifier's alone
  EXPECT_EQ(planner.PlanK(97, 0), 2);   // 3 positions left
  EXPECT_EQ(planner.PlanK(99, 0), 0);
  EXPECT_EQ(planner.PlanK(20, 0, /*draft_allowed=*/false), 0);
  EXPECT_EQ(planner.PlanK(20, 0, true, /*max_draft_tokens=*/3), 3);
  EXPECT_EQ(planner.PlanK(20, 0, true, 0), 0);
  EXPECT_EQ(RoundPlanner(DraftLengthPolicy::Constant(0), 10, 100).PlanK(20, 0), 0);
}

TEST(RoundPlannerTest, PolicyForPicksAdaptiveOrConstant) {
  EXPECT_EQ(RoundPlanner::PolicyFor(3, false, 16).kind(), DraftLengthPolicy::Kind::kConstant);
  EXPECT_EQ(RoundPlanner::PolicyFor(3, false, 16).NextK(), 3);
  const DraftLengthPolicy adaptive = RoundPlanner::PolicyFor(0, true, 5);
  EXPECT_EQ(adaptive.kind(), DraftLengthPolicy::Kind::kExpectedThroughput);
  EXPECT_EQ(adaptive.max_k(), 5);
}

TEST(RoundPlannerTest, CostRatioIsASmoothedDraftPerTokenOverVerifyTime) {
  RoundPlanner planner(DraftLengthPolicy::ExpectedThroughput(8), 1000, 2048);
  planner.ObserveRound(4, 4, /*draft_time=*/8.0, /*verify_time=*/10.0);  // c = 2 / 10
  EXPECT_DOUBLE_EQ(planner.policy().cost_ratio(), 0.2);
  planner.ObserveRound(2, 0, 2.0, 10.0);  // c = 0.1: 0.8 * 0.2 + 0.2 * 0.1
  EXPECT_DOUBLE_EQ(planner.policy().cost_ratio(), 0.18);
  planner.ObserveRound(0, 0, 0.0, 10.0);  // no proposals: no cost sample
  EXPECT_DOUBLE_EQ(planner.policy().cost_ratio(), 0.18);
}

// Verification that costs more per draft token (each row is sampled): rounds of K = 2 and 8
// verified in 10 + 2 K, drafted at 1 a token. The ratio comes near (1 + 2) / 10 (the fitted
// slope is shrunk a little: 0.25-0.3) whatever the K of the last round, where dividing by
// whole verify times gave 1 / 26 after a K = 8 round, and a longer K looked cheaper still.
TEST(RoundPlannerTest, CostRatioCountsTheVerifiersCostPerDraftToken) {
  RoundPlanner planner(DraftLengthPolicy::ExpectedThroughput(16), 1000, 2048);
  for (int i = 0; i < 12; ++i) {
    const int k = i % 2 == 0 ? 2 : 8;
    planner.ObserveRound(k, k / 2, /*draft_time=*/1.0 * k, /*verify_time=*/10.0 + 2.0 * k);
  }
  const double c = planner.policy().cost_ratio();
  EXPECT_GT(c, 0.25);
  EXPECT_LE(c, 0.3);
  // The policy picks K for that cost: shorter rounds than for the whole-time ratio.
  const double a = planner.policy().acceptance_rate();
  EXPECT_EQ(planner.policy().NextK(), DraftLengthPolicy::BestK(a, c, 16));
  EXPECT_LT(DraftLengthPolicy::BestK(a, c, 16), DraftLengthPolicy::BestK(a, 1.0 / 26, 16));

  // A verification whose time is all per token (0 + 10 K) is held to a quarter of the base a
  // token: drafting never looks dear enough to pause on timing alone.
  RoundPlanner steep(DraftLengthPolicy::ExpectedThroughput(16), 1000, 2048);
  for (int i = 0; i < 12; ++i) {
    const int k = i % 2 == 0 ? 2 : 8;
    steep.ObserveRound(k, k, 0.1 * k, 10.0 * k);
  }
  EXPECT_LT(steep.policy().cost_ratio(), 0.3);
  EXPECT_FALSE(steep.paused());

  // Noise that tilts the line downwards costs nothing per token, never less.
  RoundPlanner tilted(DraftLengthPolicy::ExpectedThroughput(16), 1000, 2048);
  for (int i = 0; i < 12; ++i) {
    const int k = i % 2 == 0 ? 2 : 8;
    tilted.ObserveRound(k, k / 2, 1.0 * k, 30.0 - k);
  }
  EXPECT_GT(tilted.policy().cost_ratio(), 0.0);
  EXPECT_LT(tilted.policy().cost_ratio(), 1.0 / 20);  // draft 1 over a base of at least the mean
}

TEST(RoundPlannerTest, ExpensiveUselessDraftPausesAndProbes) {
  RoundPlanner planner(DraftLengthPolicy::ExpectedThroughput(8), 100000, 1 << 20);
  for (int i = 0; i < 20; ++i) planner.ObserveRound(planner.PlanK(10, 0), 0, 10.0, 1.0);
  EXPECT_TRUE(planner.paused());
  // Paused rounds draft nothing but count towards the next probe (waits of 16, 32, 64, 128).
  int probes = 0;
  for (int i = 0; i < 300; ++i) {
    const int k = planner.PlanK(10, 0);
    if (k > 0) ++probes;
    planner.ObserveRound(k, 0, 10.0 * k, 1.0);
  }
  EXPECT_GE(probes, 2);
  EXPECT_LE(probes, 6);
  EXPECT_TRUE(planner.paused());
}

TEST(RoundPlannerTest, PredraftOnlyWhenEveryProposalCameAndFitsTheNextRound) {
  RoundPlanner planner(DraftLengthPolicy::Constant(4), 20, 100);
  EXPECT_EQ(planner.PredraftK(4, 4, 10, 0), 4);
  EXPECT_EQ(planner.PredraftK(4, 3, 10, 0), 0);  // the draft came short
  EXPECT_EQ(planner.PredraftK(0, 0, 10, 0), 0);
  // After this round (5 tokens) 20 - 10 - 5 = 5 are left: K + 1 <= 5.
  EXPECT_EQ(planner.PredraftK(4, 4, 10, 10), 4);
  EXPECT_EQ(planner.PredraftK(4, 4, 10, 12), 2);
  EXPECT_EQ(planner.PredraftK(4, 4, 10, 14), 0);
  EXPECT_EQ(planner.PredraftK(4, 4, 90, 0), 4);  // next round at 95: K + 1 <= 5 positions
  EXPECT_EQ(planner.PredraftK(4, 4, 92, 0), 2);  // at 97: 3 positions left
  EXPECT_EQ(planner.PredraftK(4, 4, 10, 0, /*max_draft_tokens=*/2), 2);
}

TEST(RoundPlannerTest, UnusedPredraftsStopExceptForProbes) {
  RoundPlanner planner(DraftLengthPolicy::Constant(4), 100000, 1 << 20);
  // Rate 1.0 -> 0.8^n: below 0.25 after 7 wasted pre-drafts.
  for (int i = 0; i < 7; ++i) {
    ASSERT_GT(planner.PredraftK(4, 4, 10, 0), 0) << i;
    planner.ObservePredraft(/*sent=*/true, /*used=*/false);
  }
  EXPECT_EQ(planner.PredraftK(4, 4, 10, 0), 0);
  for (int i = 0; i + 1 < RoundPlanner::kPredraftProbeEvery; ++i) {
    EXPECT_EQ(planner.PredraftK(4, 4, 10, 0), 0) << i;
    planner.ObservePredraft(false, false);
  }
  EXPECT_GT(planner.PredraftK(4, 4, 10, 0), 0);  // the probe
  planner.ObservePredraft(true, true);
  planner.ObservePredraft(true, true);
  EXPECT_GT(planner.PredraftK(4, 4, 10, 0), 0);  // used again: 0.8^7 * 0.64 + 0.36 > 0.25
}

TEST(RoundPlannerTest, AdaptivePredraftNeedsALikelyFullAcceptance) {
  RoundPlanner planner(DraftLengthPolicy::ExpectedThroughput(8), 100000, 1 << 20);
  for (int i = 0; i < 30; ++i) planner.ObserveRound(4, 0, 0.1, 10.0);  // a ~ 0
  EXPECT_EQ(planner.PredraftK(2, 2, 10, 0), 0);
  RoundPlanner good(DraftLengthPolicy::ExpectedThroughput(8), 100000, 1 << 20);
  for (int i = 0; i < 30; ++i) good.ObserveRound(4, 4, 0.1, 10.0);  // a ~ 1
  EXPECT_GT(good.PredraftK(good.PlanK(10, 0), good.PlanK(10, 0), 10, 0), 0);
}

TEST(RoundPlannerTest, CutAtEosKeepsTheEosToken) {
  bool eos = true;
  const std::vector<int32_t> tokens = {5, 6, 0, 7};
  EXPECT_EQ(RoundPlanner::CutAtEos(tokens, 0, &eos), 3u);
  EXPECT_TRUE(eos);
  EXPECT_EQ(RoundPlanner::CutAtEos(tokens, 9, &eos), 4u);
  EXPECT_FALSE(eos);
  EXPECT_EQ(RoundPlanner::CutAtEos(tokens, -1, &eos), 4u);
  EXPECT_FALSE(eos);
}

}  // namespace
}  // namespace specdec
