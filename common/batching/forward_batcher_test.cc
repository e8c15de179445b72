// ForwardBatcher: concurrent sessions share passes and each gets what its own Forward gives.
#include "common/batching/forward_batcher.h"

#include <cmath>
#include <filesystem>
#include <functional>
#include <thread>
#include <vector>

#include "common/model/checkpoint_writer.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

std::shared_ptr<Model> TinyModel() {
  const std::string dir = ::testing::TempDir() + "/specdec_batcher_" + std::to_string(::getpid());
  ModelConfig config = *PresetConfig("tiny");
  config.vocab_size = 300;
  config.max_position_embeddings = 128;
  EXPECT_TRUE(WriteRandomCheckpoint(config, CheckpointOptions{11, "f32", 1, ""}, dir).ok());
  auto model = Model::Load(dir, LoadOptions{"cpu", "f32"});
  EXPECT_TRUE(model.ok()) << model.status();
  std::filesystem::remove_all(dir);
  return model.ok() ? *model : nullptr;
}

double MaxDiff(const Logits& a, const Logits& b) {
  double worst = 0;
  for (size_t i = 0; i < a.values.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::abs(a.values[i] - b.values[i])));
  }
  return worst;
}

// Runs `sessions` threads, each decoding `steps` steps through `batcher` with the tokens
// `tokens(session, step)` gives, beside a twin sequence that runs the same tokens alone; checks
// that every call succeeds and that its logits equal the twin's. Session s runs on
// views[s % views.size()].
void ExpectEverySessionGetsItsOwnLogits(
    const std::vector<const ModelView*>& views, ForwardBatcher& batcher, int sessions, int steps,
    const std::function<std::vector<int32_t>(int, int)>& tokens) {
  std::vector<double> worst(sessions, 0);
  std::vector<int> failures(sessions, 0);
  std::vector<std::thread> threads;
  for (int s = 0; s < sessions; ++s) {
    threads.emplace_back([&, s] {
      const ModelView& view = *views[s % views.size()];
      std::unique_ptr<Sequence> batched = view.NewSequence();
      std::unique_ptr<Sequence> alone = view.NewSequence();
      for (int step = 0; step < steps; ++step) {
        const std::vector<int32_t> input = tokens(s, step);
        auto got = batcher.Forward(batched.get(), input, LogitsWanted::kAll);
        auto want = alone->Forward(input, LogitsWanted::kAll);
        if (!got.ok() || !want.ok() || got->rows != want->rows) {
          ++failures[s];
          continue;
        }
        worst[s] = std::max(worst[s], MaxDiff(*got, *want));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int s = 0; s < sessions; ++s) {
    EXPECT_EQ(failures[s], 0) << "session " << s;
    EXPECT_LT(worst[s], 1e-4) << "session " << s;
  }
}

// Four sessions decoding in step: every pass carries all four (the batcher waits for them), and
// every step's logits equal those of the same sequence run alone.
TEST(ForwardBatcherTest, SessionsInStepShareEveryPassAndGetTheirOwnLogits) {
  std::shared_ptr<Model> model = TinyModel();
  ASSERT_NE(model, nullptr);
  std::shared_ptr<const ModelView> view = model->FullView();
  constexpr int kSessions = 4, kSteps = 12;
  ForwardBatcher::Options options;
  options.max_wait = absl::Seconds(30);  // never reached: the four always come
  options.first_pass_calls = kSessions;
  ForwardBatcher batcher(options);
  // Ragged: session s runs s + 1 tokens a step (a verification-sized pass for some).
  ExpectEverySessionGetsItsOwnLogits({view.get()}, batcher, kSessions, kSteps, [](int s, int step) {
    std::vector<int32_t> tokens;
    for (int i = 0; i <= s; ++i) tokens.push_back((7 * s + 3 * step + i) % 300);
    return tokens;
  });
  const ForwardBatcher::Stats stats = batcher.stats();
  EXPECT_EQ(stats.calls, kSessions * kSteps);
  EXPECT_EQ(stats.passes, kSteps);  // unbatched it would be kSessions * kSteps
  EXPECT_EQ(stats.largest, kSessions);
  EXPECT_EQ(stats.rows, kSteps * (1 + 2 + 3 + 4));
}

// With two passes allowed at once (one per core), many sessions still each get their own
// logits and every call is served exactly once.
TEST(ForwardBatcherTest, ParallelPassesKeepEverySessionsLogits) {
  std::shared_ptr<Model> model = TinyModel();
  ASSERT_NE(model, nullptr);
  std::shared_ptr<const ModelView> view = model->FullView();
  constexpr int kSessions = 6, kSteps = 10;
  ForwardBatcher::Options options;
  options.max_passes = 2;
  ForwardBatcher batcher(options);
  ExpectEverySessionGetsItsOwnLogits({view.get()}, batcher, kSessions, kSteps, [](int s, int step) {
    return std::vector<int32_t>(1 + (s + step) % 3, static_cast<int32_t>((11 * s + step) % 300));
  });
  const ForwardBatcher::Stats stats = batcher.stats();
  EXPECT_EQ(stats.calls, kSessions * kSteps);
  EXPECT_LE(stats.passes, stats.calls);
}

// Sessions on two views (a draft between plans: some sessions have moved to the new plan, some
// not yet) share one batcher: a pass takes one view's calls, and every call gets its own logits.
TEST(ForwardBatcherTest, SessionsOnTwoViewsEachGetTheirOwnLogits) {
  std::shared_ptr<Model> model = TinyModel();
  ASSERT_NE(model, nullptr);
  LayerPlan cut;
  cut.vocab_size = 100;
  cut.layers = {0};
  auto other = model->View(cut);
  ASSERT_TRUE(other.ok()) << other.status();
  constexpr int kSessions = 4, kSteps = 8;
  ForwardBatcher::Options options;
  options.max_wait = absl::Milliseconds(5);
  options.first_pass_calls = kSessions;
  ForwardBatcher batcher(options);
  ExpectEverySessionGetsItsOwnLogits(
      {model->FullView().get(), other->get()}, batcher, kSessions, kSteps,
      [](int s, int step) { return std::vector<int32_t>{(5 * s + step) % 300}; });
  const ForwardBatcher::Stats stats = batcher.stats();
  EXPECT_EQ(stats.calls, kSessions * kSteps);
  EXPECT_LE(stats.largest, kSessions / 2);  // never both views in one pass
}

// A pass never exceeds max_rows (a bigger call runs alone), and errors stay with their call.
TEST(ForwardBatcherTest, RowLimitAndErrorsArePerCall) {
  std::shared_ptr<Model> model = TinyModel();
  ASSERT_NE(model, nullptr);
  std::shared_ptr<const ModelView> view = model->FullView();
  ForwardBatcher::Options options;
  options.max_rows = 4;
  options.max_wait = absl::ZeroDuration();
  ForwardBatcher batcher(options);
  std::unique_ptr<Sequence> sequence = view->NewSequence();
  auto big = batcher.Forward(sequence.get(), {1, 2, 3, 4, 5, 6}, LogitsWanted::kLast);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->rows, 1);
  EXPECT_EQ(sequence->length(), 6);
  auto bad = batcher.Forward(sequence.get(), {1, 999}, LogitsWanted::kAll);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sequence->length(), 6);
  EXPECT_EQ(batcher.stats().passes, 2);
}

}  // namespace
}  // namespace specdec
