// The draft's and the verifier's admission limit (--max_sessions), on real processes: one
// session stream past the limit is refused with RESOURCE_EXHAUSTED and a message that names the
// flag, the refusal is counted in GetStats, the sessions already open are untouched, and a slot
// freed by a release is usable again.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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

// One session stream of a draft or verifier (their requests share the fields used here).
template <typename Service, typename Request, typename Response>
class SessionStream {
 public:
  explicit SessionStream(const std::string& address)
      : stub_(Service::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))),
        stream_(stub_->Session(&context_)) {}

  // Prefills `id` with three tokens; the stream's status when the service refused it.
  grpc::Status Open(const std::string& id) {
    Request request;
    request.set_session_id(id);
    request.set_committed_length(4);
    auto* tokens = request.mutable_prefill()->mutable_tokens();
    for (int32_t t : {5, 6, 7}) tokens->add_tokens(t);
    request.mutable_prefill()->mutable_sampling()->set_top_p(1.0f);  // greedy
    Response response;
    if (stream_->Write(request) && stream_->Read(&response)) return grpc::Status::OK;
    return Finish();
  }

  grpc::Status Release(const std::string& id) {
    Request request;
    request.set_session_id(id);
    request.set_committed_length(4);
    request.mutable_release();
    Response response;
    EXPECT_TRUE(stream_->Write(request));
    EXPECT_TRUE(stream_->Read(&response));
    return Finish();
  }

 private:
  grpc::Status Finish() {
    stream_->WritesDone();
    return stream_->Finish();
  }

  std::unique_ptr<typename Service::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<Request, Response>> stream_;
};

template <typename Service>
v1::GetStatsResponse Stats(const std::string& address) {
  auto stub = Service::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::GetStatsResponse stats;
  EXPECT_TRUE(stub->GetStats(&context, v1::GetStatsRequest(), &stats).ok());
  return stats;
}

class AdmissionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto checkpoint = TinyCheckpointDir::Create("admission");
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    checkpoint_ = checkpoint->release();
  }
  static void TearDownTestSuite() { delete checkpoint_; }

  static std::unique_ptr<ServiceProcess> Start(const std::string& binary, const std::string& name,
                                               int max_sessions) {
    auto process = ServiceProcess::Start(
        binary,
        {"--model_dir=" + checkpoint_->model_dir(), "--device=cpu", "--threads=1",
         absl::StrCat("--max_sessions=", max_sessions)},
        checkpoint_->dir() + "/" + name + ".log");
    EXPECT_TRUE(process.ok()) << process.status();
    return process.ok() ? *std::move(process) : nullptr;
  }

  // Two sessions fit, the third is refused; after a release a new one fits again.
  template <typename Service, typename Request, typename Response>
  static void ExpectLimitOfTwo(const std::string& address, const std::string& role) {
    using Stream = SessionStream<Service, Request, Response>;
    Stream a(address), b(address), c(address), d(address);
    const grpc::Status opened_a = a.Open("a"), opened_b = b.Open("b");
    ASSERT_TRUE(opened_a.ok()) << opened_a.error_message();
    ASSERT_TRUE(opened_b.ok()) << opened_b.error_message();
    const grpc::Status refused = c.Open("c");
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
    EXPECT_NE(refused.error_message().find("--max_sessions"), std::string::npos)
        << refused.error_message();
    EXPECT_NE(refused.error_message().find(role), std::string::npos) << refused.error_message();
    v1::GetStatsResponse stats = Stats<Service>(address);
    EXPECT_EQ(stats.active_sessions(), 2);
    EXPECT_EQ(stats.sessions_refused(), 1);
    EXPECT_TRUE(a.Release("a").ok());
    EXPECT_TRUE(d.Open("d").ok());
    EXPECT_TRUE(b.Release("b").ok());
    EXPECT_TRUE(d.Release("d").ok());
    EXPECT_EQ(Stats<Service>(address).sessions_refused(), 1);
  }

  static TinyCheckpointDir* checkpoint_;
};

TinyCheckpointDir* AdmissionTest::checkpoint_ = nullptr;

TEST_F(AdmissionTest, VerifierRefusesSessionsPastItsLimit) {
  auto verifier = Start(kBin + "/services/verifier/specdec-verifier", "verifier", 2);
  ASSERT_NE(verifier, nullptr);
  ExpectLimitOfTwo<v1::Verifier, v1::VerifierRequest, v1::VerifierResponse>(verifier->address(),
                                                                           "verifier");
}

TEST_F(AdmissionTest, DraftRefusesSessionsPastItsLimit) {
  auto draft = Start(kBin + "/services/draft/specdec-draft", "draft", 2);
  ASSERT_NE(draft, nullptr);
  ExpectLimitOfTwo<v1::Draft, v1::DraftRequest, v1::DraftResponse>(draft->address(), "draft");
}

TEST_F(AdmissionTest, ZeroSessionsIsRefusedAtStartup) {
  auto process = ServiceProcess::Start(
      kBin + "/services/verifier/specdec-verifier",
      {"--model_dir=" + checkpoint_->model_dir(), "--device=cpu", "--max_sessions=0"},
      checkpoint_->dir() + "/verifier_zero.log", absl::Seconds(20));
  ASSERT_FALSE(process.ok());
  EXPECT_NE(std::string(process.status().message()).find("--max_sessions must be >= 1"),
            std::string::npos)
      << process.status();
}

}  // namespace
}  // namespace specdec
