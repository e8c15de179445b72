// SessionReactor on a real gRPC server over an in-process channel (no socket), with a fake
// handler: order of requests and responses, every way a stream ends (release, handler error,
// the client's half-close, cancellation, server shutdown) ends the handler exactly once and
// deletes the reactor, and many streams share a pool of two threads.
#include "services/common/session_reactor.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "specdec/v1/verifier.grpc.pb.h"

namespace specdec {
namespace {

using Request = v1::VerifierRequest;
using Response = v1::VerifierResponse;

// What the fake handlers of one server did.
struct Record {
  std::atomic<int> started{0};
  std::atomic<int> blocked{0};  // handlers waiting for a cancellation now
  std::atomic<int> destroyed{0};
  absl::Mutex mu;
  std::vector<absl::Status> ends ABSL_GUARDED_BY(mu);  // End's statuses, in order

  std::vector<absl::Status> Ends() {
    absl::MutexLock lock(&mu);
    return ends;
  }
  // Bounded waits: they fail a test that would otherwise hang, they measure nothing.
  bool WaitFor(const std::atomic<int>& counter, int value) {
    const absl::Time until = absl::Now() + absl::Seconds(30);
    while (counter.load() < value && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
    return counter.load() >= value;
  }
};

// Fake session logic driven by the request: session_id "error" fails the step, "block" waits
// until the stream is cancelled; a release ends the stream; otherwise `round` responses echo
// the request's committed_length, numbered in their `round`.
class FakeHandler final : public SessionHandler<Request, Response> {
 public:
  explicit FakeHandler(Record* record) : record_(record) { ++record_->started; }
  ~FakeHandler() override { ++record_->destroyed; }

  absl::StatusOr<SessionNext> Handle(const Request& request,
                                     SessionOutput<Response>& out) override {
    EXPECT_FALSE(in_handle_.exchange(true)) << "two steps of one stream at once";
    EXPECT_FALSE(ended_) << "a step after End";
    absl::StatusOr<SessionNext> next = Step(request, out);
    in_handle_ = false;
    return next;
  }

  void End(const absl::Status& status) override {
    EXPECT_FALSE(ended_) << "End twice";
    EXPECT_FALSE(in_handle_.load());
    ended_ = true;
    absl::MutexLock lock(&record_->mu);
    record_->ends.push_back(status);
  }

 private:
  absl::StatusOr<SessionNext> Step(const Request& request, SessionOutput<Response>& out) {
    if (request.session_id() == "error") return absl::InvalidArgumentError("bad step");
    if (request.session_id() == "block") {
      ++record_->blocked;
      const absl::Time until = absl::Now() + absl::Seconds(30);
      while (!out.IsCancelled() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
      --record_->blocked;
      return absl::CancelledError("cancelled while blocked");
    }
    for (int64_t i = 0; i < request.round(); ++i) {
      Response response;
      response.set_committed_length(request.committed_length());
      response.set_round(i);
      out.Write(std::move(response));
    }
    if (request.has_release()) return SessionNext::kEnd;
    return SessionNext::kRead;
  }

  Record* const record_;
  std::atomic<bool> in_handle_{false};
  bool ended_ = false;
};

class FakeVerifier final : public v1::Verifier::WithCallbackMethod_Session<v1::Verifier::Service> {
 public:
  FakeVerifier(int threads, Record* record) : record_(record), workers_(threads) {}

  grpc::ServerBidiReactor<Request, Response>* Session(grpc::CallbackServerContext*) override {
    return new SessionReactor<Request, Response>(&workers_, std::make_unique<FakeHandler>(record_));
  }

 private:
  Record* const record_;
  SessionRunner workers_;
};

Request Step(const std::string& id, int64_t committed_length, int64_t responses) {
  Request request;
  request.set_session_id(id);
  request.set_committed_length(committed_length);
  request.set_round(responses);
  request.mutable_verify();
  return request;
}

Request Release(int64_t responses) {
  Request request = Step("s", 0, responses);
  request.mutable_release();
  return request;
}

class SessionReactorTest : public ::testing::Test {
 protected:
  void StartServer(int threads) {
    service_ = std::make_unique<FakeVerifier>(threads, &record_);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Verifier::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  Record record_;
  std::unique_ptr<FakeVerifier> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Verifier::Stub> stub_;
};

TEST_F(SessionReactorTest, StepsAndResponsesStayInOrderAndReleaseFinishesOk) {
  StartServer(2);
  grpc::ClientContext context;
  auto stream = stub_->Session(&context);
  for (int64_t step = 1; step <= 5; ++step) {
    ASSERT_TRUE(stream->Write(Step("s", step, step)));
    for (int64_t i = 0; i < step; ++i) {
      Response response;
      ASSERT_TRUE(stream->Read(&response));
      EXPECT_EQ(response.committed_length(), step);
      EXPECT_EQ(response.round(), i);
    }
  }
  ASSERT_TRUE(stream->Write(Release(2)));
  Response response;
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.round(), 1);
  EXPECT_FALSE(stream->Read(&response));  // the server ended the stream after the release
  EXPECT_TRUE(stream->Finish().ok());
  ASSERT_TRUE(record_.WaitFor(record_.destroyed, 1));
  ASSERT_EQ(record_.Ends().size(), 1u);
  EXPECT_TRUE(record_.Ends()[0].ok());
}

TEST_F(SessionReactorTest, PipelinedRequestsRunOneAtATimeInOrder) {
  StartServer(4);
  grpc::ClientContext context;
  auto stream = stub_->Session(&context);
  // The in-process transport buffers nothing: a write completes when the other side reads, so
  // the client writes on its own thread while this one reads.
  std::thread writer([&stream] {
    for (int64_t step = 1; step <= 20; ++step) EXPECT_TRUE(stream->Write(Step("s", step, 3)));
    stream->WritesDone();
  });
  for (int64_t step = 1; step <= 20; ++step) {
    for (int64_t i = 0; i < 3; ++i) {
      Response response;
      ASSERT_TRUE(stream->Read(&response));
      EXPECT_EQ(response.committed_length(), step);
      EXPECT_EQ(response.round(), i);
    }
  }
  writer.join();
  EXPECT_TRUE(stream->Finish().ok());  // the client's half-close ends the stream with OK
  ASSERT_TRUE(record_.WaitFor(record_.destroyed, 1));
  EXPECT_TRUE(record_.Ends().at(0).ok());
}

TEST_F(SessionReactorTest, HandlerErrorEndsTheStreamWithItsStatusAfterEarlierResponses) {
  StartServer(2);
  grpc::ClientContext context;
  auto stream = stub_->Session(&context);
  ASSERT_TRUE(stream->Write(Step("s", 7, 1)));
  Response response;
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(stream->Write(Step("error", 8, 0)));
  EXPECT_FALSE(stream->Read(&response));
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "bad step");
  ASSERT_TRUE(record_.WaitFor(record_.destroyed, 1));
  ASSERT_EQ(record_.Ends().size(), 1u);
  EXPECT_EQ(record_.Ends()[0].code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SessionReactorTest, ClientCancellationReachesABlockedHandler) {
  StartServer(2);
  grpc::ClientContext context;
  auto stream = stub_->Session(&context);
  ASSERT_TRUE(stream->Write(Step("block", 1, 0)));
  ASSERT_TRUE(record_.WaitFor(record_.blocked, 1));
  context.TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(record_.WaitFor(record_.destroyed, 1));
  ASSERT_EQ(record_.Ends().size(), 1u);
  EXPECT_EQ(record_.Ends()[0].code(), absl::StatusCode::kCancelled);
}

TEST_F(SessionReactorTest, ClientCancellationBetweenStepsEndsTheHandler) {
  StartServer(2);
  grpc::ClientContext context;
  auto stream = stub_->Session(&context);
  ASSERT_TRUE(stream->Write(Step("s", 1, 1)));
  Response response;
  ASSERT_TRUE(stream->Read(&response));
  context.TryCancel();  // after a step that succeeded: the next read fails
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(record_.WaitFor(record_.destroyed, 1));
  ASSERT_EQ(record_.Ends().size(), 1u);
  EXPECT_TRUE(record_.Ends()[0].ok()) << "no step failed";
}

// More streams than threads: a stream holds a thread only while a step runs.
TEST_F(SessionReactorTest, ManyStreamsShareTwoThreads) {
  StartServer(2);
  constexpr int kStreams = 64;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<Request, Response>>> streams;
  for (int s = 0; s < kStreams; ++s) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(stub_->Session(contexts.back().get()));
  }
  for (int round = 1; round <= 3; ++round) {
    for (int s = 0; s < kStreams; ++s) ASSERT_TRUE(streams[s]->Write(Step("s", s * 10 + round, 2)));
    for (int s = 0; s < kStreams; ++s) {
      for (int i = 0; i < 2; ++i) {
        Response response;
        ASSERT_TRUE(streams[s]->Read(&response));
        EXPECT_EQ(response.committed_length(), s * 10 + round);
      }
    }
  }
  for (int s = 0; s < kStreams; ++s) {
    ASSERT_TRUE(streams[s]->Write(Release(0)));
    EXPECT_TRUE(streams[s]->Finish().ok());
  }
  ASSERT_TRUE(record_.WaitFor(record_.destroyed, kStreams));
  for (const absl::Status& end : record_.Ends()) EXPECT_TRUE(end.ok()) << end;
}

// Shutdown cancels the open calls: a blocked step and a stream waiting for its next request
// both end, and by the time Shutdown returns every reactor is gone (nothing runs after it on
// the service it used).
TEST_F(SessionReactorTest, ServerShutdownEndsOpenStreams) {
  StartServer(2);
  grpc::ClientContext idle_context, blocked_context;
  auto idle = stub_->Session(&idle_context);
  auto blocked = stub_->Session(&blocked_context);
  ASSERT_TRUE(idle->Write(Step("s", 1, 1)));
  Response response;
  ASSERT_TRUE(idle->Read(&response));
  ASSERT_TRUE(blocked->Write(Step("block", 1, 0)));
  ASSERT_TRUE(record_.WaitFor(record_.blocked, 1));
  server_->Shutdown(std::chrono::system_clock::now());
  EXPECT_EQ(record_.destroyed.load(), 2);
  EXPECT_EQ(record_.Ends().size(), 2u);
  EXPECT_FALSE(idle->Finish().ok());
  EXPECT_FALSE(blocked->Finish().ok());
  server_.reset();
}

}  // namespace
}  // namespace specdec
