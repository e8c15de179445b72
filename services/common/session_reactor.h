// A session stream (the draft's and the verifier's bidi Session RPC) on gRPC's callback API: no
// thread per stream. The reactor reads one request at a time and hands it to a SessionHandler on
// a SessionRunner thread (model work never runs on gRPC's callback threads, which must not block);
// the handler's responses go out in order through a write queue (one StartWrite in flight). The
// next request is read only once the handler returned and its responses are written, so a
// session's steps run in stream order, as with one thread per stream, and a client that does
// not read cannot grow the queue. The stream ends (Finish, exactly once) with the handler's
// error, when the handler says it is done (a Release), when the caller closes its side, or when
// the call is cancelled (client gone, deadline, server shutdown); the handler's End runs exactly
// once before that, on a worker. The reactor deletes itself in OnDone.
#ifndef SPECDEC_SERVICES_COMMON_SESSION_REACTOR_H_
#define SPECDEC_SERVICES_COMMON_SESSION_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/rpc/status.h"
#include "services/common/session_runner.h"

namespace specdec {

// What a handler sees of its stream.
template <typename Response>
class SessionOutput {
 public:
  virtual ~SessionOutput() = default;
  // Queues `response`; responses go out in the order written (dropped once a write failed).
  virtual void Write(Response response) = 0;
  // True once the call is cancelled (the client went away, its deadline passed, the server is
  // shutting down) or a write failed: a long step should stop.
  virtual bool IsCancelled() const = 0;
};

// After a request: read the next one, or end the stream with OK (e.g. after a Release).
enum class SessionNext { kRead, kEnd };

// One stream's logic. Called on worker threads, never two calls at once, so it needs no lock.
template <typename Request, typename Response>
class SessionHandler {
 public:
  virtual ~SessionHandler() = default;
  // Handles one request; an error ends the stream with that status.
  virtual absl::StatusOr<SessionNext> Handle(const Request& request,
                                             SessionOutput<Response>& out) = 0;
  // Exactly once, after the last Handle, with the status the stream ends with: OK when the
  // handler ended it or the requests ended (the caller closed its side, or cancelled between
  // steps); the step's error; CANCELLED when the call was cancelled during or before a step.
  virtual void End(const absl::Status& status) = 0;
};

template <typename Request, typename Response>
class SessionReactor final : public grpc::ServerBidiReactor<Request, Response>,
                             private SessionOutput<Response> {
 public:
  using Handler = SessionHandler<Request, Response>;

  // Starts reading at once. `workers` must outlive the call (the server's Shutdown waits for
  // every call's OnDone).
  SessionReactor(SessionRunner* workers, std::unique_ptr<Handler> handler)
      : workers_(workers), handler_(std::move(handler)) {
    this->StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    workers_->Run([this, ok] { Step(ok); });
  }

  void OnWriteDone(bool ok) override {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      queue_.pop_front();
      writing_ = false;
      if (!ok) {
        write_failed_ = true;
        queue_.clear();
      }
      action = NextAction();
    }
    Perform(std::move(action));
  }

  // gRPC also fails the outstanding read and write, so only the flag is needed here.
  void OnCancel() override { cancelled_ = true; }

  void OnDone() override { delete this; }

 private:
  enum class Pending { kNothing, kRead, kFinish };
  struct Action {
    enum Kind { kNone, kRead, kWrite, kFinish } kind = kNone;
    const Response* message = nullptr;
    grpc::Status status;
  };

  // On a worker: one request (or the end of the requests), then what comes next.
  void Step(bool have_request) {
    absl::Status status;
    bool more = false;
    if (!have_request) {
      // The requests ended: the caller closed its side, or the call was cancelled between
      // steps. Either way no step failed (what a synchronous Read loop reported too).
    } else if (IsCancelled()) {
      status = absl::CancelledError("the stream was cancelled");
    } else {
      absl::StatusOr<SessionNext> next = handler_->Handle(request_, *this);
      if (!next.ok()) {
        status = next.status();
      } else {
        more = *next == SessionNext::kRead;  // on a cancelled call the read fails at once
      }
    }
    if (!more) handler_->End(status);
    Action action;
    {
      absl::MutexLock lock(&mu_);
      pending_ = more ? Pending::kRead : Pending::kFinish;
      if (!more) finish_status_ = ToGrpcStatus(status);
      action = NextAction();
    }
    Perform(std::move(action));  // last: after a Finish, OnDone may delete this at any time
  }

  // Writes drain first, then the pending read or finish.
  Action NextAction() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Action action;
    if (writing_) return action;
    if (!queue_.empty()) {
      writing_ = true;
      action.kind = Action::kWrite;
      action.message = &queue_.front();  // deque: stays put while others are pushed and popped
    } else if (pending_ == Pending::kRead) {
      action.kind = Action::kRead;
    } else if (pending_ == Pending::kFinish) {
      action.kind = Action::kFinish;
      action.status = std::move(finish_status_);
    }
    if (action.kind != Action::kWrite) pending_ = Pending::kNothing;
    return action;
  }

  // Outside mu_: gRPC may run a reaction inline in these calls (e.g. on a cancelled call).
  void Perform(Action action) {
    switch (action.kind) {
      case Action::kNone:
        break;
      case Action::kRead:
        this->StartRead(&request_);
        break;
      case Action::kWrite:
        this->StartWrite(action.message);
        break;
      case Action::kFinish:
        this->Finish(std::move(action.status));
        break;
    }
  }

  void Write(Response response) override {
    const Response* start = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (write_failed_) return;
      queue_.push_back(std::move(response));
      if (!writing_) {
        writing_ = true;
        start = &queue_.back();
      }
    }
    if (start != nullptr) this->StartWrite(start);
  }

  bool IsCancelled() const override { return cancelled_ || write_failed_; }

  SessionRunner* const workers_;
  const std::unique_ptr<Handler> handler_;
  Request request_;  // read into by gRPC, then read by the handler; never both at once
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> write_failed_{false};
  absl::Mutex mu_;
  std::deque<Response> queue_ ABSL_GUARDED_BY(mu_);  // front: being written when writing_
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  Pending pending_ ABSL_GUARDED_BY(mu_) = Pending::kNothing;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_SESSION_REACTOR_H_
