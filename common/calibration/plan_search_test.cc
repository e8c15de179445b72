// Online plan search: the sample of committed text, the duty-cycle accounting and the switch rule
// with fed-in scores and a fake clock (no timing), and the candidates' measurement on a tiny
// random checkpoint (the mechanics, not the numbers).
#include "common/calibration/plan_search.h"

#include <unistd.h>

#include <filesystem>

#include "common/model/checkpoint_writer.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(CommittedTextTest, KeepsTheLastTokensOfTheMostRecentSessions) {
  CommittedText text(/*max_sessions=*/2, /*tokens_per_session=*/4);
  text.Update("a", 0, {1, 2, 3});
  text.Update("b", 0, {10, 11});
  text.Update("a", 3, {4, 5});  // a holds its last 4: 2 3 4 5
  auto snapshot = text.Snapshot();
  ASSERT_EQ(snapshot.size(), 2u);
  EXPECT_EQ(snapshot[0], (std::vector<int32_t>{2, 3, 4, 5}));  // most recent first
  EXPECT_EQ(snapshot[1], (std::vector<int32_t>{10, 11}));
  text.Update("c", 0, {20, 21});  // b is the least recent: dropped
  snapshot = text.Snapshot();
  ASSERT_EQ(snapshot.size(), 2u);
  EXPECT_EQ(snapshot[0], (std::vector<int32_t>{20, 21}));
  EXPECT_EQ(snapshot[1], (std::vector<int32_t>{2, 3, 4, 5}));
  EXPECT_EQ(text.tokens_added(), 9);
  text.Update("c", 0, {20, 21, 22});  // sent again, one new
  EXPECT_EQ(text.tokens_added(), 10);
}

TEST(CommittedTextTest, ARolledBackGuessIsReplaced) {
  CommittedText text(1, 16);
  text.Update("a", 0, {1, 2, 3, 4});  // 4 was a guess (an overlapped round)
  text.Update("a", 3, {7, 8});        // the gateway restarts at 3
  EXPECT_EQ(text.Snapshot()[0], (std::vector<int32_t>{1, 2, 3, 7, 8}));
  text.Update("a", 9, {5, 6});  // a gap (a lost stretch): what is held does not continue
  EXPECT_EQ(text.Snapshot()[0], (std::vector<int32_t>{5, 6}));
}

TEST(DutyCycleTest, SleepsSoThatWorkStaysWithinItsFraction) {
  DutyCycle duty(0.05, kT0);
  absl::Time now = kT0;
  for (int i = 0; i < 50; ++i) {
    const absl::Duration piece = absl::Milliseconds(10 + 37 * (i % 5));  // uneven pieces
    const absl::Time next = duty.Worked(now, now + piece);
    EXPECT_EQ(next - (now + piece), piece * 19);  // busy * (1 - 0.05) / 0.05
    EXPECT_LE(duty.BusyFraction(next), 0.05 + 1e-9);
    now = next;
  }
  EXPECT_NEAR(duty.BusyFraction(now), 0.05, 1e-9);
  // Idle time lowers the measured fraction.
  EXPECT_NEAR(duty.BusyFraction(now + (now - kT0)), 0.025, 1e-9);
}

TEST(PlanDeciderTest, SwitchesOnlyAfterConsecutiveWinsByTheMargin) {
  PlanSwitchRule rule;
  rule.margin = 0.05;
  rule.consecutive = 2;
  rule.min_dwell = absl::Seconds(10);
  PlanDecider decider(rule, 0, kT0);
  const absl::Time late = kT0 + absl::Seconds(60);
  // Within the margin: never.
  EXPECT_FALSE(decider.Observe({2.0, 2.09}, late).has_value());
  EXPECT_FALSE(decider.Observe({2.0, 2.09}, late).has_value());
  // One loss by the margin, then a win: the streak starts over.
  EXPECT_FALSE(decider.Observe({2.0, 2.2}, late).has_value());
  EXPECT_FALSE(decider.Observe({2.0, 1.9}, late).has_value());
  EXPECT_FALSE(decider.Observe({2.0, 2.2}, late).has_value());
  EXPECT_EQ(decider.switches(), 0);
  // Two losses in a row, to different challengers (near-equal ones trade places): switch to the
  // latest best.
  std::optional<int> to = decider.Observe({2.0, 1.0, 2.3}, late);
  ASSERT_TRUE(to.has_value());
  EXPECT_EQ(*to, 2);
  EXPECT_EQ(decider.current(), 2);
  EXPECT_EQ(decider.switches(), 1);
  // The new plan needs its own two losses.
  EXPECT_FALSE(decider.Observe({2.6, 1.0, 2.3}, late + absl::Seconds(20)).has_value());
  EXPECT_EQ(decider.Observe({2.6, 1.0, 2.3}, late + absl::Seconds(21)), 0);
}

TEST(PlanDeciderTest, WaitsOutTheDwellTime) {
  PlanSwitchRule rule;
  rule.consecutive = 1;
  rule.min_dwell = absl::Seconds(10);
  PlanDecider decider(rule, 0, kT0);
  EXPECT_FALSE(decider.Observe({1.0, 2.0}, kT0 + absl::Seconds(5)).has_value());
  EXPECT_EQ(decider.Observe({1.0, 2.0}, kT0 + absl::Seconds(10)), 1);
  // Straight back is not allowed within the dwell time either (no flapping).
  EXPECT_FALSE(decider.Observe({3.0, 2.0}, kT0 + absl::Seconds(15)).has_value());
  EXPECT_EQ(decider.Observe({3.0, 2.0}, kT0 + absl::Seconds(21)), 0);
  EXPECT_EQ(decider.switches(), 2);
}

TEST(PlanDeciderTest, NeverSwitchesAwayFromAnUnscoredPlan) {
  PlanSwitchRule rule;
  rule.consecutive = 1;
  rule.min_dwell = absl::ZeroDuration();
  PlanDecider decider(rule, 1, kT0);
  EXPECT_FALSE(decider.Observe({5.0, 0.0}, kT0).has_value());
  EXPECT_FALSE(decider.Observe({5.0}, kT0).has_value());
  EXPECT_EQ(decider.switches(), 0);
}

class PlanSearchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir =
        ::testing::TempDir() + "/specdec_plan_search_test_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir);
    ModelConfig config = *PresetConfig("tiny");
    config.vocab_size = 300;
    config.num_hidden_layers = 3;
    config.max_position_embeddings = 256;
    ASSERT_TRUE(WriteRandomCheckpoint(config, CheckpointOptions{5, "f32", 1, ""}, dir).ok());
    auto model = Model::Load(dir, LoadOptions{"cpu", "f32"});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = new std::shared_ptr<Model>(*model);
  }
  static std::vector<int32_t> Text(int n, int salt) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < n; ++i) tokens.push_back((i * 37 + i * i * 11 + salt) % 300);
    return tokens;
  }
  static std::shared_ptr<Model>* model_;
};
std::shared_ptr<Model>* PlanSearchTest::model_ = nullptr;

TEST_F(PlanSearchTest, CandidatesStartWithTheStartingPlanWithoutRepeats) {
  PlanSearchOptions options;
  options.max_layer_sets = 2;             // all layers, then without layer 0
  options.vocab_cuts = {0, 128, 1000, 0};  // 1000 is the whole vocabulary: same as 0
  LayerPlan start;
  start.vocab_size = 128;
  PlanSearch search(*model_, start, options);
  std::vector<std::string> summaries;
  for (const LayerPlan& plan : search.candidates()) summaries.push_back(plan.Summary());
  ASSERT_EQ(summaries.size(), 4u) << ::testing::PrintToString(summaries);
  EXPECT_EQ(summaries[0], start.Summary());
  EXPECT_EQ(search.num_groups(), 2);  // two layer sets, each one forward for both cuts
}

TEST_F(PlanSearchTest, ScoresEveryCandidateFromCostAndAgreement) {
  PlanSearchOptions options;
  options.max_layer_sets = 2;
  options.vocab_cuts = {0, 128};
  options.k_max = 4;
  options.window = 32;
  options.cost_context = 16;
  options.cost_repeats = 3;
  PlanSearch search(*model_, LayerPlan{}, options);
  EXPECT_EQ(search.Score(), std::vector<double>(search.candidates().size(), 0.0));
  ASSERT_TRUE(search.MeasureVerify().ok());
  for (int c = search.NextUnmeasuredCost(); c >= 0; c = search.NextUnmeasuredCost()) {
    ASSERT_TRUE(search.MeasureCost(c).ok());
  }
  EXPECT_FALSE(search.MeasureGroup(0).ok());  // no evaluation begun
  ASSERT_TRUE(search.BeginEvaluation({Text(70, 5), Text(40, 9), {3}}).ok());
  EXPECT_EQ(search.num_texts(), 2);  // {3} is too short
  for (int i = 0; i < search.num_texts(); ++i) ASSERT_TRUE(search.AddReference(i).ok());
  for (int g = 0; g < search.num_groups(); ++g) ASSERT_TRUE(search.MeasureGroup(g).ok());
  const std::vector<double> speedups = search.Score();
  for (size_t c = 0; c < speedups.size(); ++c) {
    EXPECT_GT(speedups[c], 0) << search.candidates()[c].Summary();
    EXPECT_GE(search.scores()[c].agreement, 0);
    EXPECT_LE(search.scores()[c].agreement, 1);
  }
  // The full plan agrees with itself everywhere.
  EXPECT_DOUBLE_EQ(search.scores()[0].agreement, 1.0);
  EXPECT_FALSE(search.BeginEvaluation({{1}}).ok());  // no text long enough
}

// The full model's cuts kept from the reference forward give what a forward of the all-layer
// view gives (the shortcut the search takes for its cheapest group).
TEST_F(PlanSearchTest, FullModelCutsFromTheReferenceMatchAForward) {
  const std::vector<int64_t> cuts = {0, 128, 64};
  auto with = AgreementMeter::Create(**model_, Text(90, 3), 32, cuts);
  auto without = AgreementMeter::Create(**model_, Text(90, 3), 32);
  ASSERT_TRUE(with.ok() && without.ok());
  LayerPlan all;
  all.layers = {0, 1, 2};  // every layer, spelled out
  auto fast = with->Measure(all, cuts);
  auto slow = without->Measure(all, cuts);
  ASSERT_TRUE(fast.ok() && slow.ok());
  EXPECT_EQ(*fast, *slow);
  EXPECT_LT((*fast)[2], 1.0) << "a 64-id head should disagree somewhere (else this proves little)";
}

}  // namespace
}  // namespace specdec
