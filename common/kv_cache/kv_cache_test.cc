// The KV-cache policies: the paged `full` cache is the contiguous cache bit for bit, int8 stays
// within a stated tolerance, rollback is exact under every policy, sink_window runs past the
// model's positions in constant memory, and the shared pool refuses and recovers cleanly.
#include <cmath>
#include <filesystem>

#include "common/kv_cache/kv_block_pool.h"
#include "common/kv_cache/kv_cache_config.h"
#include "common/model/checkpoint_writer.h"
#include "common/model/model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

using ::testing::HasSubstr;

std::string WriteModel(const std::string& name, int64_t max_positions) {
  std::string dir = ::testing::TempDir() + "/specdec_kv_cache_test_" + name + "_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  ModelConfig config = *PresetConfig("tiny");
  config.vocab_size = 300;
  config.max_position_embeddings = max_positions;
  EXPECT_TRUE(WriteRandomCheckpoint(config, CheckpointOptions{11, "f32", 1, ""}, dir).ok());
  return dir;
}

class KvCacheTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto model = Model::Load(WriteModel("128", 128), LoadOptions{"cpu", "f32"});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = new std::shared_ptr<Model>(*model);
  }
  static std::shared_ptr<const ModelView> ViewOf(const std::string& policy, int64_t pool_blocks = 0) {
    auto config = ParseKvCacheConfig(policy);
    EXPECT_TRUE(config.ok()) << config.status();
    config->pool_blocks = pool_blocks;
    auto view = (*model_)->View(LayerPlan{}, *config);
    EXPECT_TRUE(view.ok()) << view.status();
    return *view;
  }
  static std::shared_ptr<Model>* model_;
};
std::shared_ptr<Model>* KvCacheTest::model_ = nullptr;

std::vector<int32_t> Tokens(int n, int seed) {
  std::vector<int32_t> t;
  uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
  for (int i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    t.push_back(static_cast<int32_t>(x % 300));
  }
  return t;
}

double MaxDiff(const Logits& a, const Logits& b) {
  double worst = 0;
  for (size_t i = 0; i < a.values.size(); ++i) worst = std::max<double>(worst, std::abs(a.values[i] - b.values[i]));
  return worst;
}

TEST(KvCacheConfigTest, ParsesEveryPolicyAndPrintsItBack) {
  for (const char* text : {"full", "int8", "sink_window:sink=4,window=1020", "h2o:budget=256,recent=64",
                           "int8+h2o:budget=256,recent=64", "hierarchical:sink=4,recent=64,budget=256,pool=4",
                           "query_aware:pages=8", "int8+sink_window:sink=2,window=30",
                           "int8:block=4", "h2o:budget=16,recent=4,block=8"}) {
    auto config = ParseKvCacheConfig(text);
    ASSERT_TRUE(config.ok()) << text << ": " << config.status();
    EXPECT_EQ(config->ToString(), text);
  }
  EXPECT_EQ(ParseKvCacheConfig("h2o:budget=100")->recent, 64);
  EXPECT_THAT(std::string(ParseKvCacheConfig("lru").status().message()), HasSubstr("unknown KV cache policy"));
  EXPECT_THAT(std::string(ParseKvCacheConfig("h2o:budget=x").status().message()), HasSubstr("integer"));
  EXPECT_THAT(std::string(ParseKvCacheConfig("h2o:size=3").status().message()), HasSubstr("budget"));
  EXPECT_FALSE(ParseKvCacheConfig("h2o:budget=10,recent=10").ok());
}

// Boundaries are a function of the position alone: limit + block, then every block.
TEST(KvCacheConfigTest, BoundariesAndForwardLimits) {
  const KvBoundaries none = ParseKvCacheConfig("int8+query_aware:pages=2")->Boundaries();
  EXPECT_FALSE(none.any());
  EXPECT_GT(none.ForwardLimit(12345), int64_t{1} << 40);
  EXPECT_GT(none.MaxDraftTokens(7), 1000);
  const KvBoundaries b = ParseKvCacheConfig("sink_window:sink=2,window=14,block=8")->Boundaries();
  EXPECT_EQ(b.first, 24);
  EXPECT_EQ(b.period, 8);
  EXPECT_EQ(b.Next(0), 24);
  EXPECT_EQ(b.Next(23), 24);
  EXPECT_EQ(b.Next(24), 32);
  EXPECT_EQ(b.Next(31), 32);
  EXPECT_EQ(b.ForwardLimit(20), 4);
  EXPECT_EQ(b.ForwardLimit(24), 8);
  EXPECT_EQ(b.ForwardLimit(31), 1);
  EXPECT_EQ(b.MaxDraftTokens(31), 0);  // the pending token alone reaches the boundary
  EXPECT_EQ(b.MaxDraftTokens(24), 7);
  EXPECT_EQ(ParseKvCacheConfig("h2o:budget=16,recent=4")->Boundaries().first, 32);
  // The canonical string parses back to the same boundaries (the gateway may log or parse it).
  EXPECT_EQ(ParseKvCacheConfig(ParseKvCacheConfig("int8+h2o:budget=16,recent=4,block=4")->ToString())
                ->Boundaries().first,
            20);
}

TEST(KvBlockPoolTest, AllocatesAllOrNothingAndReuses) {
  KvBlockPool pool(4, 16, 100);
  std::vector<int32_t> a, b;
  ASSERT_TRUE(pool.Allocate(3, &a).ok());
  EXPECT_EQ(pool.Allocate(2, &b).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(b.empty());
  pool.Release(a);
  ASSERT_TRUE(pool.Allocate(4, &b).ok());
  EXPECT_EQ(pool.stats().free_blocks, 0);
  EXPECT_EQ(pool.stats().peak_used_blocks, 4);
}

TEST_F(KvCacheTest, PagedFullIsTheContiguousCacheBitForBit) {
  const std::vector<int32_t> t = Tokens(70, 1);
  auto plain = (*model_)->FullView()->NewSequence();
  auto paged = ViewOf("full")->NewSequence();
  auto span = absl::MakeConstSpan(t);
  // A prefill that spans blocks, single steps, a rejected round and its rollback.
  auto a = plain->Forward(span.subspan(0, 37));
  auto b = paged->Forward(span.subspan(0, 37));
  ASSERT_TRUE(a.ok() && b.ok()) << b.status();
  EXPECT_EQ(a->values, b->values);
  for (int i = 37; i < 70; ++i) {
    if (i % 5 == 0) {
      ASSERT_TRUE(plain->Forward({t[i], 1, 2, 3}).ok());
      ASSERT_TRUE(paged->Forward({t[i], 1, 2, 3}).ok());
      ASSERT_TRUE(plain->Truncate(i).ok());
      ASSERT_TRUE(paged->Truncate(i).ok());
    }
    a = plain->Forward({t[i]});
    b = paged->Forward({t[i]});
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(a->values, b->values) << "position " << i;
    ASSERT_TRUE(paged->Commit(i).ok());
  }
  EXPECT_EQ(paged->cached_tokens(), 70);
  EXPECT_EQ(paged->cache_bytes(), 5 * ViewOf("full")->kv_pool_stats().bytes_per_block);
}

TEST_F(KvCacheTest, Int8StaysWithinToleranceOfFull) {
  const std::vector<int32_t> t = Tokens(100, 2);
  auto full = ViewOf("full")->NewSequence();
  auto int8 = ViewOf("int8")->NewSequence();
  ASSERT_TRUE(full->Forward(absl::MakeConstSpan(t).subspan(0, 60)).ok());
  ASSERT_TRUE(int8->Forward(absl::MakeConstSpan(t).subspan(0, 60)).ok());
  double worst = 0, scale = 0;
  for (int i = 60; i < 100; ++i) {
    auto a = full->Forward({t[i]});
    auto b = int8->Forward({t[i]});
    ASSERT_TRUE(a.ok() && b.ok());
    worst = std::max(worst, MaxDiff(*a, *b));
    for (float v : a->values) scale = std::max<double>(scale, std::abs(v));
  }
  // Per-token, per-head absmax int8 has a relative error of at most 1/254 per element; on this
  // random model that moves logits (magnitude ~`scale`) by well under 1e-2 absolute.
  EXPECT_LT(worst, 1e-2) << "logit magnitude " << scale;
  EXPECT_GT(worst, 0.0);
  EXPECT_LT(int8->cache_bytes() * 3, full->cache_bytes());
}

class KvPolicyTest : public KvCacheTest, public ::testing::WithParamInterface<const char*> {};

// A verifier round: Forward([pending, drafts...]), keep `accepted` drafts, commit. Sequence `a`
// drafts junk; `b` drafts different junk; `c` never drafts. Later logits must agree: a and b bit
// for bit (the rejected tail leaves no trace), c within 1e-4 (libtorch computes a row in a batch
// of 4 and alone with different kernels, which changes the last bits).
TEST_P(KvPolicyTest, RollbackAfterARejectedRoundIsExact) {
  auto view = ViewOf(GetParam());
  const KvBoundaries bounds = view->kv_cache_config()->Boundaries();
  const std::vector<int32_t> t = Tokens(200, 3);
  auto a = view->NewSequence(), b = view->NewSequence(), c = view->NewSequence();
  auto span = absl::MakeConstSpan(t);
  for (auto* s : {a.get(), b.get(), c.get()}) {
    ASSERT_TRUE(s->Forward(span.subspan(0, 20)).ok());
    ASSERT_TRUE(s->Commit(20).ok());
  }
  int64_t length = 20;
  for (int round = 0; length < 110; ++round) {
    const int32_t pending = t[length];
    // As a verifier does on each message: every position before the pending token is committed.
    for (auto* s : {a.get(), b.get(), c.get()}) ASSERT_TRUE(s->Commit(length).ok());
    // As many drafts as fit before the next compression boundary (at most 3).
    const size_t drafts = static_cast<size_t>(std::min<int64_t>(3, bounds.MaxDraftTokens(length)));
    std::vector<int32_t> ia = {pending, 7, 8, 9}, ib = {pending, 200, 201, 202};
    ia.resize(1 + drafts), ib.resize(1 + drafts);
    auto ra = a->Forward(ia);
    auto rb = b->Forward(ib);
    ASSERT_TRUE(ra.ok() && rb.ok()) << ra.status();
    ASSERT_TRUE(a->Truncate(length + 1).ok());
    ASSERT_TRUE(b->Truncate(length + 1).ok());
    ASSERT_TRUE(c->Forward({pending}).ok());
    ++length;
    for (auto* s : {a.get(), b.get(), c.get()}) ASSERT_TRUE(s->Commit(length).ok());
    // Up to two real tokens in one forward (an accepted draft), not yet committed.
    const int64_t n = std::min<int64_t>(2, bounds.ForwardLimit(length));
    auto la = a->Forward(span.subspan(length, n));
    auto lb = b->Forward(span.subspan(length, n));
    auto lc = c->Forward(span.subspan(length, n));
    ASSERT_TRUE(la.ok() && lb.ok() && lc.ok()) << la.status();
    ASSERT_EQ(la->values, lb->values) << GetParam() << " round " << round;
    ASSERT_LT(MaxDiff(*la, *lc), 1e-4) << GetParam() << " round " << round;
    length += n;
    for (auto* s : {a.get(), b.get(), c.get()}) ASSERT_TRUE(s->Commit(length - 1).ok());
  }
  EXPECT_EQ(a->cached_tokens(), b->cached_tokens());
  const KvCacheConfig& config = *view->kv_cache_config();
  if (config.Evicts()) {
    EXPECT_LT(a->cached_tokens(), a->length());
    EXPECT_EQ(a->Truncate(5).code(), absl::StatusCode::kFailedPrecondition);
  } else {
    EXPECT_EQ(a->cached_tokens(), a->length());
    EXPECT_TRUE(a->Truncate(5).ok());
  }
}

// The cache a position sees does not depend on how positions were grouped into forwards and
// commits: one token at a time, committed at once (plain decoding), against forwards of
// irregular sizes committed late (speculative rounds, prefill chunks). Every position's logits
// agree within the float noise of batching (1e-4; before int8 stored first and eviction ran at
// fixed boundaries they differed by 1e-2 and more), and the caches hold the same slots.
TEST_P(KvPolicyTest, GroupingOfForwardsAndCommitsDoesNotChangeTheCache) {
  auto view = ViewOf(GetParam());
  const KvBoundaries bounds = view->kv_cache_config()->Boundaries();
  const std::vector<int32_t> t = Tokens(110, 9);
  auto one = view->NewSequence(), grouped = view->NewSequence();
  std::vector<std::vector<float>> rows_one;
  for (int32_t token : t) {
    ASSERT_TRUE(one->Commit(one->length()).ok());
    auto logits = one->Forward({token});
    ASSERT_TRUE(logits.ok()) << logits.status();
    rows_one.emplace_back(logits->values);
  }
  const int sizes[] = {7, 1, 3, 12, 2, 5, 9, 4};
  size_t i = 0;
  for (int step = 0; i < t.size(); ++step) {
    // Commit lags one token behind (the pending token of a round), unless that leaves no room
    // before the next boundary; then run what fits.
    ASSERT_TRUE(grouped->Commit(std::max<int64_t>(grouped->committed_length(), grouped->length() - 1)).ok());
    if (bounds.Next(grouped->committed_length()) <= grouped->length()) {
      ASSERT_TRUE(grouped->Commit(grouped->length()).ok());
    }
    const int64_t room = bounds.Next(grouped->committed_length()) - grouped->length();
    const int64_t n = std::min<int64_t>({sizes[step % 8], room, static_cast<int64_t>(t.size() - i)});
    ASSERT_GE(n, 1);
    auto logits = grouped->Forward(absl::MakeConstSpan(t).subspan(i, n));
    ASSERT_TRUE(logits.ok()) << GetParam() << " at " << i << ": " << logits.status();
    for (int64_t r = 0; r < n; ++r) {
      double worst = 0;
      for (int64_t col = 0; col < logits->cols; ++col) {
        worst = std::max<double>(worst, std::abs(logits->row(r)[col] - rows_one[i + r][col]));
      }
      ASSERT_LT(worst, 1e-4) << GetParam() << " position " << i + r;
    }
    i += n;
  }
  ASSERT_TRUE(grouped->Commit(grouped->length()).ok());
  EXPECT_EQ(grouped->cached_tokens(), one->cached_tokens());
}

// A forward that would hold a position at or past the next compression boundary before the
// sequence is committed up to it is refused, and the sequence is unchanged.
TEST_F(KvCacheTest, AForwardCrossingABoundaryIsRefused) {
  auto view = ViewOf("h2o:budget=16,recent=4,block=8");  // boundaries 24, 32, ...
  auto seq = view->NewSequence();
  const std::vector<int32_t> t = Tokens(40, 2);
  auto crossing = seq->Forward(t);
  ASSERT_FALSE(crossing.ok());
  EXPECT_EQ(crossing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(crossing.status().message()), HasSubstr("boundary at 24"));
  EXPECT_EQ(seq->length(), 0);
  ASSERT_TRUE(seq->Forward(absl::MakeConstSpan(t).subspan(0, 24)).ok());
  EXPECT_FALSE(seq->Forward({1}).ok());  // position 24 needs the commit at 24 first
  ASSERT_TRUE(seq->Commit(24).ok());
  EXPECT_EQ(seq->cached_tokens(), 16);  // compressed at the boundary
  auto logits = ForwardCommitted(*seq, absl::MakeConstSpan(t).subspan(24, 16), LogitsWanted::kAll);
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_EQ(logits->rows, 16);  // run as 8 + 8, committed between
  EXPECT_EQ(seq->committed_length(), 40);
  EXPECT_EQ(seq->cached_tokens(), 16);  // 32 and 40 are boundaries too
}

INSTANTIATE_TEST_SUITE_P(Policies, KvPolicyTest,
                         ::testing::Values("full", "int8", "sink_window:sink=2,window=30",
                                           "int8+sink_window:sink=2,window=30", "h2o:budget=24,recent=8",
                                           "int8+h2o:budget=24,recent=8",
                                           "hierarchical:sink=2,recent=6,budget=24,pool=2",
                                           "int8+hierarchical:sink=2,recent=6,budget=24,pool=2",
                                           "query_aware:pages=2", "int8+query_aware:pages=2"));

TEST(KvSinkWindowTest, GeneratesFarPastMaxPositionsInConstantMemory) {
  auto model = Model::Load(WriteModel("64", 64), LoadOptions{"cpu", "f32"});
  ASSERT_TRUE(model.ok());
  auto config = ParseKvCacheConfig("sink_window:sink=4,window=28");
  auto view = (*model)->View(LayerPlan{}, *config);
  ASSERT_TRUE(view.ok()) << view.status();
  auto seq = (*view)->NewSequence();
  int32_t token = 1;
  int64_t max_bytes_first_1000 = 0, max_bytes = 0;
  constexpr int kTokens = 10000;
  for (int i = 0; i < kTokens; ++i) {
    auto logits = seq->Forward({token}, LogitsWanted::kLast);
    ASSERT_TRUE(logits.ok()) << "token " << i << ": " << logits.status();
    ASSERT_TRUE(seq->Commit(seq->length()).ok());
    const float* row = logits->row(0);
    token = static_cast<int32_t>(std::max_element(row, row + logits->cols) - row);
    max_bytes = std::max(max_bytes, seq->cache_bytes());
    if (i < 1000) max_bytes_first_1000 = max_bytes;
  }
  EXPECT_EQ(seq->length(), kTokens);
  // Sinks + window + at most one block of committed tokens until the next boundary (the token
  // being run included): 3 blocks of 16.
  EXPECT_LE(seq->cached_tokens(), 4 + 28 + 16);
  EXPECT_EQ(max_bytes, max_bytes_first_1000);  // memory stopped growing
  EXPECT_EQ((*view)->kv_pool_stats().peak_used_blocks, 3);
  // The plain cache stops at the model's positions.
  auto plain = (*model)->FullView()->NewSequence();
  EXPECT_FALSE(plain->Forward(std::vector<int32_t>(65, 1)).ok());
  // Without commits nothing can be evicted: the cache runs out of positions, with a hint.
  auto uncommitted = (*view)->NewSequence();
  auto full = uncommitted->Forward(std::vector<int32_t>(65, 1));
  ASSERT_FALSE(full.ok());
  EXPECT_THAT(std::string(full.status().message()), HasSubstr("commit"));
}

TEST_F(KvCacheTest, PoolExhaustionIsResourceExhaustedAndReleaseReturnsBlocks) {
  auto view = ViewOf("full", 8);  // 8 blocks of 16 tokens
  auto first = view->NewSequence();
  ASSERT_TRUE(first->Forward(Tokens(100, 4)).ok());  // 7 blocks
  auto second = view->NewSequence();
  auto refused = second->Forward(Tokens(40, 5));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(second->length(), 0);
  EXPECT_EQ(view->kv_pool_stats().used_blocks, 7);
  // The running sequence is untouched and still decodes into its last block.
  ASSERT_TRUE(first->Forward({5, 6, 7}).ok());
  ASSERT_TRUE(first->Truncate(90).ok());  // back to 6 blocks
  EXPECT_EQ(view->kv_pool_stats().used_blocks, 6);
  first.reset();
  EXPECT_EQ(view->kv_pool_stats().used_blocks, 0);
  EXPECT_TRUE(second->Forward(Tokens(40, 5)).ok());
}

TEST_F(KvCacheTest, ManySessionsShareThePool) {
  auto view = ViewOf("int8+sink_window:sink=2,window=14", 64);
  std::vector<std::unique_ptr<Sequence>> sessions;
  int refused = 0;
  for (int i = 0; i < 40; ++i) {
    auto s = view->NewSequence();
    auto r = s->Forward(Tokens(20, i));  // 2 blocks each
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
      ++refused;
      continue;
    }
    ASSERT_TRUE(s->Commit(20).ok());
    sessions.push_back(std::move(s));
  }
  EXPECT_EQ(sessions.size(), 32u);
  EXPECT_EQ(refused, 8);
  EXPECT_EQ(view->kv_pool_stats().sequences, 40 - 8 + 0);
  // Every live session keeps decoding past its window without taking more blocks.
  for (int step = 0; step < 20; ++step) {
    for (auto& s : sessions) {
      if (s->cached_tokens() % 16 == 0) continue;  // a block boundary would need a 3rd block
      ASSERT_TRUE(s->Forward({3}).ok());
      ASSERT_TRUE(s->Commit(s->length()).ok());
    }
  }
  sessions.clear();
  EXPECT_EQ(view->kv_pool_stats().used_blocks, 0);
  EXPECT_EQ(view->kv_pool_stats().sequences, 0);
}

TEST_F(KvCacheTest, MaskedHeadViewsGetAPoolToo) {
  LayerPlan plan;
  plan.masked_heads[0] = {1};
  auto paged = (*model_)->View(plan, *ParseKvCacheConfig("full"));
  ASSERT_TRUE(paged.ok());
  auto a = (*model_->get()->View(plan))->NewSequence()->Forward(Tokens(30, 6));
  auto b = (*paged)->NewSequence()->Forward(Tokens(30, 6));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->values, b->values);
}

}  // namespace
}  // namespace specdec
