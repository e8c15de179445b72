// The gateway's ends of the per-session streams to the verifier and the draft, on gRPC's
// callback API: no thread per stream (the session's own runner thread waits on a stream only
// while a call of the round is in flight, and never longer than its bound). Their contexts
// derive from the client's call, so a client's cancellation or deadline reaches both services,
// which then drop the session's cache. Every wait has a bound, past which the call is cancelled,
// so a hung or unreachable replica never hangs a session.
#ifndef SPECDEC_SERVICES_GATEWAY_BACKEND_STREAMS_H_
#define SPECDEC_SERVICES_GATEWAY_BACKEND_STREAMS_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/gateway/session_backends.h"
#include "specdec/v1/draft.grpc.pb.h"
#include "specdec/v1/verifier.grpc.pb.h"

namespace specdec {

// One client bidi stream as a reactor: reads run continuously into a queue, at most one write is
// in flight, and the owner's thread waits for either with a deadline. The owner must call
// Shutdown before destroying it (it waits for gRPC's OnDone).
template <typename Request, typename Response>
class ClientStreamCall : public grpc::ClientBidiReactor<Request, Response> {
 public:
  explicit ClientStreamCall(std::unique_ptr<grpc::ClientContext> context)
      : context_(std::move(context)) {}
  ~ClientStreamCall() override = default;

  grpc::ClientContext* context() { return context_.get(); }
  // After the stub bound the reactor (stub->async()->Session(context(), this)).
  void Start() {
    this->AddHold();  // writes start from the session's thread: no OnDone before Shutdown
    this->StartRead(&incoming_);
    this->StartCall();
  }

  // Starts writing `request` once the previous write completed, waiting for that until
  // `deadline`. False when the stream is broken or the previous write did not complete in time.
  bool Write(const Request& request, absl::Time deadline) {
    {
      absl::MutexLock lock(&mu_);
      auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writing_; };
      if (!mu_.AwaitWithDeadline(absl::Condition(&idle), deadline) || write_failed_ || shut_) {
        return false;
      }
      outgoing_ = request;
      writing_ = true;
    }
    this->StartWrite(&outgoing_);
    return true;
  }
  using ReadResult = DraftLink::ReadResult;
  // The next message, waiting until `deadline`.
  ReadResult Read(Response* response, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !queue_.empty() || read_closed_;
    };
    mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    if (!queue_.empty()) {
      *response = std::move(queue_.front());
      queue_.pop_front();
      return ReadResult::kMessage;
    }
    return read_closed_ ? ReadResult::kClosed : ReadResult::kTimeout;
  }
  // Whether the stream is known broken (a write failed, or the service ended it).
  bool broken() {
    absl::MutexLock lock(&mu_);
    return write_failed_ || read_closed_;
  }
  // Half-closes (after the write in flight, waiting for it until `deadline`), waits for the
  // service to end the call until `deadline`, cancels it otherwise (at once when `cancel`), and
  // returns the call's status. Idempotent.
  grpc::Status Shutdown(absl::Time deadline, bool cancel) {
    bool half_close = false;
    bool release_hold = false;
    {
      absl::MutexLock lock(&mu_);
      if (!shut_) {
        shut_ = true;
        release_hold = true;
        auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writing_; };
        if (!cancel && mu_.AwaitWithDeadline(absl::Condition(&idle), deadline) &&
            !write_failed_ && !writes_done_) {
          writes_done_ = true;
          half_close = true;
        }
      }
    }
    if (half_close) this->StartWritesDone();
    if (release_hold) this->RemoveHold();
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; };
    if (cancel || !mu_.AwaitWithDeadline(absl::Condition(&done), deadline)) {
      context_->TryCancel();
      mu_.Await(absl::Condition(&done));  // a cancelled call ends promptly
    }
    return status_;
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) write_failed_ = true;
  }
  void OnReadDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      if (!ok) {
        read_closed_ = true;
        return;
      }
      queue_.push_back(std::move(incoming_));
    }
    incoming_ = Response();
    this->StartRead(&incoming_);
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

 private:
  std::unique_ptr<grpc::ClientContext> context_;
  Request outgoing_;  // the write in flight
  Response incoming_;  // the read in flight
  absl::Mutex mu_;
  std::deque<Response> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// Request/response over one verifier stream (the verifier answers every request in order).
class VerifierStream : public VerifierLink {
 public:
  // `parent` (nullable) is the client's call: its deadline and cancellation propagate.
  // `deadline` (InfiniteFuture: none) is the session's own deadline, `call_timeout` the longest
  // one Call may take before the stream is cancelled and reported UNAVAILABLE. `traceparent`
  // (empty: none) goes with the stream as W3C trace context.
  VerifierStream(v1::Verifier::Stub* stub, const grpc::CallbackServerContext* parent,
                 absl::Time deadline = absl::InfiniteFuture(),
                 absl::Duration call_timeout = absl::InfiniteDuration(),
                 const std::string& traceparent = "");
  ~VerifierStream() override;

  // Sends `request` and waits for its response. A broken stream gives the stream's status
  // (UNAVAILABLE when the verifier is down or did not answer in time, CANCELLED /
  // DEADLINE_EXCEEDED from the client...).
  absl::StatusOr<v1::VerifierResponse> Call(const v1::VerifierRequest& request) override;
  // Sends Release (when `release` and the stream works), half-closes and finishes the call.
  void Close(bool release, const std::string& session_id) override;

 private:
  absl::Status Broken(const char* what);

  ClientStreamCall<v1::VerifierRequest, v1::VerifierResponse> call_;
  absl::Duration call_timeout_;
  bool timed_out_ = false;
  bool closed_ = false;
};

// One draft stream: requests go out without waiting for answers, which queue as they come so
// the gateway can wait for proposals with a per-round deadline (a slow draft must not hold a
// round up).
class DraftStream : public DraftLink {
 public:
  // `op_timeout` bounds each Send's wait for the previous message to go out (a draft that
  // cannot take a message in that time is treated as gone). `traceparent` as for VerifierStream.
  DraftStream(v1::Draft::Stub* stub, const grpc::CallbackServerContext* parent,
              absl::Time deadline = absl::InfiniteFuture(),
              absl::Duration op_timeout = absl::InfiniteDuration(),
              const std::string& traceparent = "");
  ~DraftStream() override;

  bool Send(const v1::DraftRequest& request) override;
  ReadResult Read(v1::DraftResponse* response, absl::Time deadline) override;
  // Sends Release (when `release` and the stream works), half-closes, waits briefly for the
  // draft to end the call and cancels it otherwise.
  void Close(bool release, const std::string& session_id) override;
  std::string final_error() const override { return final_status_.error_message(); }

 private:
  ClientStreamCall<v1::DraftRequest, v1::DraftResponse> call_;
  absl::Duration op_timeout_;
  bool write_failed_ = false;
  bool closed_ = false;
  grpc::Status final_status_;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_BACKEND_STREAMS_H_
