// Draft plan switches mid-stream, through the three services as real processes on loopback
// (docs/shrunken_self.md, "Re-planning while serving"): a draft forced to flip between two plans
// every two proposals (--debug_plan_switch_every) gives greedy output equal to plain decoding
// token for token, with fixed and adaptive K, and seeded sampling under the shared-noise coupling
// equal to plain sampling token for token; the switches show in the round records (several
// plans within one request) and in the draft's GetStats. A draft with the online search on
// (--plan_search on, a high duty cycle so that it evaluates within the test) is lossless too
// (greedy and shared-noise sampling) and reports its evaluations and busy fraction.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/generation/generator.h"
#include "common/model/checkpoint_writer.h"
#include "common/model/model.h"
#include "gtest/gtest.h"
#include "specdec/v1/draft.grpc.pb.h"
#include "specdec/v1/gateway.grpc.pb.h"
#include "tests/integration/gateway_generate.h"
#include "tests/integration/service_process.h"

namespace specdec {
namespace {

using ::specdec::testing::ServiceProcess;

const std::string kBin = SPECDEC_BINARY_DIR;
const std::string kDraftBin = kBin + "/services/draft/specdec-draft";
const std::string kVerifierBin = kBin + "/services/verifier/specdec-verifier";
const std::string kGatewayBin = kBin + "/services/gateway/specdec-gateway";
constexpr int kNewTokens = 64;
const std::vector<int32_t> kPrompt = {31, 415, 92, 65, 358, 979, 32, 38};

using ::specdec::testing::Generated;

// Greedy unless `temperature` > 0; sampled requests use the shared-noise coupling, under which
// speculative output is plain sampling's token for token whatever the draft proposes.
Generated Generate(const std::string& address, int k, bool adaptive, float temperature = 0,
                   uint64_t seed = 0) {
  const std::vector<int32_t>& prompt = kPrompt;
  v1::GenerateRequest request;
  if (temperature > 0) {
    request.mutable_sampling()->set_temperature(temperature);
    request.mutable_sampling()->set_seed(seed);
    request.mutable_sampling()->set_coupling(v1::SAMPLING_COUPLING_SHARED_NOISE);
  }
  for (int32_t id : prompt) request.add_prompt_ids(id);
  request.set_max_new_tokens(kNewTokens);
  request.mutable_speculation()->set_num_draft_tokens(k);
  request.mutable_speculation()->set_adaptive(adaptive);
  request.set_include_rounds(true);
  return ::specdec::testing::GenerateThroughGateway(address, request);
}

v1::GetStatsResponse DraftStats(const std::string& address) {
  auto stub = v1::Draft::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::GetStatsResponse stats;
  EXPECT_TRUE(stub->GetStats(&context, v1::GetStatsRequest(), &stats).ok());
  return stats;
}

class PlanSwitchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ConfigureComputeThreads(1);
    dir_ = new std::string(::testing::TempDir() + "/specdec_plan_switch_" + std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
    model_dir_ = new std::string(*dir_ + "/model");
    ModelConfig config = *PresetConfig("tiny");
    config.vocab_size = 1000;
    config.num_hidden_layers = 3;
    config.max_position_embeddings = 256;
    CheckpointOptions options;
    options.seed = 11;
    ASSERT_TRUE(WriteRandomCheckpoint(config, options, *model_dir_).ok());
    auto model = Model::Load(*model_dir_, LoadOptions{"cpu", "f32"});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = new std::shared_ptr<Model>(*model);
    auto verifier = ServiceProcess::Start(
        kVerifierBin, {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1"},
        *dir_ + "/verifier.log");
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    verifier_ = verifier->release();
  }
  static void TearDownTestSuite() {
    delete verifier_;
    delete model_;
    std::filesystem::remove_all(*dir_);
  }

  // A draft with `args` and a gateway in front of it and the shared verifier.
  struct Stack {
    std::unique_ptr<ServiceProcess> draft;
    std::unique_ptr<ServiceProcess> gateway;
  };
  static Stack StartStack(const std::string& name, std::vector<std::string> args) {
    Stack stack;
    args.insert(args.begin(), {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1"});
    auto draft = ServiceProcess::Start(kDraftBin, args, *dir_ + "/draft_" + name + ".log");
    EXPECT_TRUE(draft.ok()) << draft.status();
    if (!draft.ok()) return stack;
    stack.draft = *std::move(draft);
    auto gateway = ServiceProcess::Start(
        kGatewayBin,
        {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(),
         "--draft=" + stack.draft->address(), "--draft_deadline_ms=10000"},
        *dir_ + "/gateway_" + name + ".log");
    EXPECT_TRUE(gateway.ok()) << gateway.status();
    if (gateway.ok()) stack.gateway = *std::move(gateway);
    return stack;
  }

  // Plain decoding: greedy, or shared-noise sampling at `temperature` with `seed`.
  static std::vector<int32_t> Plain(float temperature = 0, uint64_t seed = 0) {
    GenerateOptions options;
    options.max_new_tokens = kNewTokens;
    options.eos_token_id = static_cast<int32_t>((*model_)->config().eos_token_id);
    if (temperature > 0) {
      options.sampling = SamplingParams{temperature, 0, 1.0f, seed};
      options.sampling.coupling = Coupling::kSharedNoise;
    }
    auto plain = GeneratePlain(*(*model_)->FullView(), kPrompt, options);
    EXPECT_TRUE(plain.ok()) << plain.status();
    return plain.ok() ? plain->tokens : std::vector<int32_t>{};
  }

  static std::string* dir_;
  static std::string* model_dir_;
  static std::shared_ptr<Model>* model_;
  static ServiceProcess* verifier_;
};
std::string* PlanSwitchTest::dir_ = nullptr;
std::string* PlanSwitchTest::model_dir_ = nullptr;
std::shared_ptr<Model>* PlanSwitchTest::model_ = nullptr;
ServiceProcess* PlanSwitchTest::verifier_ = nullptr;

TEST_F(PlanSwitchTest, ForcedSwitchesMidStreamKeepOutputExact) {
  ASSERT_NE(verifier_, nullptr);
  Stack stack = StartStack("forced", {"--debug_plan_switch_every=2", "--debug_switch_layers=0,2",
                                      "--debug_switch_vocab=500"});
  ASSERT_NE(stack.gateway, nullptr);
  const std::vector<int32_t> plain = Plain();
  ASSERT_FALSE(plain.empty());
  int64_t accepted = 0;
  for (int k : {1, 4, 8, 0}) {
    SCOPED_TRACE(k == 0 ? std::string("adaptive K") : absl::StrCat("K=", k));
    Generated out = Generate(stack.gateway->address(), k, k == 0);
    ASSERT_TRUE(out.status.ok()) << out.status.error_message();
    EXPECT_EQ(out.ids, plain);
    std::set<std::string> plans;
    std::set<int64_t> ids;
    for (const v1::RoundRecord& round : out.rounds) {
      accepted += round.num_accepted();
      if (round.num_proposed() == 0) continue;
      plans.insert(round.draft_plan());
      ids.insert(round.draft_plan_id());
    }
    // Both plans drafted within this one request.
    EXPECT_EQ(plans, (std::set<std::string>{"layers=all vocab=full", "layers=0,2 vocab=500"}));
    EXPECT_GE(ids.size(), 2u);
  }
  EXPECT_GT(accepted, 0) << "no proposal was ever accepted: the test proves little";
  // Seeded sampling (shared-noise coupling) across the same switches: plain sampling's tokens.
  const std::vector<int32_t> sampled = Plain(0.8f, 9090);
  ASSERT_FALSE(sampled.empty());
  for (int k : {1, 4, 8, 0}) {
    SCOPED_TRACE(k == 0 ? std::string("sampled, adaptive K") : absl::StrCat("sampled, K=", k));
    Generated out = Generate(stack.gateway->address(), k, k == 0, 0.8f, 9090);
    ASSERT_TRUE(out.status.ok()) << out.status.error_message();
    EXPECT_EQ(out.ids, sampled);
    std::set<std::string> plans;
    for (const v1::RoundRecord& round : out.rounds) {
      if (round.num_proposed() > 0) plans.insert(round.draft_plan());
    }
    EXPECT_EQ(plans.size(), 2u);
  }
  const v1::GetStatsResponse stats = DraftStats(stack.draft->address());
  EXPECT_GT(stats.plan_switches(), 4);
  EXPECT_EQ(stats.draft_plan_id(), stats.plan_switches());
  EXPECT_FALSE(stats.draft_plan().empty());
  EXPECT_EQ(stats.plan_search_evaluations(), 0);  // the search is off
}

TEST_F(PlanSwitchTest, OnlineSearchEvaluatesAndStaysLossless) {
  ASSERT_NE(verifier_, nullptr);
  // Duty 0.5 and no dwell: the search measures and evaluates within the test; margin 0 lets a
  // random model's noise switch plans, which must not change the output.
  Stack stack = StartStack("search", {"--plan_search=on", "--plan_search_duty=0.5",
                                      "--plan_search_dwell_s=0", "--plan_search_margin=0",
                                      "--plan_search_vocab_cuts=0,500", "--plan_search_tokens=64"});
  ASSERT_NE(stack.gateway, nullptr);
  const std::vector<int32_t> plain = Plain();
  const std::vector<int32_t> plain_sampled = Plain(0.8f, 7070);
  int64_t evaluations = 0;
  for (int i = 0; i < 40 && evaluations < 2; ++i) {
    Generated out = Generate(stack.gateway->address(), 4, false);
    ASSERT_TRUE(out.status.ok()) << out.status.error_message();
    EXPECT_EQ(out.ids, plain) << "request " << i;
    Generated sampled = Generate(stack.gateway->address(), 4, false, 0.8f, 7070);
    ASSERT_TRUE(sampled.status.ok()) << sampled.status.error_message();
    EXPECT_EQ(sampled.ids, plain_sampled) << "sampled request " << i;
    evaluations = DraftStats(stack.draft->address()).plan_search_evaluations();
    if (evaluations < 2) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const v1::GetStatsResponse stats = DraftStats(stack.draft->address());
  EXPECT_GE(stats.plan_search_evaluations(), 2) << stack.draft->Log();
  EXPECT_GT(stats.plan_search_busy_fraction(), 0);
  EXPECT_LE(stats.plan_search_busy_fraction(), 1);
  EXPECT_FALSE(stats.draft_plan().empty());
}

TEST_F(PlanSwitchTest, BadPlanSearchFlagsAreRefused) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--plan_search=maybe"}, {"--plan_search=on", "--plan_search_duty=0"},
        {"--plan_search=on", "--plan_search_vocab_cuts=0,x"}}) {
    std::vector<std::string> all = {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1"};
    all.insert(all.end(), args.begin(), args.end());
    auto draft = ServiceProcess::Start(kDraftBin, all, *dir_ + "/draft_bad.log",
                                       absl::Seconds(20));
    EXPECT_FALSE(draft.ok()) << args.back();
  }
}

}  // namespace
}  // namespace specdec
