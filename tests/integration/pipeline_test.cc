// End-to-end tests of the three services as real processes on loopback ports: greedy output
// through the gateway equals in-process plain decoding token for token (any K, adaptive K, no
// draft, a killed draft, a late draft, evicted sessions), sampling is reproducible and equals
// the in-process speculative generator, and every error code of the API.
#include <grpcpp/grpcpp.h>
#include <sched.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/generation/generator.h"
#include "common/model/checkpoint_writer.h"
#include "common/model/layer_plan.h"
#include "common/model/model.h"
#include "common/tokenizer/incremental_decoder.h"
#include "common/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "specdec/v1/draft.grpc.pb.h"
#include "specdec/v1/gateway.grpc.pb.h"
#include "specdec/v1/verifier.grpc.pb.h"
#include "tests/integration/service_process.h"

namespace specdec {
namespace {

using ::specdec::testing::ServiceProcess;

const std::string kBin = SPECDEC_BINARY_DIR;
const std::string kDraftBin = kBin + "/services/draft/specdec-draft";
const std::string kVerifierBin = kBin + "/services/verifier/specdec-verifier";
const std::string kGatewayBin = kBin + "/services/gateway/specdec-gateway";
constexpr char kDraftLayers[] = "0";  // the tiny model has 2 layers: the draft runs one

struct GenerateResult {
  grpc::Status status;
  std::vector<int32_t> ids;
  std::string text;
  std::vector<v1::RoundRecord> rounds;
  v1::GenerateResponse last;
  int messages = 0;
};

// Runs one Generate; `on_message(i)` runs after message i (0-based) has been read.
GenerateResult Generate(const std::string& address, const v1::GenerateRequest& request,
                        const std::function<void(int, grpc::ClientContext*)>& on_message = nullptr,
                        int timeout_ms = 0) {
  auto stub =
      v1::Gateway::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  if (timeout_ms > 0) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  }
  GenerateResult result;
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    result.ids.insert(result.ids.end(), response.token_ids().begin(), response.token_ids().end());
    result.text += response.text();
    result.rounds.insert(result.rounds.end(), response.rounds().begin(), response.rounds().end());
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) result.last = response;
    if (on_message) on_message(result.messages, &context);
    ++result.messages;
  }
  result.status = reader->Finish();
  return result;
}

v1::GetStatsResponse DraftStats(const std::string& address) {
  auto stub = v1::Draft::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::GetStatsResponse stats;
  EXPECT_TRUE(stub->GetStats(&context, v1::GetStatsRequest(), &stats).ok());
  return stats;
}

v1::GetStatsResponse VerifierStats(const std::string& address) {
  auto stub =
      v1::Verifier::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::GetStatsResponse stats;
  EXPECT_TRUE(stub->GetStats(&context, v1::GetStatsRequest(), &stats).ok());
  return stats;
}

// Polls until both services hold no session (sessions are released asynchronously after a
// cancellation reaches them).
bool WaitNoSessions(const std::string& draft, const std::string& verifier) {
  for (int i = 0; i < 200; ++i) {
    if (DraftStats(draft).active_sessions() == 0 &&
        VerifierStats(verifier).active_sessions() == 0) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Polls until the gateway holds no Generate stream: a cancelled client sees CANCELLED at once,
// while the gateway frees the stream's slot only when its handler has noticed and returned.
bool WaitGatewayIdle(const std::string& gateway) {
  auto stub =
      v1::Gateway::NewStub(grpc::CreateChannel(gateway, grpc::InsecureChannelCredentials()));
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext context;
    v1::GetInfoResponse info;
    if (stub->GetInfo(&context, v1::GetInfoRequest(), &info).ok() && info.active_sessions() == 0) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

v1::GenerateRequest GreedyRequest(const std::vector<int32_t>& prompt, int max_new_tokens, int k,
                                  bool adaptive = false) {
  v1::GenerateRequest request;
  for (int32_t id : prompt) request.add_prompt_ids(id);
  request.set_max_new_tokens(max_new_tokens);
  request.mutable_speculation()->set_num_draft_tokens(k);
  request.mutable_speculation()->set_adaptive(adaptive);
  request.set_include_rounds(true);
  return request;
}

class PipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ConfigureComputeThreads(1);
    dir_ = new std::string(::testing::TempDir() + "/specdec_pipeline_" + std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
    model_dir_ = new std::string(*dir_ + "/model");
    auto config = PresetConfig("tiny");
    ASSERT_TRUE(config.ok());
    CheckpointOptions options;
    options.seed = 7;
    options.tokenizer_path = SPECDEC_TOKENIZER_JSON;
    ASSERT_TRUE(WriteRandomCheckpoint(*config, options, *model_dir_).ok());
    auto model = Model::Load(*model_dir_, LoadOptions{"cpu", "f32"});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = new std::shared_ptr<Model>(*model);
    auto tokenizer = Tokenizer::FromFile(*model_dir_ + "/tokenizer.json");
    ASSERT_TRUE(tokenizer.ok());
    tokenizer_ = tokenizer->release();

    verifier_ = StartOrDie(
        kVerifierBin, {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1"}, "verifier");
    draft_ = StartOrDie(kDraftBin,
                        {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1",
                         absl::StrCat("--draft_layers=", kDraftLayers)},
                        "draft");
    gateway_ = StartOrDie(kGatewayBin,
                          {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(),
                           "--draft=" + draft_->address(), "--draft_deadline_ms=10000"},
                          "gateway");
    plain_gateway_ = StartOrDie(
        kGatewayBin, {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address()},
        "gateway_nodraft");
  }

  static void TearDownTestSuite() {
    delete plain_gateway_;
    delete gateway_;
    delete draft_;
    delete verifier_;
    delete tokenizer_;
    delete model_;
    std::filesystem::remove_all(*dir_);
  }

  static ServiceProcess* StartOrDie(const std::string& binary, std::vector<std::string> args,
                                    const std::string& name) {
    auto process = ServiceProcess::Start(binary, args, *dir_ + "/" + name + ".log");
    if (!process.ok()) {
      ADD_FAILURE() << process.status();
      return nullptr;
    }
    return process->release();
  }

  // What the gateway must produce for greedy (and for sampling without speculation).
  static std::vector<int32_t> Plain(const std::vector<int32_t>& prompt, int max_new_tokens,
                                    SamplingParams sampling = {}) {
    GenerateOptions options;
    options.max_new_tokens = max_new_tokens;
    options.sampling = sampling;
    options.eos_token_id = static_cast<int32_t>((*model_)->config().eos_token_id);
    auto result = GeneratePlain(*(*model_)->FullView(), prompt, options);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->tokens : std::vector<int32_t>{};
  }

  void SetUp() override {
    ASSERT_NE(verifier_, nullptr);
    ASSERT_NE(draft_, nullptr);
    ASSERT_NE(gateway_, nullptr);
    ASSERT_NE(plain_gateway_, nullptr);
  }

  static std::string* dir_;
  static std::string* model_dir_;
  static std::shared_ptr<Model>* model_;
  static Tokenizer* tokenizer_;
  static ServiceProcess* verifier_;
  static ServiceProcess* draft_;
  static ServiceProcess* gateway_;
  static ServiceProcess* plain_gateway_;
};

std::string* PipelineTest::dir_ = nullptr;
std::string* PipelineTest::model_dir_ = nullptr;
std::shared_ptr<Model>* PipelineTest::model_ = nullptr;
Tokenizer* PipelineTest::tokenizer_ = nullptr;
ServiceProcess* PipelineTest::verifier_ = nullptr;
ServiceProcess* PipelineTest::draft_ = nullptr;
ServiceProcess* PipelineTest::gateway_ = nullptr;
ServiceProcess* PipelineTest::plain_gateway_ = nullptr;

const std::vector<std::vector<int32_t>> kPrompts = {
    {1, 2, 3, 4, 5}, {100, 2000, 30000}, {50000}, {12, 12, 12, 12, 12, 12, 12, 12}};

TEST_F(PipelineTest, GreedyEqualsPlainDecodingForEveryK) {
  for (const auto& prompt : kPrompts) {
    const std::vector<int32_t> expected = Plain(prompt, 24);
    for (int k : {0, 1, 3, 5}) {
      GenerateResult result = Generate(gateway_->address(), GreedyRequest(prompt, 24, k));
      ASSERT_TRUE(result.status.ok()) << result.status.error_message();
      EXPECT_EQ(result.ids, expected) << "K=" << k << " prompt[0]=" << prompt[0];
      EXPECT_EQ(result.last.usage().generated_tokens(), static_cast<int>(expected.size()));
      EXPECT_EQ(result.last.usage().prompt_tokens(), static_cast<int>(prompt.size()));
      ASSERT_FALSE(result.rounds.empty());
      int emitted = 0;
      for (const auto& round : result.rounds) {
        emitted += round.tokens_emitted();
        EXPECT_LE(round.num_accepted(), round.num_draft_tokens());
        if (k > 0 && round.num_draft_tokens() > 0) {
          EXPECT_EQ(round.fallback(), v1::FALLBACK_UNSPECIFIED);
        }
        if (k == 0) EXPECT_EQ(round.fallback(), v1::FALLBACK_NO_DRAFT);
      }
      EXPECT_EQ(emitted, static_cast<int>(expected.size()));
    }
  }
}

// The layer-0 draft of a random model is almost never right; these drafts are: the full plan
// (every proposal accepted: the all-accepted rollback path) and a vocabulary cut (mixed).
TEST_F(PipelineTest, GreedyAndSampledEqualInProcessWithAcceptingDrafts) {
  struct Case {
    std::string name;
    std::vector<std::string> flags;
    LayerPlan plan;
  };
  LayerPlan cut;
  cut.vocab_size = 25000;
  const std::vector<Case> cases = {{"full", {}, LayerPlan()},
                                   {"vocab_cut", {"--draft_vocab=25000"}, cut}};
  for (const Case& c : cases) {
    std::vector<std::string> flags = {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1"};
    flags.insert(flags.end(), c.flags.begin(), c.flags.end());
    auto draft = ServiceProcess::Start(kDraftBin, flags, *dir_ + "/draft_" + c.name + ".log");
    ASSERT_TRUE(draft.ok()) << draft.status();
    auto gateway =
        ServiceProcess::Start(kGatewayBin,
                              {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(),
                               "--draft=" + (*draft)->address(), "--draft_deadline_ms=10000"},
                              *dir_ + "/gateway_" + c.name + ".log");
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    int accepted = 0, drafted = 0, overlapped = 0;
    for (const auto& prompt : kPrompts) {
      for (int k : {2, 5}) {
        // Overlapped rounds (the default) and sequential ones must give the same tokens in the
        // same rounds: overlap changes only when the draft works.
        std::vector<int> accepted_per_round[2];
        for (bool sequential : {false, true}) {
          v1::GenerateRequest request = GreedyRequest(prompt, 30, k);
          request.mutable_speculation()->set_sequential(sequential);
          GenerateResult result = Generate((*gateway)->address(), request);
          ASSERT_TRUE(result.status.ok()) << result.status.error_message();
          EXPECT_EQ(result.ids, Plain(prompt, 30)) << c.name << " K=" << k << " " << sequential;
          int overlapped_records = 0;
          for (const auto& round : result.rounds) {
            accepted_per_round[sequential].push_back(round.num_accepted());
            overlapped_records += round.overlapped();
          }
          EXPECT_EQ(overlapped_records, result.last.usage().overlapped_rounds());
          if (sequential) {
            EXPECT_EQ(result.last.usage().overlapped_rounds(), 0);
          } else {
            overlapped += result.last.usage().overlapped_rounds();
          }
          accepted += result.last.usage().accepted_tokens();
          drafted += result.last.usage().drafted_tokens();
        }
        EXPECT_EQ(accepted_per_round[0], accepted_per_round[1]) << c.name << " K=" << k;
      }
    }
    if (c.name == "full") {
      EXPECT_EQ(accepted, drafted);
      // The full model's guess at the bonus token is always right: every round but the first
      // of each request was drafted while the previous one was verified.
      EXPECT_GT(overlapped, 0);
    } else {
      EXPECT_GT(accepted, 0) << c.name;
    }
    EXPECT_GT(drafted, 0);

    auto draft_view = (*model_)->View(c.plan);
    ASSERT_TRUE(draft_view.ok());
    v1::GenerateRequest request = GreedyRequest({1, 2, 3, 4, 5}, 40, 4);
    request.mutable_sampling()->set_temperature(0.7f);
    request.mutable_sampling()->set_seed(99);
    GenerateResult sampled = Generate((*gateway)->address(), request);
    ASSERT_TRUE(sampled.status.ok());
    request.mutable_speculation()->set_sequential(true);
    GenerateResult sampled_sequential = Generate((*gateway)->address(), request);
    ASSERT_TRUE(sampled_sequential.status.ok());
    EXPECT_EQ(sampled.ids, sampled_sequential.ids) << c.name;
    GenerateOptions options;
    options.max_new_tokens = 40;
    options.sampling = SamplingParams{0.7f, 0, 1.0f, 99};
    options.num_draft_tokens = 4;
    options.eos_token_id = static_cast<int32_t>((*model_)->config().eos_token_id);
    auto in_process = GenerateSpeculative(*(*model_)->FullView(), **draft_view,
                                          std::vector<int32_t>{1, 2, 3, 4, 5}, options);
    ASSERT_TRUE(in_process.ok()) << in_process.status();
    EXPECT_EQ(sampled.ids, in_process->tokens) << c.name;
  }
}

// Concurrent sessions share the services' forward passes (cross-session batching) and each
// still gets exactly its own greedy output. Its own draft and verifier with one pass at a time
// (--batch_passes=1): with the default of one pass per core, two sessions on a 2-core machine
// may each run alone in parallel and never need to share, so whether a pass is shared would
// depend on timing; with one pass, any two calls that overlap do share it.
TEST_F(PipelineTest, ConcurrentSessionsAreBatchedAndEachEqualsPlainDecoding) {
  const std::vector<std::string> common = {"--model_dir=" + *model_dir_, "--device=cpu",
                                           "--threads=1", "--batch_passes=1"};
  std::vector<std::string> draft_flags = common;
  draft_flags.push_back(absl::StrCat("--draft_layers=", kDraftLayers));
  auto verifier = ServiceProcess::Start(kVerifierBin, common, *dir_ + "/verifier_batch.log");
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  auto draft = ServiceProcess::Start(kDraftBin, draft_flags, *dir_ + "/draft_batch.log");
  ASSERT_TRUE(draft.ok()) << draft.status();
  auto gateway = ServiceProcess::Start(
      kGatewayBin,
      {"--model_dir=" + *model_dir_, "--verifier=" + (*verifier)->address(),
       "--draft=" + (*draft)->address(), "--draft_deadline_ms=10000"},
      *dir_ + "/gateway_batch.log");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  constexpr int kStreams = 8;  // every test prompt twice
  std::vector<GenerateResult> results(kStreams);
  std::vector<std::thread> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.emplace_back([&, i] {
      results[i] = Generate((*gateway)->address(),
                            GreedyRequest(kPrompts[i % kPrompts.size()], 32, 3));
    });
  }
  for (auto& client : clients) client.join();
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    EXPECT_EQ(results[i].ids, Plain(kPrompts[i % kPrompts.size()], 32)) << "stream " << i;
  }
  const v1::GetStatsResponse verifier_stats = VerifierStats((*verifier)->address());
  const v1::GetStatsResponse draft_stats = DraftStats((*draft)->address());
  // Fewer passes than calls: some passes served several sessions.
  EXPECT_LT(verifier_stats.batched_passes(), verifier_stats.batched_calls());
  EXPECT_LT(draft_stats.batched_passes(), draft_stats.batched_calls());
  EXPECT_GE(verifier_stats.largest_batch(), 2);
  EXPECT_GE(draft_stats.largest_batch(), 2);
}

// --speculation_max_sessions: while more streams run, rounds decode without the draft (and say
// so); the output is the same, and a lone stream speculates again.
TEST_F(PipelineTest, SpeculationPausesWhileTheGatewayIsBusy) {
  auto gateway = ServiceProcess::Start(
      kGatewayBin,
      {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(),
       "--draft=" + draft_->address(), "--draft_deadline_ms=10000", "--speculation_max_sessions=1"},
      *dir_ + "/gateway_busy.log");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  const std::string address = (*gateway)->address();
  // The second request runs while the first one's stream is open: the first is long (a prompt
  // whose greedy continuation has no end-of-sequence token for 2000 tokens), and its client
  // reads nothing while the second runs, then cancels it.
  std::vector<int32_t> long_prompt;
  for (const auto& prompt : kPrompts) {
    if (Plain(prompt, 2000).size() == 2000) {
      long_prompt = prompt;
      break;
    }
  }
  ASSERT_FALSE(long_prompt.empty()) << "every test prompt reaches EOS within 2000 tokens";
  GenerateResult inner;
  GenerateResult outer = Generate(address, GreedyRequest(long_prompt, 2000, 3),
                                  [&](int message, grpc::ClientContext* context) {
                                    if (message == 0) {
                                      inner = Generate(address, GreedyRequest(kPrompts[1], 16, 3));
                                      context->TryCancel();
                                    }
                                  });
  EXPECT_EQ(outer.status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(inner.status.ok()) << inner.status.error_message();
  EXPECT_EQ(inner.ids, Plain(kPrompts[1], 16));
  ASSERT_FALSE(inner.rounds.empty());
  for (const auto& round : inner.rounds) {
    EXPECT_EQ(round.fallback(), v1::FALLBACK_BUSY) << "round " << round.round();
    EXPECT_EQ(round.num_draft_tokens(), 0);
  }
  EXPECT_EQ(inner.last.usage().drafted_tokens(), 0);
  GenerateResult alone = Generate(address, GreedyRequest(kPrompts[1], 16, 3));
  ASSERT_TRUE(alone.status.ok());
  EXPECT_EQ(alone.ids, inner.ids);
  EXPECT_GT(alone.last.usage().drafted_tokens(), 0);
}

TEST_F(PipelineTest, GreedyWithAdaptiveKEqualsPlainDecoding) {
  for (const auto& prompt : kPrompts) {
    GenerateResult result = Generate(gateway_->address(), GreedyRequest(prompt, 32, 6, true));
    ASSERT_TRUE(result.status.ok()) << result.status.error_message();
    EXPECT_EQ(result.ids, Plain(prompt, 32));
    EXPECT_GT(result.last.usage().drafted_tokens(), 0);
  }
}

TEST_F(PipelineTest, GreedyWithoutDraftServiceEqualsPlainDecoding) {
  for (const auto& prompt : kPrompts) {
    GenerateResult result = Generate(plain_gateway_->address(), GreedyRequest(prompt, 24, 3));
    ASSERT_TRUE(result.status.ok()) << result.status.error_message();
    EXPECT_EQ(result.ids, Plain(prompt, 24));
    for (const auto& round : result.rounds) EXPECT_EQ(round.fallback(), v1::FALLBACK_NO_DRAFT);
  }
}

TEST_F(PipelineTest, TextPromptStreamsTheDecodedText) {
  v1::GenerateRequest request;
  request.set_prompt("The quick brown fox");
  request.set_max_new_tokens(20);
  request.mutable_speculation()->set_num_draft_tokens(3);
  GenerateResult result = Generate(gateway_->address(), request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  auto prompt = tokenizer_->Encode("The quick brown fox");
  ASSERT_TRUE(prompt.ok());
  const std::vector<int32_t> expected = Plain(*prompt, 20);
  EXPECT_EQ(result.ids, expected);
  std::vector<int32_t> without_eos = expected;
  if (!without_eos.empty() && without_eos.back() == (*model_)->config().eos_token_id) {
    without_eos.pop_back();
  }
  // The streamed pieces join into the lossy decoding of the tokens.
  IncrementalDecoder decoder(*tokenizer_);
  std::string decoded;
  for (int32_t id : without_eos) decoded += decoder.Add(id);
  decoded += decoder.Flush();
  EXPECT_EQ(result.text, decoded);
  EXPECT_FALSE(result.last.request_id().empty() && result.messages == 0);
}

TEST_F(PipelineTest, StopStringEndsGenerationBeforeIt) {
  v1::GenerateRequest request = GreedyRequest({1, 2, 3, 4, 5}, 40, 3);
  GenerateResult full = Generate(gateway_->address(), request);
  ASSERT_TRUE(full.status.ok());
  // A stop string from the middle of the text (ASCII-safe cut: a whole token's text).
  ASSERT_GT(full.ids.size(), 12u);
  std::string stop = tokenizer_->Decode({full.ids[10]});
  if (stop.empty() || full.text.find(stop) == std::string::npos) GTEST_SKIP() << "no usable stop";
  request.add_stop(stop);
  GenerateResult stopped = Generate(gateway_->address(), request);
  ASSERT_TRUE(stopped.status.ok()) << stopped.status.error_message();
  EXPECT_EQ(stopped.last.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(stopped.text, full.text.substr(0, full.text.find(stop)));
  EXPECT_LE(stopped.ids.size(), 11u);
  EXPECT_EQ(stopped.ids,
            std::vector<int32_t>(full.ids.begin(), full.ids.begin() + stopped.ids.size()));
}

TEST_F(PipelineTest, SamplingWithSeedIsReproducibleAndMatchesInProcess) {
  v1::GenerateRequest request = GreedyRequest({1, 2, 3, 4, 5}, 32, 3);
  request.mutable_sampling()->set_temperature(0.9f);
  request.mutable_sampling()->set_top_k(50);
  request.mutable_sampling()->set_top_p(0.95f);
  request.mutable_sampling()->set_seed(1234);
  GenerateResult first = Generate(gateway_->address(), request);
  GenerateResult second = Generate(gateway_->address(), request);
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  ASSERT_TRUE(second.status.ok());
  EXPECT_EQ(first.ids, second.ids);
  EXPECT_EQ(first.ids.size(), 32u);

  // The same steps as the in-process speculative generator with the same draft plan.
  SamplingParams sampling{0.9f, 50, 0.95f, 1234};
  auto layers = ParseLayerList(kDraftLayers);
  ASSERT_TRUE(layers.ok());
  LayerPlan plan;
  plan.layers = *layers;
  auto draft_view = (*model_)->View(plan);
  ASSERT_TRUE(draft_view.ok());
  GenerateOptions options;
  options.max_new_tokens = 32;
  options.sampling = sampling;
  options.num_draft_tokens = 3;
  options.eos_token_id = static_cast<int32_t>((*model_)->config().eos_token_id);
  auto in_process = GenerateSpeculative(*(*model_)->FullView(), **draft_view,
                                        std::vector<int32_t>{1, 2, 3, 4, 5}, options);
  ASSERT_TRUE(in_process.ok()) << in_process.status();
  EXPECT_EQ(first.ids, in_process->tokens);

  // Without speculation, sampling through the verifier is plain sampled decoding.
  request.mutable_speculation()->set_num_draft_tokens(0);
  GenerateResult plain = Generate(gateway_->address(), request);
  ASSERT_TRUE(plain.status.ok());
  EXPECT_EQ(plain.ids, Plain({1, 2, 3, 4, 5}, 32, sampling));
}

TEST_F(PipelineTest, InvalidRequestsAreInvalidArgument) {
  std::vector<v1::GenerateRequest> bad;
  bad.push_back(v1::GenerateRequest());            // empty prompt
  bad.push_back(GreedyRequest({1, 50304}, 4, 1));  // id out of range (vocab 50304)
  bad.push_back(GreedyRequest({1, -1}, 4, 1));
  bad.push_back(GreedyRequest(std::vector<int32_t>(3000, 7), 4, 1));  // longer than the context
  v1::GenerateRequest r = GreedyRequest({1, 2}, 4, 1);
  r.mutable_sampling()->set_temperature(-1.0f);
  bad.push_back(r);
  r = GreedyRequest({1, 2}, 4, 1);
  r.mutable_sampling()->set_top_p(1.5f);
  bad.push_back(r);
  r = GreedyRequest({1, 2}, 4, 1);
  r.mutable_sampling()->set_top_k(-3);
  bad.push_back(r);
  r = GreedyRequest({1, 2}, 4, 1000);  // K too large
  bad.push_back(r);
  r = GreedyRequest({1, 2}, 1000000, 1);  // above the cap
  bad.push_back(r);
  r = GreedyRequest({1, 2}, -5, 1);
  bad.push_back(r);
  r = GreedyRequest({1, 2}, 4, 1);
  r.add_stop("");
  bad.push_back(r);
  r = GreedyRequest({1, 2}, 4, 1);
  r.set_prompt("both text and ids");
  bad.push_back(r);
  for (size_t i = 0; i < bad.size(); ++i) {
    GenerateResult result = Generate(gateway_->address(), bad[i]);
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << "case " << i << ": " << result.status.error_message();
    EXPECT_TRUE(result.ids.empty());
  }
}

TEST_F(PipelineTest, VerifierDownIsUnavailable) {
  auto gateway =
      ServiceProcess::Start(kGatewayBin,
                            {"--model_dir=" + *model_dir_,
                             absl::StrCat("--verifier=127.0.0.1:", testing::PickFreePort())},
                            *dir_ + "/gateway_noverifier.log");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  GenerateResult result = Generate((*gateway)->address(), GreedyRequest({1, 2, 3}, 4, 0));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << result.status.error_message();
}

TEST_F(PipelineTest, TooManySessionsIsResourceExhausted) {
  auto gateway =
      ServiceProcess::Start(kGatewayBin,
                            {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(),
                             "--draft=" + draft_->address(), "--max_sessions=1"},
                            *dir_ + "/gateway_onesession.log");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  GenerateResult second;
  GenerateResult first =
      Generate((*gateway)->address(), GreedyRequest({1, 2, 3}, 2000, 2),
               [&](int message, grpc::ClientContext* context) {
                 if (message != 0) return;
                 second = Generate((*gateway)->address(), GreedyRequest({1, 2, 3}, 4, 1));
                 context->TryCancel();
               });
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << second.status.error_message();
  EXPECT_EQ(first.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitNoSessions(draft_->address(), verifier_->address()));
  // The slot is free again once the gateway has seen the cancellation.
  EXPECT_TRUE(WaitGatewayIdle((*gateway)->address()));
  GenerateResult third = Generate((*gateway)->address(), GreedyRequest({1, 2, 3}, 4, 1));
  EXPECT_TRUE(third.status.ok()) << third.status.error_message();
}

TEST_F(PipelineTest, CancelledStreamReleasesBothSessions) {
  const int64_t draft_abandoned = DraftStats(draft_->address()).sessions_abandoned();
  const int64_t verifier_abandoned = VerifierStats(verifier_->address()).sessions_abandoned();
  bool saw_sessions = false;
  GenerateResult result = Generate(gateway_->address(), GreedyRequest({1, 2, 3}, 2000, 3),
                                   [&](int message, grpc::ClientContext* context) {
                                     if (message != 1) return;
                                     saw_sessions =
                                         DraftStats(draft_->address()).active_sessions() == 1 &&
                                         VerifierStats(verifier_->address()).active_sessions() == 1;
                                     context->TryCancel();
                                   });
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(saw_sessions);
  EXPECT_TRUE(WaitNoSessions(draft_->address(), verifier_->address()));
  EXPECT_GT(DraftStats(draft_->address()).sessions_abandoned(), draft_abandoned);
  EXPECT_GT(VerifierStats(verifier_->address()).sessions_abandoned(), verifier_abandoned);
  // The cancellation reached the draft's stream too; that must not count against the draft
  // (the next request would run on the verifier alone for the backoff).
  GenerateResult next = Generate(gateway_->address(), GreedyRequest({1, 2, 3}, 8, 3));
  ASSERT_TRUE(next.status.ok()) << next.status.error_message();
  for (const auto& round : next.rounds) {
    EXPECT_EQ(round.fallback(), v1::FALLBACK_UNSPECIFIED) << "round " << round.round();
  }
}

TEST_F(PipelineTest, DeadlineExceededMidStreamReleasesBothSessions) {
  GenerateResult result =
      Generate(gateway_->address(), GreedyRequest({1, 2, 3}, 2000, 3), nullptr, 300);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << result.status.error_message();
  EXPECT_TRUE(WaitNoSessions(draft_->address(), verifier_->address()));
}

TEST_F(PipelineTest, FinishedStreamsReleaseExplicitly) {
  const int64_t released = VerifierStats(verifier_->address()).sessions_released();
  GenerateResult result = Generate(gateway_->address(), GreedyRequest({1, 2, 3}, 8, 2));
  ASSERT_TRUE(result.status.ok());
  EXPECT_EQ(VerifierStats(verifier_->address()).sessions_released(), released + 1);
  EXPECT_TRUE(WaitNoSessions(draft_->address(), verifier_->address()));
}

TEST_F(PipelineTest, KilledDraftFallsBackWithIdenticalOutput) {
  auto draft = ServiceProcess::Start(kDraftBin,
                                     {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1",
                                      absl::StrCat("--draft_layers=", kDraftLayers)},
                                     *dir_ + "/draft_killed.log");
  ASSERT_TRUE(draft.ok()) << draft.status();
  auto gateway =
      ServiceProcess::Start(kGatewayBin,
                            {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(),
                             "--draft=" + (*draft)->address(), "--draft_deadline_ms=10000"},
                            *dir_ + "/gateway_killed.log");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  const std::vector<int32_t> prompt = {5, 6, 7};
  const int max_new_tokens = 600;
  GenerateResult result = Generate((*gateway)->address(), GreedyRequest(prompt, max_new_tokens, 3),
                                   [&](int message, grpc::ClientContext*) {
                                     if (message == 2) (*draft)->Signal(SIGKILL);
                                   });
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.ids, Plain(prompt, max_new_tokens));
  int with_draft = 0, fallback = 0;
  for (const auto& round : result.rounds) {
    if (round.fallback() == v1::FALLBACK_UNSPECIFIED && round.num_proposed() > 0) ++with_draft;
    if (round.fallback() == v1::FALLBACK_DRAFT_UNAVAILABLE) ++fallback;
  }
  EXPECT_GE(with_draft, 3);
  EXPECT_GT(fallback, 0) << "the draft was killed before the stream ended";
  // After the kill, the draft is never asked again.
  EXPECT_EQ(result.rounds.back().fallback(), v1::FALLBACK_DRAFT_UNAVAILABLE);
}

TEST_F(PipelineTest, LateDraftFallsBackPerRoundWithIdenticalOutput) {
  auto gateway =
      ServiceProcess::Start(kGatewayBin,
                            {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(),
                             "--draft=" + draft_->address(), "--draft_deadline_ms=0"},
                            *dir_ + "/gateway_late.log");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  for (const auto& prompt : kPrompts) {
    GenerateResult result = Generate((*gateway)->address(), GreedyRequest(prompt, 24, 4));
    ASSERT_TRUE(result.status.ok()) << result.status.error_message();
    EXPECT_EQ(result.ids, Plain(prompt, 24));
  }
  EXPECT_TRUE(WaitNoSessions(draft_->address(), verifier_->address()));
}

// DraftPropose.tokens_per_message: the same proposals, in DraftTokens messages of that many (the
// last one shorter), the round's plan on proposal 0; 0 keeps a DraftToken message per proposal.
TEST_F(PipelineTest, DraftSendsProposalsInMessagesOfTheSizeAsked) {
  auto stub =
      v1::Draft::NewStub(grpc::CreateChannel(draft_->address(), grpc::InsecureChannelCredentials()));
  // One session stream: prefill {1, 2, 3}, propose 5 after the pending 4; the proposals' tokens
  // and the sizes of the messages that carried them.
  auto propose = [&](const std::string& id, int per_message, std::vector<int>* sizes) {
    std::vector<int32_t> tokens;
    grpc::ClientContext context;
    auto stream = stub->Session(&context);
    v1::DraftRequest prefill;
    prefill.set_session_id(id);
    prefill.set_committed_length(4);
    for (int32_t t : {1, 2, 3}) prefill.mutable_prefill()->mutable_tokens()->add_tokens(t);
    prefill.mutable_prefill()->mutable_sampling()->set_top_p(1.0f);  // greedy
    v1::DraftRequest request;
    request.set_session_id(id);
    request.set_committed_length(4);
    request.set_round(1);
    request.mutable_propose()->mutable_tokens()->set_start_position(3);
    request.mutable_propose()->mutable_tokens()->add_tokens(4);
    request.mutable_propose()->set_num_draft_tokens(5);
    request.mutable_propose()->set_tokens_per_message(per_message);
    EXPECT_TRUE(stream->Write(prefill));
    EXPECT_TRUE(stream->Write(request));
    v1::DraftResponse response;
    EXPECT_TRUE(stream->Read(&response));
    EXPECT_TRUE(response.has_prefilled()) << response.DebugString();
    std::vector<v1::DraftToken> proposals;
    while (proposals.size() < 5 && stream->Read(&response)) {
      EXPECT_EQ(response.round(), 1);
      if (response.has_token()) {
        sizes->push_back(0);  // a lone DraftToken
        proposals.push_back(response.token());
      } else {
        EXPECT_TRUE(response.has_tokens()) << response.DebugString();
        sizes->push_back(response.tokens().tokens_size());
        proposals.insert(proposals.end(), response.tokens().tokens().begin(),
                         response.tokens().tokens().end());
      }
    }
    for (size_t i = 0; i < proposals.size(); ++i) {
      EXPECT_EQ(proposals[i].index(), static_cast<int>(i));
      EXPECT_EQ(proposals[i].last(), i + 1 == 5);
      EXPECT_EQ(proposals[i].plan().empty(), i != 0);
      tokens.push_back(proposals[i].token());
    }
    stream->WritesDone();
    while (stream->Read(&response)) {
    }
    const grpc::Status status = stream->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return tokens;
  };
  std::vector<int> singles, pairs, whole;
  const std::vector<int32_t> one_each = propose("per-message-0", 0, &singles);
  EXPECT_EQ(singles, std::vector<int>(5, 0));
  EXPECT_EQ(propose("per-message-2", 2, &pairs), one_each);
  EXPECT_EQ(pairs, (std::vector<int>{2, 2, 1}));
  EXPECT_EQ(propose("per-message-8", 8, &whole), one_each);
  EXPECT_EQ(whole, std::vector<int>{5});
  EXPECT_EQ(one_each.size(), 5u);

  // A negative size is the gateway's error, answered INVALID_ARGUMENT.
  grpc::ClientContext context;
  auto stream = stub->Session(&context);
  v1::DraftRequest bad;
  bad.set_session_id("per-message-bad");
  bad.set_committed_length(1);
  bad.mutable_propose()->mutable_tokens()->add_tokens(4);
  bad.mutable_propose()->set_num_draft_tokens(2);
  bad.mutable_propose()->set_tokens_per_message(-1);
  EXPECT_TRUE(stream->Write(bad));
  stream->WritesDone();
  v1::DraftResponse response;
  while (stream->Read(&response)) {
  }
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("tokens_per_message"), std::string::npos)
      << status.error_message();
}

// The gateway's --draft_tokens_per_message changes how many messages a round costs, not what is
// generated: a gateway asking for one message per proposal gives the same tokens, greedy and
// seeded sampling, as the fixture's (whole rounds in one message).
TEST_F(PipelineTest, ProposalsOneMessageEachOrBatchedGiveTheSameTokens) {
  auto single = ServiceProcess::Start(
      kGatewayBin,
      {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(),
       "--draft=" + draft_->address(), "--draft_deadline_ms=10000",
       "--draft_tokens_per_message=1"},
      *dir_ + "/gateway_single.log");
  ASSERT_TRUE(single.ok()) << single.status();
  for (const bool sampled : {false, true}) {
    SCOPED_TRACE(sampled ? "sampled" : "greedy");
    // A fixed K: an adaptive one follows measured timings, and under the rejection coupling
    // where rounds end decides which draws a seed's sample uses.
    v1::GenerateRequest request = GreedyRequest({1, 2, 3, 4, 5}, 40, 4);
    if (sampled) {
      request.mutable_sampling()->set_temperature(0.9f);
      request.mutable_sampling()->set_top_p(0.95f);
      request.mutable_sampling()->set_seed(77);
    }
    GenerateResult batched = Generate(gateway_->address(), request);
    GenerateResult one_each = Generate((*single)->address(), request);
    ASSERT_TRUE(batched.status.ok()) << batched.status.error_message();
    ASSERT_TRUE(one_each.status.ok()) << one_each.status.error_message();
    EXPECT_EQ(batched.ids, one_each.ids);
    if (!sampled) EXPECT_EQ(batched.ids, Plain({1, 2, 3, 4, 5}, 40));
    int proposed = 0;
    for (const auto& round : batched.rounds) proposed += round.num_proposed();
    EXPECT_GT(proposed, 0);
  }
  EXPECT_TRUE(WaitNoSessions(draft_->address(), verifier_->address()));
}

TEST_F(PipelineTest, EvictedSessionsAreRebuiltByRePrefill) {
  auto evict_all = [&] {
    v1::EvictSessionRequest request;  // empty id: every session
    v1::EvictSessionResponse response;
    {
      grpc::ClientContext context;
      v1::Draft::NewStub(grpc::CreateChannel(draft_->address(), grpc::InsecureChannelCredentials()))
          ->EvictSession(&context, request, &response);
    }
    {
      grpc::ClientContext context;
      v1::Verifier::NewStub(
          grpc::CreateChannel(verifier_->address(), grpc::InsecureChannelCredentials()))
          ->EvictSession(&context, request, &response);
    }
  };
  const int64_t evicted_before = VerifierStats(verifier_->address()).sessions_evicted();
  const std::vector<int32_t> prompt = {9, 8, 7, 6};
  GenerateResult result = Generate(gateway_->address(), GreedyRequest(prompt, 400, 3),
                                   [&](int message, grpc::ClientContext*) {
                                     if (message == 1 || message == 3) evict_all();
                                   });
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.ids, Plain(prompt, 400));
  EXPECT_GT(VerifierStats(verifier_->address()).sessions_evicted(), evicted_before);
}

TEST_F(PipelineTest, GetInfoDescribesThePipeline) {
  auto stub = v1::Gateway::NewStub(
      grpc::CreateChannel(gateway_->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::GetInfoResponse info;
  ASSERT_TRUE(stub->GetInfo(&context, v1::GetInfoRequest(), &info).ok());
  EXPECT_EQ(info.model_name(), "model");
  EXPECT_EQ(info.vocab_size(), (*model_)->config().vocab_size);
  EXPECT_TRUE(info.draft_available());
  EXPECT_NE(info.draft_plan().find("layers=0"), std::string::npos) << info.draft_plan();
  EXPECT_EQ(info.verifier_kv_policy(), "full");
  EXPECT_EQ(info.verifier_device(), "cpu");
  EXPECT_FALSE(info.version().empty());
}

TEST_F(PipelineTest, CompressedKvPolicyServesAndAFullPoolIsResourceExhausted) {
  // A 64-token int8 window keeps the verifier's memory constant while the gateway decodes well
  // past the window; GetInfo reports the policy.
  auto verifier = ServiceProcess::Start(
      kVerifierBin,
      {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1",
       "--kv_policy=int8+sink_window:sink=4,window=60", "--kv_pool_blocks=64"},
      *dir_ + "/verifier_kv.log");
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  auto gateway =
      ServiceProcess::Start(kGatewayBin,
                            {"--model_dir=" + *model_dir_, "--verifier=" + (*verifier)->address(),
                             "--draft=" + draft_->address(), "--draft_deadline_ms=10000"},
                            *dir_ + "/gateway_kv.log");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  {
    auto stub = v1::Gateway::NewStub(
        grpc::CreateChannel((*gateway)->address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    v1::GetInfoResponse info;
    ASSERT_TRUE(stub->GetInfo(&context, v1::GetInfoRequest(), &info).ok());
    EXPECT_NE(info.verifier_kv_policy().find("int8"), std::string::npos)
        << info.verifier_kv_policy();
    EXPECT_NE(info.verifier_kv_policy().find("sink_window"), std::string::npos);
  }
  GenerateResult out = Generate((*gateway)->address(), GreedyRequest(kPrompts[0], 200, 3));
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(out.ids.size(), 200u);
  EXPECT_TRUE(WaitNoSessions(draft_->address(), (*verifier)->address()));

  // A pool of 2 blocks (32 tokens) cannot hold a 40-token prompt: a clear status, no crash,
  // and the verifier keeps serving.
  auto small = ServiceProcess::Start(
      kVerifierBin,
      {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1", "--kv_pool_blocks=2"},
      *dir_ + "/verifier_small_pool.log");
  ASSERT_TRUE(small.ok()) << small.status();
  auto small_gateway = ServiceProcess::Start(
      kGatewayBin, {"--model_dir=" + *model_dir_, "--verifier=" + (*small)->address()},
      *dir_ + "/gateway_small_pool.log");
  ASSERT_TRUE(small_gateway.ok()) << small_gateway.status();
  std::vector<int32_t> long_prompt(40, 7);
  GenerateResult full = Generate((*small_gateway)->address(), GreedyRequest(long_prompt, 4, 0));
  EXPECT_EQ(full.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << full.status.error_message();
  {
    // Back-pressure is not an outage: the full verifier stays healthy in the gateway's set
    // (no failure reported; the prober would only re-admit it after 100 ms or more).
    auto stub = v1::Gateway::NewStub(
        grpc::CreateChannel((*small_gateway)->address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    v1::GetInfoResponse info;
    ASSERT_TRUE(stub->GetInfo(&context, v1::GetInfoRequest(), &info).ok());
    ASSERT_EQ(info.verifier_replicas_size(), 1);
    EXPECT_TRUE(info.verifier_replicas(0).healthy());
    EXPECT_EQ(info.verifier_replicas(0).failures(), 0);
  }
  GenerateResult fits = Generate((*small_gateway)->address(), GreedyRequest(kPrompts[0], 4, 0));
  EXPECT_TRUE(fits.status.ok()) << fits.status.error_message();
}

TEST_F(PipelineTest, SigtermStopsAServiceCleanly) {
  auto gateway = ServiceProcess::Start(
      kGatewayBin, {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address()},
      *dir_ + "/gateway_sigterm.log");
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  const int status = (*gateway)->Signal(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status)) << (*gateway)->Log();
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE((*gateway)->Log().find("stopped"), std::string::npos);
}

// --cpus pins every thread of a model service, the BLAS pool started at load time included; a
// CPU list it cannot honour stops it at startup with a message that names the problem.
TEST_F(PipelineTest, CpusPinsEveryThreadOfTheVerifier) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  int chosen = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) chosen = cpu;
  }
  ASSERT_GE(chosen, 0);
  auto verifier = ServiceProcess::Start(kVerifierBin,
                                        {"--model_dir=" + *model_dir_, "--device=cpu",
                                         "--threads=2", absl::StrCat("--cpus=", chosen)},
                                        *dir_ + "/verifier_pinned.log");
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  int threads = 0;
  for (const auto& task :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", (*verifier)->pid(), "/task"))) {
    std::ifstream status(task.path() / "status");
    std::string line, allowed;
    while (std::getline(status, line)) {
      if (line.rfind("Cpus_allowed_list:", 0) == 0) allowed = line.substr(line.find(':') + 1);
    }
    allowed.erase(0, allowed.find_first_not_of(" \t"));
    EXPECT_EQ(allowed, std::to_string(chosen)) << "thread " << task.path().filename();
    ++threads;
  }
  EXPECT_GT(threads, 2) << "a verifier runs gRPC and BLAS threads besides main";
  EXPECT_NE((*verifier)->Log().find(absl::StrCat("pinned to CPUs ", chosen)), std::string::npos)
      << (*verifier)->Log();

  for (const auto& [cpus, message] :
       std::vector<std::pair<std::string, std::string>>{{"900", "CPU 900 does not exist"},
                                                        {"3-1", "runs backwards"},
                                                        {"zero", "is not a CPU number"},
                                                        {"9999", "below 1024"}}) {
    auto bad = ServiceProcess::Start(
        kVerifierBin, {"--model_dir=" + *model_dir_, "--device=cpu", "--cpus=" + cpus},
        *dir_ + "/verifier_bad_cpus.log", absl::Seconds(20));
    ASSERT_FALSE(bad.ok()) << cpus;
    EXPECT_NE(std::string(bad.status().message()).find(message), std::string::npos)
        << cpus << ": " << bad.status();
  }
}

}  // namespace
}  // namespace specdec
