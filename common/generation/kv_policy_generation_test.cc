// Speculation is lossless under every KV policy: for each compressing policy (and int8 with
// each), speculative greedy output equals plain greedy output under the same policy token for
// token, for K in {1, 4, 8} and adaptive, over generations that compress several times; and
// sampled speculation sees, at every position, the distribution plain decoding sees there (the
// logits of the verifications equal a plain one-token-at-a-time replay, within batching's float
// noise), so the acceptance rule keeps the target's distribution. docs/kv_cache.md, "Exactness".
#include <cctype>
#include <cmath>
#include <filesystem>
#include <map>

#include "common/generation/generator.h"
#include "common/model/checkpoint_writer.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

// Budgets of 16 committed tokens in blocks of 8: compression boundaries at 24, 32, 40, ...
// A verification holds at most 8 positions (K <= 7), and 64 new tokens compress 7 times.
const char* const kPolicies[] = {
    "int8:block=8",
    "sink_window:sink=2,window=14,block=8",
    "int8+sink_window:sink=2,window=14,block=8",
    "h2o:budget=16,recent=4,block=8",
    "int8+h2o:budget=16,recent=4,block=8",
    "hierarchical:sink=2,recent=4,budget=16,pool=2,block=8",
    "int8+hierarchical:sink=2,recent=4,budget=16,pool=2,block=8",
    "query_aware:pages=2,block=8",
    "int8+query_aware:pages=2,block=8",
    // The default block of 16: verifications of up to 16 positions, so K = 8 runs uncut in most
    // rounds (boundaries at 32, 48, 64: 3 compressions).
    "int8+hierarchical:sink=2,recent=4,budget=16,pool=2",
};
constexpr int64_t kNewTokens = 64;  // 4x the budget
const std::vector<int32_t> kPrompt = {250, 14, 99, 3, 3, 3, 180, 42};

class KvPolicyGenerationTest : public ::testing::TestWithParam<const char*> {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = ::testing::TempDir() + "/specdec_kv_policy_generation_test_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir);
    ModelConfig config = *PresetConfig("tiny");
    config.vocab_size = 300;
    config.num_hidden_layers = 3;
    config.max_position_embeddings = 256;
    ASSERT_TRUE(WriteRandomCheckpoint(config, CheckpointOptions{11, "f32", 1, ""}, dir).ok());
    auto model = Model::Load(dir, LoadOptions{"cpu", "f32"});
    std::filesystem::remove_all(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = new std::shared_ptr<Model>(*model);
  }
  // A view of the whole model under `policy` (the target, and a draft mirroring it: a draft
  // that agrees with the target makes rounds with many accepted tokens, the long verifications
  // where grouping would show).
  static std::shared_ptr<const ModelView> View(const char* policy) {
    auto config = ParseKvCacheConfig(policy);
    EXPECT_TRUE(config.ok()) << config.status();
    auto view = (*model_)->View(LayerPlan{}, *config);
    EXPECT_TRUE(view.ok()) << view.status();
    return *view;
  }
  static std::shared_ptr<Model>* model_;
};
std::shared_ptr<Model>* KvPolicyGenerationTest::model_ = nullptr;

struct KRun {
  std::string name;
  int k = 0;
  bool adaptive = false;
};
const KRun kRuns[] = {{"K=1", 1, false}, {"K=4", 4, false}, {"K=8", 8, false}, {"adaptive", 0, true}};

TEST_P(KvPolicyGenerationTest, GreedySpeculativeEqualsPlainUnderThePolicy) {
  auto target = View(GetParam()), draft = View(GetParam());
  const KvBoundaries bounds = target->kv_cache_config()->Boundaries();
  GenerateOptions options;
  options.max_new_tokens = kNewTokens;
  auto plain = GeneratePlain(*target, kPrompt, options);
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_EQ(plain->tokens.size(), static_cast<size_t>(kNewTokens));
  for (const KRun& run : kRuns) {
    options.num_draft_tokens = run.k;
    options.adaptive = run.adaptive;
    options.max_draft_tokens = 8;
    auto spec = GenerateSpeculative(*target, *draft, kPrompt, options);
    ASSERT_TRUE(spec.ok()) << run.name << ": " << spec.status();
    EXPECT_EQ(spec->tokens, plain->tokens) << GetParam() << " " << run.name;
    int most_accepted = 0, most_verified = 0;
    int64_t length = static_cast<int64_t>(kPrompt.size());
    for (const RoundRecord& round : spec->rounds) {
      // No verification crossed a boundary: the pending token at length - 1, then K drafts.
      EXPECT_LE(round.num_draft_tokens, bounds.MaxDraftTokens(length - 1)) << run.name;
      most_accepted = std::max(most_accepted, round.num_accepted);
      most_verified = std::max(most_verified, round.num_draft_tokens);
      length += round.tokens_emitted;
    }
    if (run.k >= 4) EXPECT_GE(most_accepted, 3) << GetParam() << " " << run.name << ": no long rounds";
    // A K that fits the boundary period is verified whole in some rounds.
    if (run.k > 0 && run.k < bounds.period) EXPECT_EQ(most_verified, run.k) << GetParam() << " " << run.name;
  }
}

// Shared-noise sampling (Coupling::kSharedNoise) is plain sampling token for token under every
// policy and K, with a draft that disagrees often (two of the three layers), so rounds both
// accept and reject.
TEST_P(KvPolicyGenerationTest, SharedNoiseSamplingEqualsPlainSamplingUnderThePolicy) {
  auto target = View(GetParam());
  LayerPlan skip;
  skip.layers = {0, 2};
  auto draft = (*model_)->View(skip);
  ASSERT_TRUE(draft.ok()) << draft.status();
  GenerateOptions options;
  options.max_new_tokens = kNewTokens;
  options.sampling = SamplingParams{0.8f, 0, 0.95f, 4242};
  options.sampling.coupling = Coupling::kSharedNoise;
  options.max_draft_tokens = 8;
  auto plain = GeneratePlain(*target, kPrompt, options);
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_EQ(plain->tokens.size(), static_cast<size_t>(kNewTokens));
  int proposed = 0, accepted = 0;
  for (const KRun& run : kRuns) {
    options.num_draft_tokens = run.k;
    options.adaptive = run.adaptive;
    auto spec = GenerateSpeculative(*target, **draft, kPrompt, options);
    ASSERT_TRUE(spec.ok()) << run.name << ": " << spec.status();
    EXPECT_EQ(spec->tokens, plain->tokens) << GetParam() << " " << run.name;
    for (const RoundRecord& round : spec->rounds) {
      proposed += round.num_draft_tokens;
      accepted += round.num_accepted;
    }
  }
  EXPECT_GT(accepted, 0) << "no draft token accepted: the equality is untested";
  EXPECT_LT(accepted, proposed) << "no draft token rejected: the fallback path is untested";
}

// Logits rows by the position of the token they decided.
using Rows = std::map<int64_t, std::vector<float>>;

void Record(GenerateOptions* options, Rows* rows) {
  options->on_target_row = [rows](int64_t position, const Logits& logits, int64_t row) {
    (*rows)[position].assign(logits.row(row), logits.row(row) + logits.cols);
  };
}

TEST_P(KvPolicyGenerationTest, SampledSpeculationSeesPlainDecodingsDistributions) {
  auto target = View(GetParam()), draft = View(GetParam());
  GenerateOptions options;
  options.max_new_tokens = kNewTokens;
  options.sampling.temperature = 1.5f;
  options.sampling.seed = 77;
  options.max_draft_tokens = 8;
  for (const KRun& run : kRuns) {
    options.num_draft_tokens = run.k;
    options.adaptive = run.adaptive;
    Rows rows;
    Record(&options, &rows);
    auto spec = GenerateSpeculative(*target, *draft, kPrompt, options);
    ASSERT_TRUE(spec.ok()) << run.name << ": " << spec.status();
    ASSERT_EQ(spec->tokens.size(), static_cast<size_t>(kNewTokens));
    // Plain decoding of the same tokens, one at a time, committed as decided.
    auto seq = target->NewSequence();
    std::vector<int32_t> sequence = kPrompt;
    sequence.insert(sequence.end(), spec->tokens.begin(), spec->tokens.end());
    auto logits = ForwardCommitted(*seq, kPrompt, LogitsWanted::kLast);
    ASSERT_TRUE(logits.ok()) << logits.status();
    ASSERT_EQ(rows.size(), static_cast<size_t>(kNewTokens));
    for (size_t p = kPrompt.size(); p < sequence.size(); ++p) {
      const std::vector<float>& seen = rows[static_cast<int64_t>(p)];
      ASSERT_EQ(seen.size(), static_cast<size_t>(logits->cols)) << "position " << p;
      double worst = 0;
      for (int64_t c = 0; c < logits->cols; ++c) {
        worst = std::max<double>(worst, std::abs(seen[c] - logits->row(0)[c]));
      }
      ASSERT_LT(worst, 1e-4) << GetParam() << " " << run.name << " position " << p;
      if (p + 1 < sequence.size()) {
        logits = ForwardCommitted(*seq, {sequence[p]}, LogitsWanted::kLast);
        ASSERT_TRUE(logits.ok()) << logits.status();
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, KvPolicyGenerationTest, ::testing::ValuesIn(kPolicies),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name;
                           for (const char* c = info.param; *c && *c != ':'; ++c) {
                             name += std::isalnum(static_cast<unsigned char>(*c)) ? *c : '_';
                           }
                           const std::string text = info.param;
                           if (text.find("block=") == std::string::npos) name += "_block16";
                           return name;
                         });

}  // namespace
}  // namespace specdec
