// Reliability tests: the three services as real processes on loopback ports, under faults
// (kill -9 of a verifier replica or of the only one, a draft killed and restarted, a slow draft,
// SIGTERM drains) and bad or hostile clients (bad inputs, a client that never reads, a client
// killed mid-stream, 1,000 concurrent cancellations). Every case checks that nothing is left
// behind: no session on the draft, the verifier or the gateway, and bounded gateway memory.
// docs/reliability.md has the table these tests stand behind.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/generation/generator.h"
#include "common/model/checkpoint_writer.h"
#include "common/model/model.h"
#include "gtest/gtest.h"
#include "specdec/v1/draft.grpc.pb.h"
#include "specdec/v1/gateway.grpc.pb.h"
#include "specdec/v1/verifier.grpc.pb.h"
#include "tests/integration/service_process.h"

namespace specdec {
namespace {

using ::specdec::testing::PickFreePort;
using ::specdec::testing::RssKib;
using ::specdec::testing::ServiceProcess;

// Memory bounds on the gateway's RSS, in KiB. Under AddressSanitizer freed memory sits in its
// quarantine (256 MiB by default) and every allocation carries redzones and shadow, so RSS
// measures the sanitizer, not the gateway: the bounds get that quarantine added.
#if defined(__SANITIZE_ADDRESS__)
constexpr int64_t kSanitizerSlackKib = 256 * 1024;
#else
constexpr int64_t kSanitizerSlackKib = 0;
#endif

const std::string kBin = SPECDEC_BINARY_DIR;
const std::string kDraftBin = kBin + "/services/draft/specdec-draft";
const std::string kVerifierBin = kBin + "/services/verifier/specdec-verifier";
const std::string kGatewayBin = kBin + "/services/gateway/specdec-gateway";
const std::string kLoadgenBin = kBin + "/tools/loadgen/specdec-loadgen";

struct GenerateResult {
  grpc::Status status;
  std::vector<int32_t> ids;
  std::vector<v1::RoundRecord> rounds;
  v1::GenerateResponse last;
  int messages = 0;
};

std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

GenerateResult Generate(
    const std::string& address, const v1::GenerateRequest& request,
    const std::function<void(int, grpc::ClientContext*, const v1::GenerateResponse&)>& on_message =
        nullptr,
    int timeout_ms = 60000) {
  auto stub = v1::Gateway::NewStub(Channel(address));
  grpc::ClientContext context;
  if (timeout_ms > 0) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  }
  GenerateResult result;
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    result.ids.insert(result.ids.end(), response.token_ids().begin(), response.token_ids().end());
    result.rounds.insert(result.rounds.end(), response.rounds().begin(), response.rounds().end());
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) result.last = response;
    if (on_message) on_message(result.messages, &context, response);
    ++result.messages;
  }
  result.status = reader->Finish();
  return result;
}

v1::GenerateRequest Greedy(const std::vector<int32_t>& prompt, int max_new_tokens, int k) {
  v1::GenerateRequest request;
  for (int32_t id : prompt) request.add_prompt_ids(id);
  request.set_max_new_tokens(max_new_tokens);
  request.mutable_speculation()->set_num_draft_tokens(k);
  request.set_include_rounds(true);
  return request;
}

v1::GetStatsResponse DraftStats(const std::string& address) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetStatsResponse stats;
  v1::Draft::NewStub(Channel(address))->GetStats(&context, v1::GetStatsRequest(), &stats);
  return stats;
}

v1::GetStatsResponse VerifierStats(const std::string& address) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetStatsResponse stats;
  v1::Verifier::NewStub(Channel(address))->GetStats(&context, v1::GetStatsRequest(), &stats);
  return stats;
}

absl::StatusOr<v1::GetInfoResponse> GatewayInfo(const std::string& address) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetInfoResponse info;
  grpc::Status status = v1::Gateway::NewStub(Channel(address))->GetInfo(&context, {}, &info);
  if (!status.ok()) return absl::UnavailableError(status.error_message());
  return info;
}

// Polls (up to `timeout`) until `condition` holds.
bool Eventually(const std::function<bool()>& condition,
                absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return condition();
}

// No session anywhere: the gateway's own count and every backend's.
bool NoSessionsLeft(const std::string& gateway, const std::vector<std::string>& drafts,
                    const std::vector<std::string>& verifiers) {
  return Eventually([&] {
    auto info = GatewayInfo(gateway);
    if (!info.ok() || info->active_sessions() != 0) return false;
    for (const auto& d : drafts) {
      if (DraftStats(d).active_sessions() != 0) return false;
    }
    for (const auto& v : verifiers) {
      if (VerifierStats(v).active_sessions() != 0) return false;
    }
    return true;
  });
}

class ReliabilityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ConfigureComputeThreads(1);
    dir_ =
        new std::string(::testing::TempDir() + "/specdec_reliability_" + std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
    model_dir_ = new std::string(*dir_ + "/model");
    auto config = PresetConfig("tiny");
    ASSERT_TRUE(config.ok());
    CheckpointOptions options;
    options.seed = 11;
    options.tokenizer_path = SPECDEC_TOKENIZER_JSON;
    ASSERT_TRUE(WriteRandomCheckpoint(*config, options, *model_dir_).ok());
    auto model = Model::Load(*model_dir_, LoadOptions{"cpu", "f32"});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = new std::shared_ptr<Model>(*model);
    // Shared by the tests that do not kill them.
    verifier_ = Start(kVerifierBin, VerifierArgs(), "verifier").release();
    draft_ = Start(kDraftBin, DraftArgs(), "draft").release();
    gateway_ =
        Start(kGatewayBin,
              {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(),
               "--draft=" + draft_->address(), "--draft_deadline_ms=10000", "--max_sessions=1000"},
              "gateway")
            .release();
  }

  static void TearDownTestSuite() {
    delete gateway_;
    delete draft_;
    delete verifier_;
    delete model_;
    std::filesystem::remove_all(*dir_);
  }

  static std::vector<std::string> VerifierArgs() {
    return {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1",
            "--shutdown_grace_ms=1000"};
  }
  static std::vector<std::string> DraftArgs() {
    return {"--model_dir=" + *model_dir_, "--device=cpu", "--threads=1", "--draft_layers=0"};
  }

  // Starts a service on `port` (0: a free one); null (and a test failure) when it cannot.
  static std::unique_ptr<ServiceProcess> Start(const std::string& binary,
                                               std::vector<std::string> args,
                                               const std::string& name, int port = 0) {
    auto process =
        ServiceProcess::Start(binary, args, *dir_ + "/" + name + ".log", absl::Seconds(60), port);
    if (!process.ok()) {
      ADD_FAILURE() << process.status();
      return nullptr;
    }
    return *std::move(process);
  }

  static std::vector<int32_t> Plain(const std::vector<int32_t>& prompt, int max_new_tokens) {
    GenerateOptions options;
    options.max_new_tokens = max_new_tokens;
    options.eos_token_id = static_cast<int32_t>((*model_)->config().eos_token_id);
    auto result = GeneratePlain(*(*model_)->FullView(), prompt, options);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->tokens : std::vector<int32_t>{};
  }

  void SetUp() override {
    ASSERT_NE(verifier_, nullptr);
    ASSERT_NE(draft_, nullptr);
    ASSERT_NE(gateway_, nullptr);
  }

  static std::string* dir_;
  static std::string* model_dir_;
  static std::shared_ptr<Model>* model_;
  static ServiceProcess* verifier_;
  static ServiceProcess* draft_;
  static ServiceProcess* gateway_;
};

std::string* ReliabilityTest::dir_ = nullptr;
std::string* ReliabilityTest::model_dir_ = nullptr;
std::shared_ptr<Model>* ReliabilityTest::model_ = nullptr;
ServiceProcess* ReliabilityTest::verifier_ = nullptr;
ServiceProcess* ReliabilityTest::draft_ = nullptr;
ServiceProcess* ReliabilityTest::gateway_ = nullptr;

// Two verifier replicas; the one serving the session is killed mid-stream. The session moves to
// the other by re-prefill and the output is the same tokens.
TEST_F(ReliabilityTest, VerifierKilledMidStreamMovesToTheOtherReplica) {
  auto a = Start(kVerifierBin, VerifierArgs(), "verifier_a");
  auto b = Start(kVerifierBin, VerifierArgs(), "verifier_b");
  ASSERT_TRUE(a && b);
  auto gateway =
      Start(kGatewayBin,
            {"--model_dir=" + *model_dir_, "--verifier=" + a->address() + "," + b->address(),
             "--draft=" + draft_->address(), "--draft_deadline_ms=10000"},
            "gateway_two_verifiers");
  ASSERT_TRUE(gateway);
  const std::vector<int32_t> prompt = {3, 1, 4, 1, 5};
  const int max_new_tokens = 500;
  ServiceProcess* killed = nullptr;
  std::string survivor;
  GenerateResult result =
      Generate(gateway->address(), Greedy(prompt, max_new_tokens, 3),
               [&](int message, grpc::ClientContext*, const v1::GenerateResponse&) {
                 if (message != 2) return;
                 const bool on_a = VerifierStats(a->address()).active_sessions() == 1;
                 killed = on_a ? a.get() : b.get();
                 survivor = on_a ? b->address() : a->address();
                 killed->Signal(SIGKILL);
               });
  ASSERT_NE(killed, nullptr);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message() << "\n" << gateway->Log();
  EXPECT_EQ(result.ids, Plain(prompt, max_new_tokens));
  EXPECT_GE(VerifierStats(survivor).sessions_opened(), 1);
  // The gateway saw the replica go and reports it.
  auto info = GatewayInfo(gateway->address());
  ASSERT_TRUE(info.ok());
  ASSERT_EQ(info->verifier_replicas_size(), 2);
  for (const auto& replica : info->verifier_replicas()) {
    EXPECT_EQ(replica.healthy(), replica.address() == survivor) << replica.address();
  }
  // New sessions still work (on the survivor).
  GenerateResult next = Generate(gateway->address(), Greedy({9, 9}, 16, 2));
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
  EXPECT_EQ(next.ids, Plain({9, 9}, 16));
  EXPECT_TRUE(NoSessionsLeft(gateway->address(), {draft_->address()}, {survivor}));
}

// The only verifier is killed mid-stream: the client gets UNAVAILABLE promptly, never a hang,
// and nothing is left behind.
TEST_F(ReliabilityTest, OnlyVerifierKilledIsUnavailableWithinADeadline) {
  auto verifier = Start(kVerifierBin, VerifierArgs(), "verifier_only");
  ASSERT_TRUE(verifier);
  auto gateway = Start(kGatewayBin,
                       {"--model_dir=" + *model_dir_, "--verifier=" + verifier->address(),
                        "--draft=" + draft_->address(), "--draft_deadline_ms=10000"},
                       "gateway_one_verifier");
  ASSERT_TRUE(gateway);
  absl::Time killed_at;
  GenerateResult result =
      Generate(gateway->address(), Greedy({2, 7, 1, 8}, 1500, 3),
               [&](int message, grpc::ClientContext*, const v1::GenerateResponse&) {
                 if (message != 2) return;
                 verifier->Signal(SIGKILL);
                 killed_at = absl::Now();
               });
  const absl::Duration took = absl::Now() - killed_at;
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << result.status.error_message();
  EXPECT_LT(took, absl::Seconds(5)) << "UNAVAILABLE took " << took;
  EXPECT_TRUE(NoSessionsLeft(gateway->address(), {draft_->address()}, {}));
  // A new request fails fast too.
  const absl::Time start = absl::Now();
  GenerateResult next = Generate(gateway->address(), Greedy({1, 2}, 8, 2));
  EXPECT_EQ(next.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

// A verifier replica that hangs (SIGSTOP: the connection stays up, nothing answers) is caught by
// --verifier_timeout_ms: the session moves to the other replica, the output is unchanged.
TEST_F(ReliabilityTest, HungVerifierTimesOutAndTheSessionMoves) {
  auto a = Start(kVerifierBin, VerifierArgs(), "verifier_hung_a");
  auto b = Start(kVerifierBin, VerifierArgs(), "verifier_hung_b");
  ASSERT_TRUE(a && b);
  auto gateway =
      Start(kGatewayBin,
            {"--model_dir=" + *model_dir_, "--verifier=" + a->address() + "," + b->address(),
             "--verifier_timeout_ms=1000"},
            "gateway_hung_verifier");
  ASSERT_TRUE(gateway);
  const std::vector<int32_t> prompt = {7, 7, 8};
  ServiceProcess* stopped = nullptr;
  absl::Time stopped_at;
  absl::Duration longest_gap;
  absl::Time last = absl::Now();
  GenerateResult result =
      Generate(gateway->address(), Greedy(prompt, 300, 0),
               [&](int message, grpc::ClientContext*, const v1::GenerateResponse&) {
                 longest_gap = std::max(longest_gap, absl::Now() - last);
                 last = absl::Now();
                 if (message != 2) return;
                 stopped = VerifierStats(a->address()).active_sessions() == 1 ? a.get() : b.get();
                 kill(stopped->pid(), SIGSTOP);
                 stopped_at = absl::Now();
               });
  ASSERT_NE(stopped, nullptr);
  kill(stopped->pid(), SIGCONT);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message() << "\n" << gateway->Log();
  EXPECT_EQ(result.ids, Plain(prompt, 300));
  // One stall of about the timeout, not more.
  EXPECT_GE(longest_gap, absl::Milliseconds(900));
  EXPECT_LT(longest_gap, absl::Seconds(4)) << longest_gap;
}

// A draft killed mid-stream and restarted on the same address: the same stream picks it up
// again after a backoff (rounds have proposals again), and so do new requests.
TEST_F(ReliabilityTest, RestartedDraftIsUsedAgain) {
  const int port = PickFreePort();
  auto draft = Start(kDraftBin, DraftArgs(), "draft_restart", port);
  ASSERT_TRUE(draft);
  // Every verification takes >= 10 ms, so the 2000 tokens take >= 20 s while the draft is away:
  // time for a slow restart on a loaded machine plus the gateway's backoff (<= 5 s). Without it
  // the gateway outruns any client pacing (flow control buffers hundreds of messages).
  auto verifier = Start(
      kVerifierBin,
      [] {
        auto args = VerifierArgs();
        args.push_back("--debug_delay_ms=10");
        return args;
      }(),
      "verifier_slow");
  ASSERT_TRUE(verifier);
  auto gateway = Start(kGatewayBin,
                       {"--model_dir=" + *model_dir_, "--verifier=" + verifier->address(),
                        "--draft=" + draft->address(), "--draft_deadline_ms=10000"},
                       "gateway_draft_restart");
  ASSERT_TRUE(gateway);
  const std::vector<int32_t> prompt = {4, 4, 4};
  const int max_new_tokens = 2000;
  std::thread restarter;
  bool killed = false, fell_back = false;
  int rounds_since_back = -1;
  // The client cancels 10 rounds after the restarted draft proposes again: the rest of the
  // stream would prove nothing more.
  GenerateResult result = Generate(
      gateway->address(), Greedy(prompt, max_new_tokens, 2),
      [&](int message, grpc::ClientContext* context, const v1::GenerateResponse& response) {
        for (const auto& round : response.rounds()) {
          fell_back |= killed && round.fallback() == v1::FALLBACK_DRAFT_UNAVAILABLE;
          if (rounds_since_back >= 0) {
            ++rounds_since_back;
          } else if (fell_back && round.num_proposed() > 0) {
            rounds_since_back = 0;
          }
        }
        if (rounds_since_back >= 10) context->TryCancel();
        if (message != 3) return;
        killed = true;
        draft->Signal(SIGKILL);
        restarter =
            std::thread([&] { draft = Start(kDraftBin, DraftArgs(), "draft_restart", port); });
      });
  restarter.join();
  EXPECT_TRUE(fell_back) << "the kill was not noticed";
  EXPECT_GE(rounds_since_back, 0) << "the restarted draft was not used again in the stream";
  if (rounds_since_back >= 10) {
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::CANCELLED);
  } else {
    EXPECT_TRUE(result.status.ok()) << result.status.error_message();
  }
  // What was streamed is the full model's greedy output, through the kill and the return.
  const std::vector<int32_t> plain = Plain(prompt, max_new_tokens);
  ASSERT_LE(result.ids.size(), plain.size());
  EXPECT_GT(result.ids.size(), 10u);
  EXPECT_EQ(result.ids, std::vector<int32_t>(plain.begin(), plain.begin() + result.ids.size()));
  ASSERT_TRUE(draft);
  // A new request uses it from its first round.
  GenerateResult next = Generate(gateway->address(), Greedy({6, 6}, 24, 3));
  ASSERT_TRUE(next.status.ok());
  EXPECT_GT(next.last.usage().drafted_tokens(), 0);
  EXPECT_TRUE(NoSessionsLeft(gateway->address(), {draft->address()}, {verifier->address()}));
}

// A verifier that comes up after the gateway (pods start in any order) serves the very next
// request: the gateway waits briefly for a channel still in reconnect backoff instead of
// refusing the request with UNAVAILABLE.
TEST_F(ReliabilityTest, VerifierStartedAfterTheGatewayServesTheNextRequest) {
  const int port = PickFreePort();
  auto gateway = Start(kGatewayBin,
                       {"--model_dir=" + *model_dir_, absl::StrCat("--verifier=127.0.0.1:", port)},
                       "gateway_before_verifier");
  ASSERT_TRUE(gateway);
  // Nothing listens yet: refused connects put the channel into backoff.
  GenerateResult early = Generate(gateway->address(), Greedy({1, 2}, 4, 0));
  EXPECT_EQ(early.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  auto verifier = Start(kVerifierBin, VerifierArgs(), "verifier_after_gateway", port);
  ASSERT_TRUE(verifier);
  const std::vector<int32_t> prompt = {1, 2, 3};
  GenerateResult result = Generate(gateway->address(), Greedy(prompt, 8, 0));
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.ids, Plain(prompt, 8));
}

// A draft far slower than the round deadline: every round waits at most about the deadline,
// rounds fall back to the verifier alone, the output is unchanged.
TEST_F(ReliabilityTest, SlowDraftNeverHoldsARoundPastItsDeadline) {
  auto draft = Start(
      kDraftBin,
      [] {
        auto args = DraftArgs();
        args.push_back("--debug_delay_ms=400");
        return args;
      }(),
      "draft_slow");
  ASSERT_TRUE(draft);
  const int deadline_ms = 40;
  auto gateway =
      Start(kGatewayBin,
            {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(),
             "--draft=" + draft->address(), absl::StrCat("--draft_deadline_ms=", deadline_ms)},
            "gateway_slow_draft");
  ASSERT_TRUE(gateway);
  const std::vector<int32_t> prompt = {8, 6, 7, 5, 3, 0, 9};
  const int max_new_tokens = 30;
  const absl::Time start = absl::Now();
  GenerateResult result = Generate(gateway->address(), Greedy(prompt, max_new_tokens, 4));
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.ids, Plain(prompt, max_new_tokens));
  ASSERT_FALSE(result.rounds.empty());
  for (const auto& round : result.rounds) {
    EXPECT_EQ(round.num_proposed(), 0);
    if (round.num_draft_tokens() == 0) continue;  // the last round: K cut by the budget
    EXPECT_EQ(round.fallback(), v1::FALLBACK_DRAFT_DEADLINE);
    // The round's waiting (draft wait + verifier round trip) stays near the deadline, far
    // below the draft's 400 ms per token (slack for a loaded 2-core machine).
    EXPECT_LT(round.network_ms(), deadline_ms + 250) << "round " << round.round();
  }
  // 30 rounds at the draft's pace would take 30 x 400 ms.
  EXPECT_LT(took, absl::Seconds(8)) << took;
  EXPECT_TRUE(NoSessionsLeft(gateway->address(), {draft->address()}, {verifier_->address()}));
}

// SIGTERM on the gateway with a stream in flight: the stream completes (it fits in the grace
// period) and the gateway exits 0. SIGTERM on a verifier replica mid-stream: its grace ends, the
// session moves to the other replica, the output is unchanged.
TEST_F(ReliabilityTest, SigtermDrains) {
  auto gateway = Start(kGatewayBin,
                       {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(),
                        "--draft=" + draft_->address(), "--shutdown_grace_ms=10000"},
                       "gateway_drain");
  ASSERT_TRUE(gateway);
  const std::vector<int32_t> prompt = {1, 1, 2, 3, 5, 8};
  std::thread terminator;
  GenerateResult result =
      Generate(gateway->address(), Greedy(prompt, 200, 2),
               [&](int message, grpc::ClientContext*, const v1::GenerateResponse&) {
                 if (message == 1)
                   terminator = std::thread([&] { gateway->Signal(SIGTERM, absl::Seconds(20)); });
               });
  terminator.join();
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.ids, Plain(prompt, 200));
  EXPECT_FALSE(gateway->running());
  EXPECT_NE(gateway->Log().find("stopped"), std::string::npos);

  auto a = Start(kVerifierBin, VerifierArgs(), "verifier_drain_a");  // grace 1 s
  auto b = Start(kVerifierBin, VerifierArgs(), "verifier_drain_b");
  ASSERT_TRUE(a && b);
  auto two =
      Start(kGatewayBin,
            {"--model_dir=" + *model_dir_, "--verifier=" + a->address() + "," + b->address()},
            "gateway_drain_two");
  ASSERT_TRUE(two);
  std::string survivor;
  std::thread stopper;
  // A slow reader keeps the stream going past the verifier's 1 s grace.
  GenerateResult moved =
      Generate(two->address(), Greedy(prompt, 1200, 0),
               [&](int message, grpc::ClientContext*, const v1::GenerateResponse&) {
                 std::this_thread::sleep_for(std::chrono::milliseconds(3));
                 if (message != 2) return;
                 const bool on_a = VerifierStats(a->address()).active_sessions() == 1;
                 ServiceProcess* stopping = on_a ? a.get() : b.get();
                 survivor = on_a ? b->address() : a->address();
                 stopper = std::thread([stopping] { stopping->Signal(SIGTERM); });
               });
  stopper.join();
  ASSERT_TRUE(moved.status.ok()) << moved.status.error_message() << "\n" << two->Log();
  EXPECT_EQ(moved.ids, Plain(prompt, 1200));
  EXPECT_TRUE(NoSessionsLeft(two->address(), {}, {survivor}));
}

// Bad input through the gRPC door beyond pipeline_test's cases: each gets a clear status.
TEST_F(ReliabilityTest, BadInputsGetClearStatuses) {
  struct Case {
    std::string name;
    v1::GenerateRequest request;
    grpc::StatusCode code;
  };
  std::vector<Case> cases;
  auto add = [&](std::string name, grpc::StatusCode code,
                 const std::function<void(v1::GenerateRequest*)>& change) {
    v1::GenerateRequest request = Greedy({1, 2, 3}, 4, 2);
    change(&request);
    cases.push_back({std::move(name), std::move(request), code});
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  using grpc::StatusCode;
  add("text prompt over --max_prompt_bytes", StatusCode::INVALID_ARGUMENT, [](auto* r) {
    r->clear_prompt_ids();
    r->set_prompt(std::string(2 << 20, 'a'));
  });
  add("text prompt over gRPC's 4 MiB message limit", StatusCode::RESOURCE_EXHAUSTED, [](auto* r) {
    r->clear_prompt_ids();
    r->set_prompt(std::string(5 << 20, 'a'));
  });
  add("text prompt longer than the context", StatusCode::INVALID_ARGUMENT, [](auto* r) {
    r->clear_prompt_ids();
    std::string text;
    for (int i = 0; i < 3000; ++i) text += " word";
    r->set_prompt(text);
  });
  add("id INT32_MAX", StatusCode::INVALID_ARGUMENT,
      [](auto* r) { r->add_prompt_ids(std::numeric_limits<int32_t>::max()); });
  add("id INT32_MIN", StatusCode::INVALID_ARGUMENT,
      [](auto* r) { r->add_prompt_ids(std::numeric_limits<int32_t>::min()); });
  add("temperature NaN", StatusCode::INVALID_ARGUMENT,
      [&](auto* r) { r->mutable_sampling()->set_temperature(nan); });
  add("temperature inf", StatusCode::INVALID_ARGUMENT,
      [&](auto* r) { r->mutable_sampling()->set_temperature(inf); });
  add("temperature -0.5", StatusCode::INVALID_ARGUMENT,
      [](auto* r) { r->mutable_sampling()->set_temperature(-0.5f); });
  add("top_p NaN", StatusCode::INVALID_ARGUMENT,
      [&](auto* r) { r->mutable_sampling()->set_top_p(nan); });
  add("top_p -0.1", StatusCode::INVALID_ARGUMENT,
      [](auto* r) { r->mutable_sampling()->set_top_p(-0.1f); });
  add("top_k INT32_MIN", StatusCode::INVALID_ARGUMENT,
      [](auto* r) { r->mutable_sampling()->set_top_k(std::numeric_limits<int32_t>::min()); });
  add("num_draft_tokens -1", StatusCode::INVALID_ARGUMENT,
      [](auto* r) { r->mutable_speculation()->set_num_draft_tokens(-1); });
  add("max_new_tokens INT32_MAX", StatusCode::INVALID_ARGUMENT,
      [](auto* r) { r->set_max_new_tokens(std::numeric_limits<int32_t>::max()); });
  add("max_new_tokens INT32_MIN", StatusCode::INVALID_ARGUMENT,
      [](auto* r) { r->set_max_new_tokens(std::numeric_limits<int32_t>::min()); });
  add("stop string of 1 MiB", StatusCode::INVALID_ARGUMENT,
      [](auto* r) { r->add_stop(std::string(1 << 20, 'x')); });
  add("17 stop strings", StatusCode::INVALID_ARGUMENT, [](auto* r) {
    for (int i = 0; i < 17; ++i) r->add_stop("s" + std::to_string(i));
  });
  add("prompt of whitespace only is fine", StatusCode::OK, [](auto* r) {
    r->clear_prompt_ids();
    r->set_prompt("   ");
  });
  add("unknown fields are ignored", StatusCode::OK, [](auto* r) {
    r->GetReflection()->MutableUnknownFields(r)->AddVarint(999, 42);
    r->mutable_sampling()
        ->GetReflection()
        ->MutableUnknownFields(r->mutable_sampling())
        ->AddLengthDelimited(77, "junk");
  });
  for (const Case& c : cases) {
    GenerateResult result = Generate(gateway_->address(), c.request);
    EXPECT_EQ(result.status.error_code(), c.code)
        << c.name << ": " << result.status.error_message();
    if (c.code != StatusCode::OK) {
      EXPECT_TRUE(result.ids.empty()) << c.name;
      EXPECT_FALSE(result.status.error_message().empty()) << c.name;
    }
  }
  // max_new_tokens 0 means the gateway's default (64).
  GenerateResult defaulted = Generate(gateway_->address(), Greedy({5, 5}, 0, 2));
  ASSERT_TRUE(defaulted.status.ok());
  EXPECT_EQ(defaulted.last.usage().generated_tokens(), static_cast<int>(Plain({5, 5}, 64).size()));
  EXPECT_TRUE(NoSessionsLeft(gateway_->address(), {draft_->address()}, {verifier_->address()}));
}

// Invalid UTF-8 in a text prompt or a stop string: a clear status, not a crash or INTERNAL.
TEST_F(ReliabilityTest, InvalidUtf8IsRejected) {
  for (const std::string& bad :
       {std::string("abc\xff\xfe"), std::string("\xc3"), std::string("\xed\xa0\x80")}) {
    v1::GenerateRequest request = Greedy({}, 4, 1);
    request.set_prompt(bad);
    GenerateResult result = Generate(gateway_->address(), request);
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << result.status.error_message();
    request = Greedy({1, 2}, 4, 1);
    request.add_stop(bad);
    result = Generate(gateway_->address(), request);
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << result.status.error_message();
  }
  // The gateway is still fine.
  EXPECT_TRUE(Generate(gateway_->address(), Greedy({1, 2}, 4, 1)).status.ok());
}

// A client that never reads its stream: backpressure holds the session at the network's
// buffers, the gateway's memory stays bounded, and the session ends (and is released
// everywhere) when the client goes or its deadline (here the gateway's default) passes.
TEST_F(ReliabilityTest, ClientThatNeverReadsStaysBounded) {
  auto gateway = Start(kGatewayBin,
                       {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(),
                        "--draft=" + draft_->address(), "--default_deadline_ms=3000"},
                       "gateway_noread");
  ASSERT_TRUE(gateway);
  const int64_t rss_before = RssKib(gateway->pid());
  auto stub = v1::Gateway::NewStub(Channel(gateway->address()));
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>>> readers;
  for (int i = 0; i < 8; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());  // no deadline
    v1::GenerateRequest request = Greedy({static_cast<int32_t>(i + 1), 2}, 4000, 0);
    request.set_max_new_tokens(4000);
    readers.push_back(stub->Generate(contexts.back().get(), request));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const int64_t rss_during = RssKib(gateway->pid());
  EXPECT_LT(rss_during - rss_before, 64 * 1024 + kSanitizerSlackKib)
      << "KiB: before " << rss_before << ", during " << rss_during;
  // The gateway's 3 s default deadline ends them though nobody reads.
  EXPECT_TRUE(NoSessionsLeft(gateway->address(), {draft_->address()}, {verifier_->address()}));
  for (size_t i = 0; i < readers.size(); ++i) {
    v1::GenerateResponse response;
    while (readers[i]->Read(&response)) {
    }
    const grpc::Status status = readers[i]->Finish();
    EXPECT_TRUE(status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                status.error_code() == grpc::StatusCode::CANCELLED ||
                status.error_code() == grpc::StatusCode::OK)
        << status.error_code() << " " << status.error_message();
  }
  EXPECT_LT(RssKib(gateway->pid()) - rss_before, 64 * 1024 + kSanitizerSlackKib);
}

// A client process killed mid-stream (a real disconnect, not a cancellation): the gateway
// notices and both services drop the session.
TEST_F(ReliabilityTest, ClientKilledMidStreamLeavesNoSession) {
  const int64_t abandoned = VerifierStats(verifier_->address()).sessions_abandoned();
  auto client =
      ServiceProcess::StartClient(kLoadgenBin,
                                  {"--server=" + gateway_->address(), "--streams=4",
                                   "--duration_s=30", "--max_new_tokens=2000", "--k=2", "--quiet"},
                                  *dir_ + "/client_killed.log");
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE(Eventually([&] { return VerifierStats(verifier_->address()).active_sessions() > 0; }))
      << (*client)->Log();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  (*client)->Signal(SIGKILL);
  EXPECT_TRUE(NoSessionsLeft(gateway_->address(), {draft_->address()}, {verifier_->address()}));
  EXPECT_GT(VerifierStats(verifier_->address()).sessions_abandoned(), abandoned);
}

// 1,000 streams started at once from 4 threads and cancelled: each ends with a clear status,
// no session is left on any service, gateway memory is back near where it was, and the gateway
// still serves.
TEST_F(ReliabilityTest, ThousandConcurrentCancellations) {
  const int64_t rss_before = RssKib(gateway_->pid());
  constexpr int kThreads = 4, kPerThread = 250;
  std::mutex mu;
  std::map<grpc::StatusCode, int> codes;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto stub = v1::Gateway::NewStub(Channel(gateway_->address()));
      std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
      std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>>> readers;
      for (int i = 0; i < kPerThread; ++i) {
        contexts.push_back(std::make_unique<grpc::ClientContext>());
        contexts.back()->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        readers.push_back(stub->Generate(
            contexts.back().get(), Greedy({static_cast<int32_t>(t * kPerThread + i), 1}, 500, 2)));
      }
      for (auto& context : contexts) context->TryCancel();
      for (auto& reader : readers) {
        v1::GenerateResponse response;
        while (reader->Read(&response)) {
        }
        const grpc::StatusCode code = reader->Finish().error_code();
        std::lock_guard<std::mutex> lock(mu);
        ++codes[code];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  int total = 0;
  for (const auto& [code, n] : codes) {
    total += n;
    EXPECT_TRUE(code == grpc::StatusCode::CANCELLED || code == grpc::StatusCode::OK ||
                code == grpc::StatusCode::RESOURCE_EXHAUSTED)
        << "status " << code << " x" << n;
  }
  EXPECT_EQ(total, kThreads * kPerThread);
  EXPECT_TRUE(NoSessionsLeft(gateway_->address(), {draft_->address()}, {verifier_->address()}));
  GenerateResult after = Generate(gateway_->address(), Greedy({1, 2, 3}, 8, 2));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_LT(RssKib(gateway_->pid()) - rss_before, 128 * 1024 + kSanitizerSlackKib)
      << "KiB before " << rss_before << ", after " << RssKib(gateway_->pid());
}

// The limits are flags and GetInfo shows them.
TEST_F(ReliabilityTest, LimitsAreInGetInfo) {
  auto gateway = Start(
      kGatewayBin,
      {"--model_dir=" + *model_dir_, "--verifier=" + verifier_->address(), "--max_sessions=7",
       "--max_new_tokens_cap=99", "--default_deadline_ms=12345", "--default_max_new_tokens=11",
       "--verifier_timeout_ms=2345", "--max_prompt_bytes=5000"},
      "gateway_limits");
  ASSERT_TRUE(gateway);
  auto info = GatewayInfo(gateway->address());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->max_sessions(), 7);
  EXPECT_EQ(info->max_new_tokens_cap(), 99);
  EXPECT_EQ(info->default_deadline_ms(), 12345);
  EXPECT_EQ(info->default_max_new_tokens(), 11);
  EXPECT_EQ(info->verifier_timeout_ms(), 2345);
  EXPECT_EQ(info->max_prompt_bytes(), 5000);
  EXPECT_EQ(info->active_sessions(), 0);
  ASSERT_EQ(info->verifier_replicas_size(), 1);
  EXPECT_EQ(info->verifier_replicas(0).address(), verifier_->address());
  EXPECT_EQ(info->draft_replicas_size(), 0);
  GenerateResult capped = Generate(gateway->address(), Greedy({1, 2}, 100, 0));
  EXPECT_EQ(capped.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  GenerateResult defaulted = Generate(gateway->address(), Greedy({1, 2}, 0, 0));
  ASSERT_TRUE(defaulted.status.ok());
  EXPECT_EQ(defaulted.ids, Plain({1, 2}, 11));
}

}  // namespace
}  // namespace specdec
