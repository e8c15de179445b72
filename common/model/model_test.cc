// The runtime's own invariants: KV-cache decoding equals recomputation, truncation is exact,
// F16 and sharded checkpoints load, layer plans share weights and validate.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/model/checkpoint_writer.h"
#include "common/model/model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/specdec_model_test_" + name + "_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  return dir;
}

ModelConfig SmallConfig() {
  auto c = PresetConfig("tiny");
  ModelConfig config = *c;
  config.vocab_size = 300;  // keeps the test quick
  config.max_position_embeddings = 128;
  return config;
}

std::shared_ptr<Model> LoadOrDie(const std::string& dir, const std::string& dtype = "f32") {
  auto model = Model::Load(dir, LoadOptions{"cpu", dtype});
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : nullptr;
}

double MaxDiffRows(const Logits& a, int64_t a_row, const Logits& b, int64_t b_row) {
  double worst = 0;
  for (int64_t c = 0; c < a.cols; ++c) {
    worst = std::max(worst, std::abs(static_cast<double>(a.row(a_row)[c]) - b.row(b_row)[c]));
  }
  return worst;
}

class ModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("f32"));
    ASSERT_TRUE(WriteRandomCheckpoint(SmallConfig(), CheckpointOptions{7, "f32", 1, ""}, *dir_).ok());
  }
  static std::string* dir_;
};
std::string* ModelTest::dir_ = nullptr;

const std::vector<int32_t> kTokens = {5, 17, 42, 99, 3, 250, 7, 7, 120, 64, 1, 299};

TEST_F(ModelTest, CachedDecodingEqualsFullRecomputation) {
  auto model = LoadOrDie(*dir_);
  auto full = model->FullView()->NewSequence()->Forward(kTokens);
  ASSERT_TRUE(full.ok());
  auto seq = model->FullView()->NewSequence();
  for (size_t i = 0; i < kTokens.size(); ++i) {
    auto step = seq->Forward({kTokens[i]});
    ASSERT_TRUE(step.ok());
    EXPECT_LT(MaxDiffRows(*step, 0, *full, i), 1e-5) << "position " << i;
  }
  EXPECT_EQ(seq->length(), static_cast<int64_t>(kTokens.size()));
}

TEST_F(ModelTest, TruncateThenRedecodeEqualsFreshRun) {
  auto model = LoadOrDie(*dir_);
  auto seq = model->FullView()->NewSequence();
  ASSERT_TRUE(seq->Forward(absl::MakeConstSpan(kTokens).subspan(0, 6)).ok());
  // A speculative tail that gets rejected.
  ASSERT_TRUE(seq->Forward({11, 12, 13, 14}).ok());
  ASSERT_TRUE(seq->Truncate(6).ok());
  auto resumed = seq->Forward(absl::MakeConstSpan(kTokens).subspan(6));
  ASSERT_TRUE(resumed.ok());
  auto fresh = model->FullView()->NewSequence()->Forward(kTokens);
  ASSERT_TRUE(fresh.ok());
  for (int64_t r = 0; r < resumed->rows; ++r) {
    EXPECT_EQ(MaxDiffRows(*resumed, r, *fresh, 6 + r) < 1e-5, true) << "row " << r;
  }
}

TEST_F(ModelTest, LastOnlyLogitsEqualTheLastRow) {
  auto model = LoadOrDie(*dir_);
  auto all = model->FullView()->NewSequence()->Forward(kTokens, LogitsWanted::kAll);
  auto last = model->FullView()->NewSequence()->Forward(kTokens, LogitsWanted::kLast);
  ASSERT_TRUE(all.ok() && last.ok());
  ASSERT_EQ(last->rows, 1);
  EXPECT_LT(MaxDiffRows(*last, 0, *all, all->rows - 1), 1e-5);
}

TEST_F(ModelTest, RejectsBadTokensAndOverlongSequences) {
  auto model = LoadOrDie(*dir_);
  auto seq = model->FullView()->NewSequence();
  auto bad = seq->Forward({1, 300});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("300"));
  EXPECT_EQ(seq->length(), 0);
  std::vector<int32_t> long_prompt(129, 3);
  auto too_long = seq->Forward(long_prompt);
  ASSERT_FALSE(too_long.ok());
  EXPECT_THAT(too_long.status().message(), HasSubstr("128 positions"));
  EXPECT_FALSE(seq->Truncate(5).ok());
}

TEST_F(ModelTest, LayerPlanSkipsLayersAndCutsTheVocabulary) {
  auto model = LoadOrDie(*dir_);
  LayerPlan plan;
  plan.layers = {1};
  plan.vocab_size = 40;
  auto view = model->View(plan);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ((*view)->vocab_cols(), 40);
  auto logits = (*view)->NewSequence()->Forward(kTokens);
  ASSERT_TRUE(logits.ok());
  EXPECT_EQ(logits->cols, 40);
  ASSERT_NE(logits->vocab_ids, nullptr);
  // No vocab_rank.json: the subset is the first 40 ids.
  EXPECT_EQ(logits->TokenAt(39), 39);

  LayerPlan bad;
  bad.layers = {0, 2};
  EXPECT_THAT(std::string(model->View(bad).status().message()), HasSubstr("layer 2 is out of range"));
}

TEST_F(ModelTest, MaskingNoHeadsEqualsTheFullModelAndMaskingSomeChangesIt) {
  auto model = LoadOrDie(*dir_);
  auto full = model->FullView()->NewSequence()->Forward(kTokens);
  LayerPlan plan;
  plan.masked_heads[0] = {1, 3};
  auto masked = (*model->View(plan))->NewSequence()->Forward(kTokens);
  ASSERT_TRUE(full.ok() && masked.ok());
  EXPECT_GT(MaxDiffRows(*masked, 5, *full, 5), 1e-6);
  // Cached decoding with masked heads still equals recomputation with them.
  auto seq = (*model->View(plan))->NewSequence();
  for (size_t i = 0; i < kTokens.size(); ++i) {
    auto step = seq->Forward({kTokens[i]});
    ASSERT_TRUE(step.ok());
    EXPECT_LT(MaxDiffRows(*step, 0, *masked, i), 1e-5);
  }
}

TEST_F(ModelTest, F16CheckpointAgreesWithF32WithinHalfPrecision) {
  const std::string f16_dir = TempDir("f16");
  ASSERT_TRUE(WriteRandomCheckpoint(SmallConfig(), CheckpointOptions{7, "f16", 1, ""}, f16_dir).ok());
  auto f32 = LoadOrDie(*dir_);
  auto f16 = LoadOrDie(f16_dir);  // F16 weights, computed in f32
  auto a = f32->FullView()->NewSequence()->Forward(kTokens);
  auto b = f16->FullView()->NewSequence()->Forward(kTokens);
  ASSERT_TRUE(a.ok() && b.ok());
  double worst = 0;
  for (int64_t r = 0; r < a->rows; ++r) worst = std::max(worst, MaxDiffRows(*a, r, *b, r));
  EXPECT_LT(worst, 2e-3);
  EXPECT_GT(worst, 0.0);  // the weights really were rounded
}

TEST_F(ModelTest, ShardedCheckpointEqualsSingleFile) {
  const std::string sharded = TempDir("sharded");
  ASSERT_TRUE(WriteRandomCheckpoint(SmallConfig(), CheckpointOptions{7, "f32", 3, ""}, sharded).ok());
  ASSERT_TRUE(std::filesystem::exists(sharded + "/model-00003-of-00003.safetensors"));
  auto a = LoadOrDie(*dir_)->FullView()->NewSequence()->Forward(kTokens);
  auto b = LoadOrDie(sharded)->FullView()->NewSequence()->Forward(kTokens);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->values, b->values);
}

TEST_F(ModelTest, MissingTensorAndWrongShapeAreNamed) {
  const std::string dir = TempDir("broken");
  ModelConfig config = SmallConfig();
  ASSERT_TRUE(WriteRandomCheckpoint(config, CheckpointOptions{7, "f32", 1, ""}, dir).ok());
  // A config that claims a bigger MLP than the weights hold.
  ModelConfig wrong = config;
  wrong.intermediate_size = 512;
  std::ofstream(dir + "/config.json") << wrong.ToJson();
  auto model = Model::Load(dir, LoadOptions{"cpu", "f32"});
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("mlp.dense_h_to_4h.weight"));
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("[256, 64]"));
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("model.safetensors"));

  std::filesystem::remove(dir + "/model.safetensors");
  model = Model::Load(dir, LoadOptions{"cpu", "f32"});
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("no model.safetensors"));
}

TEST(ModelLoadTest, UnsupportedDeviceAndDtypeAreRejected) {
  EXPECT_THAT(std::string(Model::Load("/nonexistent", LoadOptions{"cpu", "f32"}).status().message()),
              HasSubstr("config.json"));
}

}  // namespace
}  // namespace specdec

namespace specdec {
namespace {

TEST_F(ModelTest, AttentionStatsCoverEveryKeptHeadAndSumToOne) {
  auto model = LoadOrDie(*dir_);
  LayerPlan plan;
  plan.masked_heads[1] = {2};
  auto seq = (*model->View(plan))->NewSequence();
  AttentionStats stats;
  seq->RecordAttention(&stats);
  ASSERT_TRUE(seq->Forward(kTokens).ok());
  ASSERT_EQ(stats.layers.size(), 2u);
  ASSERT_EQ(stats.layers[0].size(), 4u);
  EXPECT_EQ(stats.layers[0][0].rows, static_cast<int64_t>(kTokens.size()));
  EXPECT_EQ(stats.layers[1][2].rows, 0);  // masked: not computed, not recorded
  // The first query row sees only itself: all its mass is at offset 0 and on token 0.
  const auto& head = stats.layers[1][0];
  EXPECT_GT(head.offset_mass_sum[0], 1.0 - 1e-5);
  EXPECT_LE(head.entropy_sum, head.uniform_entropy_sum + 1e-6);
  EXPECT_NEAR(head.uniform_entropy_sum, [] {
    double s = 0;
    for (size_t q = 0; q < kTokens.size(); ++q) s += std::log(q + 1.0);
    return s;
  }(), 1e-9);
}

}  // namespace
}  // namespace specdec

namespace specdec {
namespace {

TEST(CheckpointWriterTest, CreatesNestedOutputFolders) {
  const std::string dir = TempDir("nested") + "/a/b/c";
  ASSERT_TRUE(WriteRandomCheckpoint(SmallConfig(), CheckpointOptions{1, "f32", 1, ""}, dir).ok());
  EXPECT_TRUE(std::filesystem::exists(dir + "/config.json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors"));
}

// Weight dtypes on the CPU: bf16 weights stay within bf16's precision of f32's logits; f16 is
// refused at load time with what to use instead, not with an error at the first forward pass.
TEST_F(ModelTest, ComputeDtypesOnTheCpu) {
  auto f16 = Model::Load(*dir_, LoadOptions{"cpu", "f16"});
  EXPECT_EQ(f16.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f16.status().message()), HasSubstr("f16 is not supported on the CPU"));
  auto f64 = Model::Load(*dir_, LoadOptions{"cpu", "f64"});
  EXPECT_EQ(f64.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f64.status().message()),
              HasSubstr("must be f32, f16, bf16, int8 or bf16_dot"));

  auto f32 = LoadOrDie(*dir_);
  absl::StatusOr<Logits> full = f32->FullView()->NewSequence()->Forward(kTokens);
  ASSERT_TRUE(full.ok()) << full.status();
  // bf16_dot rounds the activations to bf16 as well (the bf16 dot product).
  for (const char* dtype : {"bf16", "bf16_dot"}) {
    auto bf16 = LoadOrDie(*dir_, dtype);
    ASSERT_NE(bf16, nullptr) << dtype;
    EXPECT_EQ(bf16->dtype(), dtype);
    absl::StatusOr<Logits> low = bf16->FullView()->NewSequence()->Forward(kTokens);
    ASSERT_TRUE(low.ok()) << low.status();
    ASSERT_EQ(low->values.size(), full->values.size());
    double worst = 0;
    for (size_t i = 0; i < low->values.size(); ++i) {
      ASSERT_TRUE(std::isfinite(low->values[i]));
      worst = std::max(worst, static_cast<double>(std::abs(low->values[i] - full->values[i])));
    }
    EXPECT_LT(worst, 0.25) << dtype << ": bf16 keeps 8 bits of mantissa";
  }
}

// What speculative verification rests on, for every CPU dtype: K+1 positions in one forward give
// the logits of K+1 single-position steps bit for bit.
TEST_F(ModelTest, VerifyingSeveralPositionsEqualsDecodingThemOneByOne) {
  const std::vector<int32_t> prefix(kTokens.begin(), kTokens.begin() + 5);
  const std::vector<int32_t> tail(kTokens.begin() + 5, kTokens.end());
  for (const char* dtype : {"f32", "bf16", "int8", "bf16_dot"}) {
    auto model = LoadOrDie(*dir_, dtype);
    ASSERT_NE(model, nullptr) << dtype;
    auto together = model->FullView()->NewSequence();
    ASSERT_TRUE(together->Forward(prefix).ok());
    absl::StatusOr<Logits> all = together->Forward(tail);
    ASSERT_TRUE(all.ok()) << all.status();
    auto alone = model->FullView()->NewSequence();
    ASSERT_TRUE(alone->Forward(prefix).ok());
    for (size_t i = 0; i < tail.size(); ++i) {
      absl::StatusOr<Logits> step = alone->Forward({tail[i]});
      ASSERT_TRUE(step.ok()) << step.status();
      EXPECT_EQ(MaxDiffRows(*step, 0, *all, static_cast<int64_t>(i)), 0.0) << dtype << " position " << i;
    }
  }
}

// dtype int8: every linear layer and the LM head run on int8 weights (a scale per output row,
// f32 activations); logits stay within quantization error of f32, the same on every CPU (the
// arithmetic is f32 whatever the ISA), and a draft view of it works like any other.
TEST(ModelInt8Test, Int8WeightsStayCloseToF32) {
  ModelConfig config = SmallConfig();
  config.hidden_size = 128;
  config.intermediate_size = 512;
  config.vocab_size = 40000;
  const std::string dir = TempDir("int8");
  ASSERT_TRUE(WriteRandomCheckpoint(config, CheckpointOptions{5, "f32", 1, ""}, dir).ok());
  auto int8 = LoadOrDie(dir, "int8");
  auto f32 = LoadOrDie(dir);
  std::filesystem::remove_all(dir);
  ASSERT_NE(int8, nullptr);
  EXPECT_EQ(int8->dtype(), "int8");
  absl::StatusOr<Logits> low = int8->FullView()->NewSequence()->Forward(kTokens);
  absl::StatusOr<Logits> full = f32->FullView()->NewSequence()->Forward(kTokens);
  ASSERT_TRUE(low.ok()) << low.status();
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_EQ(low->values.size(), full->values.size());
  double worst = 0, scale = 0;
  for (size_t i = 0; i < low->values.size(); ++i) {
    ASSERT_TRUE(std::isfinite(low->values[i]));
    worst = std::max(worst, static_cast<double>(std::abs(low->values[i] - full->values[i])));
    scale = std::max(scale, static_cast<double>(std::abs(full->values[i])));
  }
  EXPECT_GT(worst, 0) << "int8 weights should not give f32's logits bit for bit";
  EXPECT_LT(worst, 0.02 * scale) << "int8 keeps ~1% of each weight row's range";

  LayerPlan plan;
  plan.layers = {0};
  plan.vocab_size = 100;
  auto view = int8->View(plan);
  ASSERT_TRUE(view.ok()) << view.status();
  absl::StatusOr<Logits> draft = (*view)->NewSequence()->Forward(kTokens, LogitsWanted::kLast);
  ASSERT_TRUE(draft.ok()) << draft.status();
  EXPECT_EQ(draft->cols, 100);
}

}  // namespace
}  // namespace specdec

namespace specdec {
namespace {

// Cross-session batching: one pass over several sequences gives each what its own Forward
// gives (within float rounding), leaves every cache as its own forwards would, and keeps a bad
// item from touching the others. Contiguous and paged caches.
class ForwardBatchTest : public ModelTest, public ::testing::WithParamInterface<bool> {};

TEST_P(ForwardBatchTest, EachSequenceGetsWhatItsOwnForwardGives) {
  auto model = LoadOrDie(*dir_);
  ASSERT_NE(model, nullptr);
  std::shared_ptr<const ModelView> view = model->FullView();
  if (GetParam()) {
    auto kv = ParseKvCacheConfig("full");
    ASSERT_TRUE(kv.ok());
    auto paged = model->View(LayerPlan{}, *kv);
    ASSERT_TRUE(paged.ok()) << paged.status();
    view = *paged;
  }
  // Three sequences at different lengths, each with its twin that runs alone.
  const std::vector<std::vector<int32_t>> prompts = {{5, 17, 42}, {99}, {3, 250, 7, 7, 120, 64}};
  std::vector<std::unique_ptr<Sequence>> batched, alone;
  for (const auto& prompt : prompts) {
    batched.push_back(view->NewSequence());
    alone.push_back(view->NewSequence());
    ASSERT_TRUE(batched.back()->Forward(prompt).ok());
    ASSERT_TRUE(alone.back()->Forward(prompt).ok());
  }
  // Ragged steps: a verification (4 rows, all wanted), a decode (1 row), a catch-up (last only).
  const std::vector<std::vector<int32_t>> steps = {{1, 2, 3, 4}, {8}, {9, 10, 11}};
  const std::vector<LogitsWanted> wanted = {LogitsWanted::kAll, LogitsWanted::kAll,
                                            LogitsWanted::kLast};
  for (int round = 0; round < 3; ++round) {
    std::vector<Sequence::BatchItem> items;
    for (size_t i = 0; i < steps.size(); ++i) items.push_back({batched[i].get(), steps[i], wanted[i]});
    std::vector<absl::StatusOr<Logits>> results = Sequence::ForwardBatch(items);
    ASSERT_EQ(results.size(), steps.size());
    for (size_t i = 0; i < steps.size(); ++i) {
      ASSERT_TRUE(results[i].ok()) << results[i].status();
      auto expected = alone[i]->Forward(steps[i], wanted[i]);
      ASSERT_TRUE(expected.ok());
      ASSERT_EQ(results[i]->rows, expected->rows) << "sequence " << i;
      ASSERT_EQ(results[i]->cols, expected->cols);
      for (int64_t r = 0; r < expected->rows; ++r) {
        EXPECT_LT(MaxDiffRows(*results[i], r, *expected, r), 1e-4) << "sequence " << i << " row " << r;
      }
      EXPECT_EQ(batched[i]->length(), alone[i]->length());
    }
  }
  // A rollback after a batched pass is as exact as after a lone one.
  ASSERT_TRUE(batched[0]->Truncate(5).ok());
  ASSERT_TRUE(alone[0]->Truncate(5).ok());
  auto after = batched[0]->Forward({77});
  auto after_alone = alone[0]->Forward({77});
  ASSERT_TRUE(after.ok() && after_alone.ok());
  EXPECT_LT(MaxDiffRows(*after, 0, *after_alone, 0), 1e-4);
}

TEST_P(ForwardBatchTest, ABadItemFailsAloneAndLeavesItsSequenceUnchanged) {
  auto model = LoadOrDie(*dir_);
  ASSERT_NE(model, nullptr);
  std::shared_ptr<const ModelView> view = model->FullView();
  if (GetParam()) {
    auto paged = model->View(LayerPlan{}, *ParseKvCacheConfig("full"));
    ASSERT_TRUE(paged.ok());
    view = *paged;
  }
  auto good = view->NewSequence();
  auto bad = view->NewSequence();
  auto other_view = model->View(LayerPlan{{0}, {}, 0});
  ASSERT_TRUE(other_view.ok()) << other_view.status();
  auto foreign = (*other_view)->NewSequence();
  const std::vector<int32_t> ok_tokens = {1, 2, 3};
  const std::vector<int32_t> bad_tokens = {4, 300};  // 300 is outside the 300-token vocabulary
  std::vector<absl::StatusOr<Logits>> results = Sequence::ForwardBatch(
      {{good.get(), ok_tokens, LogitsWanted::kAll}, {bad.get(), bad_tokens, LogitsWanted::kAll},
       {good.get(), ok_tokens, LogitsWanted::kAll}, {foreign.get(), ok_tokens, LogitsWanted::kAll}});
  ASSERT_EQ(results.size(), 4u);
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  EXPECT_EQ(results[0]->rows, 3);
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(results[1].status().message(), HasSubstr("outside the vocabulary"));
  EXPECT_THAT(results[2].status().message(), HasSubstr("twice"));
  EXPECT_THAT(results[3].status().message(), HasSubstr("one view"));
  EXPECT_EQ(good->length(), 3);
  EXPECT_EQ(bad->length(), 0);
  EXPECT_EQ(foreign->length(), 0);
}

INSTANTIATE_TEST_SUITE_P(Caches, ForwardBatchTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("paged") : std::string("contiguous");
                         });

}  // namespace
}  // namespace specdec

namespace specdec {
namespace {

// The libtorch forward (what GPUs run), on the CPU ("cpu-libtorch", every machine) and on CUDA
// (f32, TF32 off; skipped without a GPU), held to the CPU engine on the same checkpoint: full
// and cached decoding, rollback, draft views (skipped layers, masked heads, vocabulary subset)
// and batched passes over contiguous and paged caches.
class LibtorchForwardTest : public ModelTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cuda") {
      if (!CudaAvailable()) GTEST_SKIP() << "no GPU visible to libtorch (or a CPU-only libtorch)";
      AllowTf32OnCuda(false);
    }
    auto model = Model::Load(*dir_, LoadOptions{GetParam(), "f32"});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *model;
    engine_ = LoadOrDie(*dir_);
  }
  std::shared_ptr<Model> model_, engine_;
};

constexpr double kDeviceTolerance = 1e-4;

TEST_P(LibtorchForwardTest, RunsTheLibtorchPath) {
  EXPECT_THAT(model_->cpu_kernels(), HasSubstr("libtorch on"));
  EXPECT_EQ(model_->device().rfind(GetParam() == "cuda" ? "cuda" : "cpu", 0), 0u) << model_->device();
}

TEST_P(LibtorchForwardTest, AgreesWithTheCpuEngineAndCachedDecodingEqualsRecomputation) {
  auto ours = model_->FullView()->NewSequence()->Forward(kTokens);
  auto reference = engine_->FullView()->NewSequence()->Forward(kTokens);
  ASSERT_TRUE(ours.ok()) << ours.status();
  ASSERT_TRUE(reference.ok()) << reference.status();
  for (int64_t r = 0; r < ours->rows; ++r) {
    EXPECT_LT(MaxDiffRows(*ours, r, *reference, r), kDeviceTolerance) << "row " << r;
  }
  auto seq = model_->FullView()->NewSequence();
  for (size_t i = 0; i < kTokens.size(); ++i) {
    auto step = seq->Forward({kTokens[i]}, LogitsWanted::kLast);
    ASSERT_TRUE(step.ok()) << step.status();
    EXPECT_LT(MaxDiffRows(*step, 0, *ours, i), kDeviceTolerance) << "position " << i;
  }
  // A rejected speculative tail, rolled back, leaves no trace.
  ASSERT_TRUE(seq->Forward({11, 12, 13}).ok());
  ASSERT_TRUE(seq->Truncate(6).ok());
  auto resumed = seq->Forward(absl::MakeConstSpan(kTokens).subspan(6));
  ASSERT_TRUE(resumed.ok());
  for (int64_t r = 0; r < resumed->rows; ++r) {
    EXPECT_LT(MaxDiffRows(*resumed, r, *ours, 6 + r), kDeviceTolerance) << "row " << r;
  }
}

TEST_P(LibtorchForwardTest, DraftViewsAgreeWithTheCpuEngine) {
  LayerPlan plan;
  plan.layers = {1};
  plan.vocab_size = 40;
  plan.masked_heads[1] = {0, 2};
  auto ours = (*model_->View(plan))->NewSequence()->Forward(kTokens);
  auto reference = (*engine_->View(plan))->NewSequence()->Forward(kTokens);
  ASSERT_TRUE(ours.ok() && reference.ok());
  ASSERT_EQ(ours->cols, 40);
  for (int64_t r = 0; r < ours->rows; ++r) {
    EXPECT_LT(MaxDiffRows(*ours, r, *reference, r), kDeviceTolerance) << "row " << r;
  }
}

TEST_P(LibtorchForwardTest, BatchedPassesEqualLoneOnesOnBothCaches) {
  for (const bool paged : {false, true}) {
    std::shared_ptr<const ModelView> view = model_->FullView();
    if (paged) {
      auto v = model_->View(LayerPlan{}, *ParseKvCacheConfig("full"));
      ASSERT_TRUE(v.ok()) << v.status();
      view = *v;
    }
    const std::vector<std::vector<int32_t>> prompts = {{5, 17, 42}, {99}, {3, 250, 7, 7, 120}};
    const std::vector<std::vector<int32_t>> steps = {{1, 2, 3, 4}, {8}, {9, 10}};
    std::vector<std::unique_ptr<Sequence>> batched, alone;
    std::vector<Sequence::BatchItem> items;
    for (size_t i = 0; i < prompts.size(); ++i) {
      batched.push_back(view->NewSequence());
      alone.push_back(view->NewSequence());
      items.push_back({batched.back().get(), prompts[i], LogitsWanted::kLast});
    }
    for (auto& result : Sequence::ForwardBatch(items)) ASSERT_TRUE(result.ok()) << result.status();
    for (size_t i = 0; i < prompts.size(); ++i) ASSERT_TRUE(alone[i]->Forward(prompts[i]).ok());
    items.clear();
    for (size_t i = 0; i < steps.size(); ++i) items.push_back({batched[i].get(), steps[i], LogitsWanted::kAll});
    std::vector<absl::StatusOr<Logits>> results = Sequence::ForwardBatch(items);
    for (size_t i = 0; i < steps.size(); ++i) {
      ASSERT_TRUE(results[i].ok()) << results[i].status();
      auto expected = alone[i]->Forward(steps[i]);
      ASSERT_TRUE(expected.ok());
      ASSERT_EQ(results[i]->rows, expected->rows);
      for (int64_t r = 0; r < expected->rows; ++r) {
        EXPECT_LT(MaxDiffRows(*results[i], r, *expected, r), kDeviceTolerance)
            << (paged ? "paged" : "contiguous") << " sequence " << i << " row " << r;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, LibtorchForwardTest, ::testing::Values("cpu-libtorch", "cuda"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "cuda" ? std::string("Cuda") : std::string("CpuLibtorch");
                         });

}  // namespace
}  // namespace specdec
