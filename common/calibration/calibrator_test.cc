// Calibration on a tiny random checkpoint: the mechanics (agreement, ranking, the written plan,
// the budget), not the numbers, which random weights make meaningless.
#include "common/calibration/calibrator.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/model/checkpoint_writer.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

class CalibratorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir =
        ::testing::TempDir() + "/specdec_calibrator_test_" + std::to_string(::getpid());
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
  static std::vector<int32_t> Text(int n) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < n; ++i) tokens.push_back((i * 37 + i * i * 11 + 5) % 300);
    return tokens;
  }
  static CalibrationOptions SmallOptions() {
    CalibrationOptions options;
    options.budget_s = 60;
    options.k_max = 4;
    options.max_tokens = 64;
    options.window = 32;
    options.vocab_cuts = {0, 128, 64, 1000};  // 1000 exceeds the vocabulary: same as full
    options.cost_context = 16;
    options.cost_repeats = 3;
    options.probe_tokens = 32;
    return options;
  }
  static const CalibrationReport& Report() {
    static const CalibrationReport* report = [] {
      auto r = Calibrate(**model_, Text(100), SmallOptions());
      EXPECT_TRUE(r.ok()) << r.status();
      return new CalibrationReport(r.ok() ? *std::move(r) : CalibrationReport{});
    }();
    return *report;
  }
  static std::shared_ptr<Model>* model_;
};
std::shared_ptr<Model>* CalibratorTest::model_ = nullptr;

TEST_F(CalibratorTest, TheFullPlanAgreesWithItselfEverywhere) {
  const CalibrationReport& report = Report();
  ASSERT_FALSE(report.table.empty());
  int full_rows = 0;
  for (const PlanScore& row : report.table) {
    if (row.plan.IsFull()) {
      ++full_rows;
      EXPECT_DOUBLE_EQ(row.agreement, 1.0);
      EXPECT_GT(row.cost_ratio, 0.0);
    }
  }
  EXPECT_EQ(full_rows, 1) << "the cut of 1000 (>= vocab) must fold into the full plan";
  EXPECT_EQ(report.tokens_used, 64);
}

TEST_F(CalibratorTest, TableIsSortedByExpectedSpeedupAndCoversTheCandidates) {
  const CalibrationReport& report = Report();
  for (size_t i = 1; i < report.table.size(); ++i) {
    EXPECT_GE(report.table[i - 1].expected_speedup, report.table[i].expected_speedup);
  }
  std::set<std::string> summaries;
  for (const PlanScore& row : report.table) {
    summaries.insert(row.plan.Summary());
    EXPECT_GE(row.agreement, 0.0);
    EXPECT_LE(row.agreement, 1.0);
    EXPECT_GE(row.best_k, 1);
    EXPECT_LE(row.best_k, 4);
  }
  // 3 layers: all, 3 single skips, 3 pairs (the keep-first-and-last sets repeat them).
  EXPECT_EQ(report.candidates_skipped, 0);
  EXPECT_GE(summaries.size(), 7u * 3u);
  EXPECT_TRUE(summaries.count("layers=0,2 vocab=64"));
  EXPECT_TRUE(summaries.count("layers=1 vocab=full"));
  EXPECT_EQ(report.verify.relative.size(), 5u);
  EXPECT_DOUBLE_EQ(report.verify.relative[0], 1.0);
}

TEST_F(CalibratorTest, HeadsAreProbedAndClassified) {
  const CalibrationReport& report = Report();
  ASSERT_EQ(report.heads.size(), 3u * 4u);  // tiny: 4 heads per layer
  for (const HeadReport& h : report.heads) {
    EXPECT_GE(h.ablation_agreement, 0.0);
    EXPECT_GE(h.entropy_ratio, 0.0);
    EXPECT_LE(h.entropy_ratio, 1.0 + 1e-9);
  }
  bool masked_variant = false;
  for (const PlanScore& row : report.table) masked_variant |= !row.plan.masked_heads.empty();
  EXPECT_TRUE(masked_variant);
}

TEST_F(CalibratorTest, WrittenPlanLoadsWithLoadLayerPlan) {
  const CalibrationReport& report = Report();
  ASSERT_FALSE(report.table.empty());
  const std::string path =
      ::testing::TempDir() + "/calibrated_plan_" + std::to_string(::getpid()) + ".json";
  std::ofstream(path) << report.ToJson();
  auto plan = LoadLayerPlan(path);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->layers, report.best().plan.layers);
  EXPECT_EQ(plan->vocab_size, report.best().plan.vocab_size);
  EXPECT_EQ(plan->masked_heads, report.best().plan.masked_heads);
  EXPECT_NE(plan->note.find("specdec-calibrate"), std::string::npos);
  EXPECT_TRUE(plan->Validate((*model_)->config()).ok());
  EXPECT_TRUE((*model_)->View(*plan).ok());
}

TEST_F(CalibratorTest, RestrictedArgmaxEqualsTheSubsetHead) {
  const std::vector<int32_t> text = Text(64);
  auto meter = AgreementMeter::Create(**model_, text, 32);
  ASSERT_TRUE(meter.ok()) << meter.status();
  LayerPlan plan;
  plan.layers = {0, 2};
  const std::vector<int64_t> cuts = {64, 0};
  auto agreement = meter->Measure(plan, cuts);
  ASSERT_TRUE(agreement.ok());
  // The same, the long way: a subset-head view, argmax through its vocab_ids.
  auto full = (*model_)->FullView();
  for (size_t c = 0; c < cuts.size(); ++c) {
    plan.vocab_size = cuts[c];
    auto view = (*model_)->View(plan);
    ASSERT_TRUE(view.ok());
    int same = 0;
    for (size_t begin = 0; begin < text.size(); begin += 32) {
      auto window = absl::MakeConstSpan(text).subspan(begin, 32);
      auto draft = (*view)->NewSequence()->Forward(window);
      auto target = full->NewSequence()->Forward(window);
      ASSERT_TRUE(draft.ok() && target.ok());
      for (int64_t r = 0; r < draft->rows; ++r) {
        const float* d = draft->row(r);
        const float* t = target->row(r);
        same += draft->TokenAt(std::max_element(d, d + draft->cols) - d) ==
                std::max_element(t, t + target->cols) - t;
      }
    }
    EXPECT_DOUBLE_EQ((*agreement)[c], same / 64.0) << "cut " << cuts[c];
  }
}

TEST_F(CalibratorTest, AZeroBudgetStillMeasuresTheFullLayerSet) {
  CalibrationOptions options = SmallOptions();
  options.budget_s = 0;
  auto report = Calibrate(**model_, Text(100), options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->table.size(), 3u);  // all layers x {full, 128, 64}
  EXPECT_GT(report->candidates_skipped, 0);
  EXPECT_TRUE(report->heads.empty());
}

TEST(CostModelTest, ExpectedTokensAndSpeedup) {
  EXPECT_DOUBLE_EQ(ExpectedTokensPerRound(0.0, 4), 1.0);
  EXPECT_DOUBLE_EQ(ExpectedTokensPerRound(1.0, 4), 5.0);
  EXPECT_NEAR(ExpectedTokensPerRound(0.5, 2), 1.75, 1e-12);
  VerifyCost flat;
  flat.token_s = 1;
  flat.relative = std::vector<double>(9, 1.0);
  // A free draft that is always right: every extra K is pure gain.
  EXPECT_EQ(ChooseDraftLength(1.0, 0.0, flat, 8).k, 8);
  EXPECT_DOUBLE_EQ(ChooseDraftLength(1.0, 0.0, flat, 8).speedup, 9.0);
  // A draft as slow as the target can never pay.
  EXPECT_LT(ChooseDraftLength(0.99, 1.0, flat, 8).speedup, 1.0);
  // (1 - 0.8^3) / 0.2 tokens for 2 * 0.1 + 1 units of time.
  EXPECT_NEAR(ExpectedSpeedup(0.8, 0.1, flat, 2), 2.44 / 1.2, 1e-9);
  // Past the measured range the verify cost is extrapolated linearly.
  VerifyCost rising;
  rising.relative = {1.0, 1.5};
  EXPECT_DOUBLE_EQ(rising.ForDraftTokens(3), 2.5);
}

TEST(CandidateLayerSetsTest, SixLayersInPriorityOrderWithoutRepeats) {
  const auto sets = CandidateLayerSets(6);
  ASSERT_FALSE(sets.empty());
  EXPECT_EQ(sets[0], (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(sets[1], (std::vector<int>{1, 2, 3, 4, 5}));
  std::set<std::vector<int>> unique(sets.begin(), sets.end());
  EXPECT_EQ(unique.size(), sets.size());
  EXPECT_TRUE(unique.count({0, 5}));
  EXPECT_TRUE(unique.count({0, 1, 5}));
  EXPECT_TRUE(unique.count({1, 2, 4, 5}));  // a pair skip {0, 3}
  // 1 + 6 singles + 15 pairs + first+last sets keeping 2 or 3 layers (1 + 2).
  EXPECT_EQ(sets.size(), 1u + 6u + 15u + 3u);
}

TEST(HeadProbeTest, ClassifiesUniformPositionalAndContentHeads) {
  AttentionStats stats;
  stats.layers.resize(1);
  stats.layers[0].resize(3);
  for (auto& s : stats.layers[0]) {
    s.rows = 10;
    s.uniform_entropy_sum = 20;
  }
  stats.layers[0][0].entropy_sum = 19.5;  // near uniform
  stats.layers[0][1].entropy_sum = 2;
  stats.layers[0][1].offset_mass_sum[1] = 9;  // 0.9 on the previous token
  stats.layers[0][2].entropy_sum = 8;
  stats.layers[0][2].offset_mass_sum[0] = 2;
  auto heads = ClassifyHeads(stats, {{{0, 2}, 0.5}}, HeadProbeOptions{});
  ASSERT_EQ(heads.size(), 3u);
  EXPECT_EQ(heads[0].kind, HeadKind::kDead);
  EXPECT_EQ(heads[1].kind, HeadKind::kPositional);
  EXPECT_EQ(heads[1].top_offset, 1);
  EXPECT_EQ(heads[2].kind, HeadKind::kContent);
  EXPECT_DOUBLE_EQ(heads[2].ablation_agreement, 0.5);
  // Masking a head that changes nothing makes it dead, whatever its pattern.
  heads = ClassifyHeads(stats, {{{0, 1}, 1.0}}, HeadProbeOptions{});
  EXPECT_EQ(heads[1].kind, HeadKind::kDead);
}

}  // namespace
}  // namespace specdec
