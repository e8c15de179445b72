// Lossless speculation under every KV policy, through the three services as real processes on
// loopback: for each compressing policy (and int8 with each), the gateway's greedy output
// equals in-process plain decoding under the same policy token for token, with K of 1, 4 and 8
// and with adaptive K; shared-noise sampling equals plain sampling for K of 1, 4, 8 and adaptive;
// seeded (rejection) sampling with K of 1, 4, 8 and 6 equals the in-process speculative
// generator under the policy; every emitted token's log-probability (from the verifier's verifications)
// equals plain decoding's under the policy at that position; no verification crosses a
// compression boundary; and a session evicted mid-generation is re-prefilled (split at the
// boundaries) with the same output. docs/kv_cache.md, "Exactness".
#include <grpcpp/grpcpp.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/generation/generator.h"
#include "common/model/checkpoint_writer.h"
#include "common/model/model.h"
#include "gtest/gtest.h"
#include "specdec/v1/gateway.grpc.pb.h"
#include "specdec/v1/verifier.grpc.pb.h"
#include "tests/integration/gateway_generate.h"
#include "tests/integration/service_process.h"

namespace specdec {
namespace {

using ::specdec::testing::ServiceProcess;

const std::string kBin = SPECDEC_BINARY_DIR;
const std::string kDraftBin = kBin + "/services/draft/specdec-draft";
const std::string kVerifierBin = kBin + "/services/verifier/specdec-verifier";
const std::string kGatewayBin = kBin + "/services/gateway/specdec-gateway";

// As common/generation/kv_policy_generation_test.cc: budgets of 16 in blocks of 8, so 64 new
// tokens compress 7 times and a verification holds at most 8 positions.
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
};
constexpr int kNewTokens = 64;
constexpr int kK = 6;
const std::vector<int32_t> kPrompt = {31, 415, 92, 65, 358, 979, 32, 38};

using ::specdec::testing::Generated;
using ::specdec::testing::GenerateThroughGateway;

v1::GenerateRequest Request(int k, bool adaptive, float temperature = 0, uint64_t seed = 0,
                            v1::SamplingCoupling coupling = v1::SAMPLING_COUPLING_UNSPECIFIED) {
  v1::GenerateRequest request;
  for (int32_t id : kPrompt) request.add_prompt_ids(id);
  request.set_max_new_tokens(kNewTokens);
  request.mutable_speculation()->set_num_draft_tokens(k);
  request.mutable_speculation()->set_adaptive(adaptive);
  request.mutable_sampling()->set_temperature(temperature);
  request.mutable_sampling()->set_seed(seed);
  request.mutable_sampling()->set_coupling(coupling);
  request.set_include_rounds(true);
  return request;
}

class KvPolicyPipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ConfigureComputeThreads(1);
    dir_ = new std::string(::testing::TempDir() + "/specdec_kv_pipeline_" + std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
    model_dir_ = new std::string(*dir_ + "/model");
    ModelConfig config = *PresetConfig("tiny");
    config.vocab_size = 1000;
    config.max_position_embeddings = 256;
    CheckpointOptions options;
    options.seed = 7;
    ASSERT_TRUE(WriteRandomCheckpoint(config, options, *model_dir_).ok());
    auto model = Model::Load(*model_dir_, LoadOptions{"cpu", "f32"});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = new std::shared_ptr<Model>(*model);
    // The draft runs the whole model on the plain contiguous cache: it agrees with the verifier
    // often enough for rounds with several accepted tokens.
    auto draft = ServiceProcess::Start(
        kDraftBin, {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1"}, *dir_ + "/draft.log");
    ASSERT_TRUE(draft.ok()) << draft.status();
    draft_ = draft->release();
  }
  static void TearDownTestSuite() {
    delete draft_;
    delete model_;
    std::filesystem::remove_all(*dir_);
  }

  // In-process references under `policy`.
  static GenerateOptions Options(float temperature = 0, uint64_t seed = 0) {
    GenerateOptions options;
    options.max_new_tokens = kNewTokens;
    options.sampling = SamplingParams{temperature, 0, 1.0f, seed};
    options.eos_token_id = static_cast<int32_t>((*model_)->config().eos_token_id);
    return options;
  }

  static std::string* dir_;
  static std::string* model_dir_;
  static std::shared_ptr<Model>* model_;
  static ServiceProcess* draft_;
};
std::string* KvPolicyPipelineTest::dir_ = nullptr;
std::string* KvPolicyPipelineTest::model_dir_ = nullptr;
std::shared_ptr<Model>* KvPolicyPipelineTest::model_ = nullptr;
ServiceProcess* KvPolicyPipelineTest::draft_ = nullptr;

// Log-softmax of `row` at `token`.
double LogProb(const float* row, int64_t cols, int32_t token) {
  double max = row[0];
  for (int64_t c = 1; c < cols; ++c) max = std::max<double>(max, row[c]);
  double sum = 0;
  for (int64_t c = 0; c < cols; ++c) sum += std::exp(row[c] - max);
  return row[token] - max - std::log(sum);
}

TEST_F(KvPolicyPipelineTest, EveryPolicyIsLosslessThroughTheServices) {
  ASSERT_NE(draft_, nullptr);
  int long_rounds = 0;
  for (const char* policy : kPolicies) {
    SCOPED_TRACE(policy);
    const std::string name = std::to_string(&policy - &kPolicies[0]);
    auto verifier = ServiceProcess::Start(
        kVerifierBin,
        {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1", absl::StrCat("--kv_policy=", policy)},
        *dir_ + "/verifier_" + name + ".log");
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    auto gateway = ServiceProcess::Start(
        kGatewayBin,
        {"--model_dir=" + *model_dir_, "--verifier=" + (*verifier)->address(),
         "--draft=" + draft_->address(), "--draft_deadline_ms=10000"},
        *dir_ + "/gateway_" + name + ".log");
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    const KvCacheConfig config = *ParseKvCacheConfig(policy);
    const KvBoundaries bounds = config.Boundaries();
    auto target = (*model_)->View(LayerPlan{}, config);
    ASSERT_TRUE(target.ok()) << target.status();
    auto plain = GeneratePlain(**target, kPrompt, Options());
    ASSERT_TRUE(plain.ok()) << plain.status();

    // Greedy, K of 1, 4 and 8 and adaptive K (0 here): plain decoding's tokens.
    for (int k : {1, 4, 8, 0}) {
      const bool adaptive = k == 0;
      Generated out = GenerateThroughGateway((*gateway)->address(), Request(k, adaptive));
      ASSERT_TRUE(out.status.ok()) << out.status.error_message();
      EXPECT_EQ(out.ids, plain->tokens) << (adaptive ? "adaptive" : absl::StrCat("K=", k));
      int64_t length = static_cast<int64_t>(kPrompt.size());
      for (const v1::RoundRecord& round : out.rounds) {
        EXPECT_LE(round.num_proposed(), bounds.MaxDraftTokens(length - 1)) << "round " << round.round();
        long_rounds += round.num_accepted() >= 3;
        length += round.tokens_emitted();
      }
    }

    // Seeded sampling, K of 1, 4, 8 and kK: the in-process speculative generator under the
    // policy (same draft: the whole model on a contiguous cache).
    Generated out;
    for (int k : {1, 4, 8, kK}) {
      GenerateOptions sampled = Options(0.8f, 4242);
      sampled.num_draft_tokens = k;
      auto in_process = GenerateSpeculative(**target, *(*model_)->FullView(), kPrompt, sampled);
      ASSERT_TRUE(in_process.ok()) << in_process.status();
      out = GenerateThroughGateway((*gateway)->address(), Request(k, false, 0.8f, 4242));
      ASSERT_TRUE(out.status.ok()) << out.status.error_message();
      EXPECT_EQ(out.ids, in_process->tokens) << "sampled, K=" << k;
    }

    // Shared-noise sampling, K of 1, 4, 8 and adaptive: plain sampling's tokens under the policy.
    GenerateOptions shared = Options(0.8f, 6161);
    shared.sampling.coupling = Coupling::kSharedNoise;
    auto plain_sampled = GeneratePlain(**target, kPrompt, shared);
    ASSERT_TRUE(plain_sampled.ok()) << plain_sampled.status();
    for (int k : {1, 4, 8, 0}) {
      out = GenerateThroughGateway((*gateway)->address(),
                     Request(k, k == 0, 0.8f, 6161, v1::SAMPLING_COUPLING_SHARED_NOISE));
      ASSERT_TRUE(out.status.ok()) << out.status.error_message();
      EXPECT_EQ(out.ids, plain_sampled->tokens) << "shared noise, K=" << k;
    }

    // Seeded sampling, adaptive K (rounds depend on timing): every token's log-probability, as
    // the verifier computed it inside its verifications, is plain decoding's at that position.
    v1::GenerateRequest request = Request(0, true, 0.8f, 5151);
    request.mutable_logprobs()->set_top_n(0);
    out = GenerateThroughGateway((*gateway)->address(), request);
    ASSERT_TRUE(out.status.ok()) << out.status.error_message();
    ASSERT_EQ(out.logprobs.size(), out.ids.size());
    auto seq = (*target)->NewSequence();
    auto logits = ForwardCommitted(*seq, kPrompt, LogitsWanted::kLast);
    for (size_t i = 0; i < out.ids.size(); ++i) {
      ASSERT_TRUE(logits.ok()) << logits.status();
      EXPECT_NEAR(out.logprobs[i], LogProb(logits->row(0), logits->cols, out.ids[i]), 1e-4)
          << "sampled, adaptive K, token " << i;
      logits = ForwardCommitted(*seq, {out.ids[i]}, LogitsWanted::kLast);
    }

    // The pool is reported per policy, and the sessions gave their blocks back.
    auto stub = v1::Verifier::NewStub(
        grpc::CreateChannel((*verifier)->address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    v1::GetStatsResponse stats;
    ASSERT_TRUE(stub->GetStats(&context, v1::GetStatsRequest(), &stats).ok());
    EXPECT_GT(stats.kv_pool_blocks_total(), 0);
    EXPECT_GT(stats.kv_pool_blocks_peak(), 0);
    EXPECT_EQ(stats.kv_pool_blocks_used() + stats.kv_pool_blocks_free(), stats.kv_pool_blocks_total());
    EXPECT_EQ(stats.kv_pool_block_tokens(), 8);
  }
  EXPECT_GT(long_rounds, 0) << "no round accepted 3 or more drafts: long verifications untested";
}

// The verifier loses the session twice mid-generation (evicted); the gateway re-prefills the
// prompt and every generated token, which the verifier runs split at the policy's boundaries,
// so the rebuilt cache is the one the session had: the output is still plain decoding's.
TEST_F(KvPolicyPipelineTest, RePrefillUnderAnEvictingPolicyKeepsTheOutput) {
  ASSERT_NE(draft_, nullptr);
  const char* policy = "int8+h2o:budget=16,recent=4,block=8";
  auto verifier = ServiceProcess::Start(
      kVerifierBin,
      {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1", absl::StrCat("--kv_policy=", policy)},
      *dir_ + "/verifier_reprefill.log");
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  auto gateway = ServiceProcess::Start(
      kGatewayBin,
      {"--model_dir=" + *model_dir_, "--verifier=" + (*verifier)->address(),
       "--draft=" + draft_->address(), "--draft_deadline_ms=10000"},
      *dir_ + "/gateway_reprefill.log");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto target = (*model_)->View(LayerPlan{}, *ParseKvCacheConfig(policy));
  ASSERT_TRUE(target.ok());
  GenerateOptions options = Options();
  options.max_new_tokens = 96;
  auto plain = GeneratePlain(**target, kPrompt, options);
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto stub = v1::Verifier::NewStub(
      grpc::CreateChannel((*verifier)->address(), grpc::InsecureChannelCredentials()));
  auto evict = [&] {
    grpc::ClientContext context;
    v1::EvictSessionResponse response;
    stub->EvictSession(&context, v1::EvictSessionRequest(), &response);  // empty id: every session
  };
  v1::GenerateRequest request = Request(kK, false);
  request.set_max_new_tokens(96);
  // Evict once 30 and once 60 tokens are out: past several boundaries, so that the
  // re-prefills must split.
  int evictions = 0;
  Generated out = GenerateThroughGateway((*gateway)->address(), request, [&](size_t tokens) {
    if (evictions < 2 && tokens >= static_cast<size_t>(30 * (evictions + 1))) {
      ++evictions;
      evict();
    }
  });
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(evictions, 2);
  EXPECT_EQ(out.ids, plain->tokens);
  grpc::ClientContext context;
  v1::GetStatsResponse stats;
  ASSERT_TRUE(stub->GetStats(&context, v1::GetStatsRequest(), &stats).ok());
  EXPECT_GE(stats.sessions_evicted(), 2);
}

}  // namespace
}  // namespace specdec
