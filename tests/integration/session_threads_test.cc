// Draft and verifier serve session streams on gRPC's callback API: a stream takes no thread, and
// `--session_threads` workers run the model work of all of them. On real processes, 200 streams
// (50x the workers) are open at once, each driven through prefill, one step (verify / propose)
// and release with every request of a phase in flight together; the service's thread count
// stays under a bound that does not depend on the stream count, and every stream gets exactly
// the answers the same requests get on a lone stream. And SIGTERM still ends such a process
// cleanly while its streams are open and its workers are busy.
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/procfs/proc_status.h"
#include "gtest/gtest.h"
#include "specdec/v1/draft.grpc.pb.h"
#include "specdec/v1/verifier.grpc.pb.h"
#include "tests/integration/service_process.h"
#include "tests/integration/test_checkpoint.h"

namespace specdec {
namespace {

using ::specdec::testing::ServiceProcess;
using ::specdec::testing::TinyCheckpointDir;

const std::string kBin = SPECDEC_BINARY_DIR;
constexpr int kStreams = 200;
constexpr int kSessionThreads = 4;
// gRPC's own threads, the compute and batching threads, the workers: a few dozen at most.
// One thread per stream would be over 200.
constexpr int64_t kMaxThreads = 64;
constexpr int kPrompts = 4;  // distinct prompts; stream s uses prompt s % kPrompts

// The prompt of variant `v`: three committed tokens in the prefill, the fourth pending.
std::vector<int32_t> Prompt(int v) { return {5 + v, 6 + 2 * v, 7 + 3 * v, 11 + v}; }

template <typename Request>
Request Prefill(const std::string& id, int v) {
  Request request;
  request.set_session_id(id);
  const std::vector<int32_t> prompt = Prompt(v);
  request.set_committed_length(static_cast<int64_t>(prompt.size()));
  for (size_t i = 0; i + 1 < prompt.size(); ++i) {
    request.mutable_prefill()->mutable_tokens()->add_tokens(prompt[i]);
  }
  request.mutable_prefill()->mutable_sampling()->set_top_p(1.0f);  // greedy
  return request;
}

template <typename Request>
Request Release(const std::string& id) {
  Request request;
  request.set_session_id(id);
  request.set_committed_length(4);
  request.mutable_release();
  return request;
}

// The pending token: TokenSpan [3, +1) with committed_length 4.
void SetPending(int v, v1::TokenSpan* span) {
  span->set_start_position(3);
  span->add_tokens(Prompt(v)[3]);
}

v1::VerifierRequest VerifyStep(const std::string& id, int v) {
  v1::VerifierRequest request;
  request.set_session_id(id);
  request.set_committed_length(4);
  SetPending(v, request.mutable_verify()->mutable_tokens());
  for (int32_t token : {20 + v, 21, 22}) request.mutable_verify()->add_drafts()->set_token(token);
  return request;
}

v1::DraftRequest ProposeStep(const std::string& id, int v) {
  v1::DraftRequest request;
  request.set_session_id(id);
  request.set_committed_length(4);
  SetPending(v, request.mutable_propose()->mutable_tokens());
  request.mutable_propose()->set_num_draft_tokens(3);
  return request;
}

// What a step answered, without its timings: what must not depend on the other streams.
std::string Answer(v1::VerifierResponse response) {
  EXPECT_TRUE(response.has_verified()) << response.DebugString();
  response.mutable_verified()->clear_compute_ms();
  response.clear_session_id();
  return response.SerializeAsString();
}
std::string Answer(v1::DraftResponse response) {
  EXPECT_TRUE(response.has_token()) << response.DebugString();
  response.mutable_token()->clear_compute_ms();
  response.clear_session_id();
  return response.SerializeAsString();
}

// The verifier's step answers once, the draft's once per proposed token.
int ResponsesPerStep(const v1::VerifierRequest&) { return 1; }
int ResponsesPerStep(const v1::DraftRequest& request) {
  return request.propose().num_draft_tokens();
}

template <typename Service, typename Request, typename Response>
class ManyStreams {
 public:
  using Step = Request (*)(const std::string&, int);

  ManyStreams(const ServiceProcess& process, Step step)
      : process_(process),
        step_(step),
        stub_(Service::NewStub(
            grpc::CreateChannel(process.address(), grpc::InsecureChannelCredentials()))) {}

  // Prefill, step, release of one stream at a time: the answers of a lone stream.
  void RunLone() {
    for (int v = 0; v < kPrompts; ++v) {
      Open(1);
      streams_[0].id = absl::StrCat("lone-", v);
      lone_.push_back(RunPhases({v}).at(0));
      streams_.clear();
    }
  }

  // All streams at once; returns the most threads seen while they were open.
  int64_t RunAll() {
    Open(kStreams);
    std::vector<int> variants;
    for (int s = 0; s < kStreams; ++s) variants.push_back(s % kPrompts);
    const std::vector<std::string> answers = RunPhases(variants);
    for (int s = 0; s < kStreams; ++s) {
      EXPECT_EQ(answers[s], lone_[s % kPrompts]) << "stream " << s << " differs from a lone run";
    }
    return most_threads_;
  }

  v1::GetStatsResponse Stats() {
    grpc::ClientContext context;
    v1::GetStatsResponse stats;
    EXPECT_TRUE(stub_->GetStats(&context, v1::GetStatsRequest(), &stats).ok());
    return stats;
  }

 private:
  struct Stream {
    std::string id;
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReaderWriter<Request, Response>> rw;
  };

  void Open(int n) {
    for (int s = 0; s < n; ++s) {
      Stream stream;
      stream.id = absl::StrCat("stream-", s);
      stream.context = std::make_unique<grpc::ClientContext>();
      stream.rw = stub_->Session(stream.context.get());
      streams_.push_back(std::move(stream));
    }
  }

  void SampleThreads() { most_threads_ = std::max(most_threads_, ThreadCount(process_.pid())); }

  // Each phase writes every stream's request before reading any answer, so all of them are
  // in flight together. Returns each stream's step answers, concatenated.
  std::vector<std::string> RunPhases(const std::vector<int>& variants) {
    const size_t n = streams_.size();
    for (size_t s = 0; s < n; ++s) {
      EXPECT_TRUE(streams_[s].rw->Write(Prefill<Request>(streams_[s].id, variants[s])));
    }
    SampleThreads();
    for (size_t s = 0; s < n; ++s) {
      Response response;
      EXPECT_TRUE(streams_[s].rw->Read(&response)) << streams_[s].id;
      EXPECT_TRUE(response.has_prefilled()) << response.DebugString();
    }
    SampleThreads();
    if (n == kStreams) EXPECT_EQ(Stats().active_sessions(), kStreams);
    std::vector<std::string> answers(n);
    std::vector<int> expected(n);
    for (size_t s = 0; s < n; ++s) {
      const Request step = step_(streams_[s].id, variants[s]);
      expected[s] = ResponsesPerStep(step);
      EXPECT_TRUE(streams_[s].rw->Write(step));
    }
    SampleThreads();
    for (size_t s = 0; s < n; ++s) {
      for (int i = 0; i < expected[s]; ++i) {
        Response response;
        EXPECT_TRUE(streams_[s].rw->Read(&response)) << streams_[s].id;
        answers[s] += Answer(response);
      }
    }
    SampleThreads();
    for (size_t s = 0; s < n; ++s) {
      EXPECT_TRUE(streams_[s].rw->Write(Release<Request>(streams_[s].id)));
    }
    for (size_t s = 0; s < n; ++s) {
      Response response;
      EXPECT_TRUE(streams_[s].rw->Read(&response));
      EXPECT_TRUE(response.has_released());
      streams_[s].rw->WritesDone();
      const grpc::Status status = streams_[s].rw->Finish();
      EXPECT_TRUE(status.ok()) << streams_[s].id << ": " << status.error_message();
    }
    return answers;
  }

  const ServiceProcess& process_;
  const Step step_;
  std::unique_ptr<typename Service::Stub> stub_;
  std::vector<Stream> streams_;
  std::vector<std::string> lone_;  // per prompt variant
  int64_t most_threads_ = 0;
};

class SessionThreadsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto checkpoint = TinyCheckpointDir::Create("session_threads");
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    checkpoint_ = checkpoint->release();
  }
  static void TearDownTestSuite() { delete checkpoint_; }

  static std::unique_ptr<ServiceProcess> Start(const std::string& binary, const std::string& name,
                                               std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--model_dir=" + checkpoint_->model_dir(), "--device=cpu",
                                     "--threads=1", "--max_sessions=256",
                                     absl::StrCat("--session_threads=", kSessionThreads)};
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = ServiceProcess::Start(binary, args, checkpoint_->dir() + "/" + name + ".log");
    EXPECT_TRUE(process.ok()) << process.status();
    return process.ok() ? *std::move(process) : nullptr;
  }

  template <typename Service, typename Request, typename Response>
  static void ExpectFewThreads(const ServiceProcess& process,
                               Request (*step)(const std::string&, int)) {
    const int64_t idle = ThreadCount(process.pid());
    ManyStreams<Service, Request, Response> streams(process, step);
    streams.RunLone();
    const int64_t most = streams.RunAll();
    std::printf("%s: %lld threads idle, at most %lld with %d streams open\n",
                process.address().c_str(), static_cast<long long>(idle),
                static_cast<long long>(most), kStreams);
    EXPECT_GT(most, 0);
    EXPECT_LT(most, kMaxThreads) << "threads grow with the streams";
    const v1::GetStatsResponse stats = streams.Stats();
    EXPECT_EQ(stats.active_sessions(), 0);
    EXPECT_EQ(stats.sessions_released(), kStreams + kPrompts);
    EXPECT_EQ(stats.sessions_abandoned(), 0);
  }

  static TinyCheckpointDir* checkpoint_;
};

TinyCheckpointDir* SessionThreadsTest::checkpoint_ = nullptr;

TEST_F(SessionThreadsTest, VerifierServesManyStreamsOnFewThreads) {
  // Room in the KV pool for every stream (the default holds 8 full-length sequences).
  auto verifier =
      Start(kBin + "/services/verifier/specdec-verifier", "verifier", {"--kv_pool_blocks=2048"});
  ASSERT_NE(verifier, nullptr);
  ExpectFewThreads<v1::Verifier, v1::VerifierRequest, v1::VerifierResponse>(*verifier, &VerifyStep);
}

TEST_F(SessionThreadsTest, DraftServesManyStreamsOnFewThreads) {
  auto draft = Start(kBin + "/services/draft/specdec-draft", "draft");
  ASSERT_NE(draft, nullptr);
  ExpectFewThreads<v1::Draft, v1::DraftRequest, v1::DraftResponse>(*draft, &ProposeStep);
}

// Streams that are idle, in a step (a verification held by --debug_delay_ms) and queued behind
// the busy workers when SIGTERM comes (the grace lets the steps start): after it the server
// cancels them, the steps notice, every stream ends with an error, and the process exits 0
// instead of waiting a minute.
TEST_F(SessionThreadsTest, SigtermEndsOpenStreamsWithBusyWorkers) {
  auto verifier = Start(kBin + "/services/verifier/specdec-verifier", "verifier_sigterm",
                        {"--debug_delay_ms=60000", "--shutdown_grace_ms=200"});
  ASSERT_NE(verifier, nullptr);
  auto stub = v1::Verifier::NewStub(
      grpc::CreateChannel(verifier->address(), grpc::InsecureChannelCredentials()));
  constexpr int kOpen = 20, kVerifying = 10;  // 10 steps on 4 workers: 4 running, 6 queued
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<v1::VerifierRequest, v1::VerifierResponse>>>
      streams;
  for (int s = 0; s < kOpen; ++s) {
    const std::string id = absl::StrCat("sigterm-", s);
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(stub->Session(contexts.back().get()));
    ASSERT_TRUE(streams[s]->Write(Prefill<v1::VerifierRequest>(id, s % kPrompts)));
    v1::VerifierResponse response;
    ASSERT_TRUE(streams[s]->Read(&response));
  }
  // Only now: a busy pool would hold the prefills of the streams after the first four.
  for (int s = 0; s < kVerifying; ++s) {
    ASSERT_TRUE(streams[s]->Write(VerifyStep(absl::StrCat("sigterm-", s), s % kPrompts)));
  }
  const int status = verifier->Signal(SIGTERM, absl::Seconds(30));
  ASSERT_TRUE(WIFEXITED(status)) << "killed: " << verifier->Log();
  EXPECT_EQ(WEXITSTATUS(status), 0) << verifier->Log();
  EXPECT_NE(verifier->Log().find("verifier stopped"), std::string::npos) << verifier->Log();
  for (int s = 0; s < kOpen; ++s) {
    v1::VerifierResponse response;
    EXPECT_FALSE(streams[s]->Read(&response)) << "stream " << s << " got an answer";
    EXPECT_FALSE(streams[s]->Finish().ok()) << "stream " << s;
  }
}

}  // namespace
}  // namespace specdec
