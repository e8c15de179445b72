// The CPU engine's native `query_aware` attention (common/cpu_kernels/query_aware.h, which reads
// only the pages it selects) against the libtorch path (PagedKvCache::Attend, a mask over a full
// read) on the same checkpoint: prefill, decode and speculative rounds crossing pages, with fewer
// and more pages than `pages`; and its own exactness: the logits of a position do not depend on
// how positions were grouped into forwards, batched with other sequences or rolled back.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "common/kv_cache/kv_cache_config.h"
#include "common/model/checkpoint_writer.h"
#include "common/model/model.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

// 4-token pages over 96 positions: up to 24 pages, against a selection of 3.
constexpr char kPolicy[] = "query_aware:pages=3,block=4";
constexpr int kPositions = 96;

class QueryAwareEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = ::testing::TempDir() + "/specdec_query_aware_test_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir);
    ModelConfig config = *PresetConfig("tiny");
    config.vocab_size = 300;
    config.max_position_embeddings = kPositions;
    ASSERT_TRUE(WriteRandomCheckpoint(config, CheckpointOptions{23, "f32", 1, ""}, dir).ok());
    auto native = Model::Load(dir, LoadOptions{"cpu", "f32"});
    auto torch = Model::Load(dir, LoadOptions{"cpu-libtorch", "f32"});
    ASSERT_TRUE(native.ok() && torch.ok()) << native.status() << torch.status();
    native_ = new std::shared_ptr<Model>(*native);
    torch_ = new std::shared_ptr<Model>(*torch);
  }
  static std::shared_ptr<const ModelView> ViewOf(const std::shared_ptr<Model>& model, const std::string& policy) {
    auto config = ParseKvCacheConfig(policy);
    EXPECT_TRUE(config.ok()) << config.status();
    auto view = model->View(LayerPlan{}, *config);
    EXPECT_TRUE(view.ok()) << view.status();
    return *view;
  }
  static std::shared_ptr<Model>* native_;
  static std::shared_ptr<Model>* torch_;
};
std::shared_ptr<Model>* QueryAwareEngineTest::native_ = nullptr;
std::shared_ptr<Model>* QueryAwareEngineTest::torch_ = nullptr;

std::vector<int32_t> Tokens(int n, int seed) {
  std::vector<int32_t> t;
  uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
  for (int i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    t.push_back(static_cast<int32_t>(x % 300));
  }
  return t;
}

// Logits of every position of `t`, one row each, as a verifier produces them: a prefill of 30,
// then rounds of [pending, 4 drafts] where the first `accepted` drafts are the true tokens and
// the rest junk, rolled back to the accepted ones and committed. `accept` cycles through 0-4.
std::vector<std::vector<float>> SpeculativeRun(Sequence& seq, const std::vector<int32_t>& t) {
  std::vector<std::vector<float>> rows;
  auto keep = [&](const Logits& logits, int count) {
    for (int r = 0; r < count; ++r) rows.emplace_back(logits.row(r), logits.row(r) + logits.cols);
  };
  auto span = absl::MakeConstSpan(t);
  auto prefill = seq.Forward(span.subspan(0, 30));
  EXPECT_TRUE(prefill.ok()) << prefill.status();
  keep(*prefill, 30);
  EXPECT_TRUE(seq.Commit(30).ok());
  int64_t length = 30;
  for (int round = 0; length + 5 <= static_cast<int64_t>(t.size()); ++round) {
    const int accepted = round % 5;
    std::vector<int32_t> chunk(span.begin() + length, span.begin() + length + 5);
    for (int j = 1 + accepted; j < 5; ++j) chunk[j] = static_cast<int32_t>((chunk[j] + 7 * j) % 300);
    auto logits = seq.Forward(chunk);
    EXPECT_TRUE(logits.ok()) << logits.status();
    keep(*logits, 1 + accepted);
    length += 1 + accepted;
    EXPECT_TRUE(seq.Truncate(length).ok());
    EXPECT_TRUE(seq.Commit(length).ok());
  }
  return rows;
}

int Argmax(const std::vector<float>& row) {
  return static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
}

TEST_F(QueryAwareEngineTest, NativeMatchesTheTorchPath) {
  const std::vector<int32_t> t = Tokens(kPositions, 5);
  for (const std::string policy : {std::string(kPolicy), std::string("query_aware:pages=100,block=4")}) {
    auto native = ViewOf(*native_, policy)->NewSequence();
    auto torch = ViewOf(*torch_, policy)->NewSequence();
    const auto a = SpeculativeRun(*native, t), b = SpeculativeRun(*torch, t);
    ASSERT_EQ(a.size(), b.size());
    ASSERT_GT(a.size(), 80u);
    for (size_t p = 0; p < a.size(); ++p) {
      double worst = 0;
      for (size_t c = 0; c < a[p].size(); ++c) worst = std::max<double>(worst, std::abs(a[p][c] - b[p][c]));
      ASSERT_LT(worst, 1e-4) << policy << " position " << p;
      ASSERT_EQ(Argmax(a[p]), Argmax(b[p])) << policy << " position " << p;
    }
  }
}

// Selection at work: with 3 pages of 4 the logits differ from the full cache's from position 16
// (otherwise the test above would prove nothing), and with enough pages they equal them bit for
// bit (the same kernel arithmetic over the same rows).
TEST_F(QueryAwareEngineTest, SelectsPagesOnlyWhenThereAreMore) {
  const std::vector<int32_t> t = Tokens(kPositions, 6);
  auto full = ViewOf(*native_, "full:block=4")->NewSequence();
  auto many = ViewOf(*native_, "query_aware:pages=24,block=4")->NewSequence();
  auto few = ViewOf(*native_, kPolicy)->NewSequence();
  auto f = full->Forward(t), m = many->Forward(t), s = few->Forward(t);
  ASSERT_TRUE(f.ok() && m.ok() && s.ok());
  EXPECT_EQ(f->values, m->values);
  const int64_t cols = f->cols;
  // Positions 0-15 have at most 3 whole pages below them: identical there; position 16 has 4.
  EXPECT_TRUE(std::equal(f->values.begin(), f->values.begin() + 16 * cols, s->values.begin()));
  EXPECT_FALSE(std::equal(f->values.begin() + 16 * cols, f->values.begin() + 17 * cols, s->values.begin() + 16 * cols));
}

// A position's logits are a function of the tokens before it only: one prefill, one token at a
// time, speculative rounds with rollback, a rollback below the committed length, and a batched
// pass with other sequences all give the same floats.
TEST_F(QueryAwareEngineTest, LogitsDoNotDependOnChunkingRollbackOrBatching) {
  auto view = ViewOf(*native_, kPolicy);
  const std::vector<int32_t> t = Tokens(kPositions, 7);
  auto whole = view->NewSequence()->Forward(t);
  ASSERT_TRUE(whole.ok());
  const int64_t cols = whole->cols;
  auto row = [&](int64_t p) {
    return std::vector<float>(whole->values.begin() + p * cols, whole->values.begin() + (p + 1) * cols);
  };

  auto stepwise = view->NewSequence();
  for (int p = 0; p < kPositions; ++p) {
    auto logits = stepwise->Forward({t[p]});
    ASSERT_TRUE(logits.ok());
    ASSERT_EQ(logits->values, row(p)) << "position " << p;
    if (p % 3 == 0) ASSERT_TRUE(stepwise->Commit(p + 1).ok());
  }
  // Back below the committed length (query_aware keeps every token, so this is allowed), then
  // forward again over pages whose summaries were dropped.
  ASSERT_TRUE(stepwise->Truncate(41).ok());
  auto again = stepwise->Forward(absl::MakeConstSpan(t).subspan(41, 20));
  ASSERT_TRUE(again.ok());
  for (int r = 0; r < 20; ++r) {
    ASSERT_TRUE(std::equal(again->row(r), again->row(r) + cols, row(41 + r).begin())) << "position " << 41 + r;
  }

  auto rounds = view->NewSequence();
  const auto speculative = SpeculativeRun(*rounds, t);
  for (size_t p = 0; p < speculative.size(); ++p) ASSERT_EQ(speculative[p], row(p)) << "position " << p;

  // Three sequences in one batched pass at different lengths, chunk sizes and page offsets.
  std::vector<std::unique_ptr<Sequence>> seqs;
  for (int s = 0; s < 3; ++s) seqs.push_back(view->NewSequence());
  ASSERT_TRUE(seqs[1]->Forward(absl::MakeConstSpan(t).subspan(0, 37)).ok());
  ASSERT_TRUE(seqs[2]->Forward(absl::MakeConstSpan(t).subspan(0, 62)).ok());
  const std::vector<int32_t> a(t.begin(), t.begin() + 50), b(t.begin() + 37, t.begin() + 38),
      c(t.begin() + 62, t.begin() + 68);
  const std::vector<Sequence::BatchItem> items = {{seqs[0].get(), a}, {seqs[1].get(), b}, {seqs[2].get(), c}};
  auto out = Sequence::ForwardBatch(items);
  ASSERT_TRUE(out[0].ok() && out[1].ok() && out[2].ok());
  for (int r = 0; r < 50; ++r) ASSERT_TRUE(std::equal(out[0]->row(r), out[0]->row(r) + cols, row(r).begin()));
  EXPECT_TRUE(std::equal(out[1]->row(0), out[1]->row(0) + cols, row(37).begin()));
  for (int r = 0; r < 6; ++r) ASSERT_TRUE(std::equal(out[2]->row(r), out[2]->row(r) + cols, row(62 + r).begin()));
}

}  // namespace
}  // namespace specdec
