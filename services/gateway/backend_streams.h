// The gateway's ends of the per-session streams to the verifier and the draft. Their contexts
// derive from the client's call, so a client's cancellation or deadline reaches both services,
// which then drop the session's cache. Every blocking step has a bound (the Watchdog cancels a
// call that overstays it), so a hung or unreachable replica never hangs a session.
#ifndef SPECDEC_SERVICES_GATEWAY_BACKEND_STREAMS_H_
#define SPECDEC_SERVICES_GATEWAY_BACKEND_STREAMS_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "specdec/v1/draft.grpc.pb.h"
#include "specdec/v1/verifier.grpc.pb.h"

namespace specdec {

// Runs a callback (e.g. ClientContext::TryCancel) when its deadline passes unless disarmed
// first: the synchronous gRPC API has no per-operation timeout. One thread for the process.
class Watchdog {
 public:
  static Watchdog& Global();

  // `fire` runs on the watchdog thread with its lock held: it must be quick and must not arm or
  // disarm. Returns an id for Disarm.
  uint64_t Arm(absl::Time deadline, std::function<void()> fire);
  // After Disarm returns, the callback is not running and will not run.
  void Disarm(uint64_t id);

  // Arms for the scope's lifetime.
  class Scoped {
   public:
    Scoped(absl::Time deadline, std::function<void()> fire)
        : id_(Global().Arm(deadline, std::move(fire))) {}
    ~Scoped() { Global().Disarm(id_); }
    Scoped(const Scoped&) = delete;
    Scoped& operator=(const Scoped&) = delete;

   private:
    uint64_t id_;
  };

 private:
  Watchdog();
  void Loop();

  absl::Mutex mu_;
  std::map<std::pair<absl::Time, uint64_t>, std::function<void()>> alarms_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, absl::Time> deadlines_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Request/response over one verifier stream (the verifier answers every request in order).
class VerifierStream {
 public:
  // `parent` (nullable) is the client's call: its deadline and cancellation propagate.
  // `deadline` (InfiniteFuture: none) is the session's own deadline, `call_timeout` the longest
  // one Call may take before the stream is cancelled and reported UNAVAILABLE. `traceparent`
  // (empty: none) goes with the stream as W3C trace context.
  VerifierStream(v1::Verifier::Stub* stub, const grpc::ServerContext* parent,
                 absl::Time deadline = absl::InfiniteFuture(),
                 absl::Duration call_timeout = absl::InfiniteDuration(),
                 const std::string& traceparent = "");
  ~VerifierStream();

  // Sends `request` and waits for its response. A broken stream gives the stream's status
  // (UNAVAILABLE when the verifier is down or did not answer in time, CANCELLED /
  // DEADLINE_EXCEEDED from the client...).
  absl::StatusOr<v1::VerifierResponse> Call(const v1::VerifierRequest& request);
  // Sends Release (when `release` and the stream works), half-closes and finishes the call.
  void Close(bool release, const std::string& session_id);

 private:
  absl::Status Broken(const char* what);
  absl::Time CallDeadline() const;

  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::VerifierRequest, v1::VerifierResponse>> stream_;
  absl::Duration call_timeout_;
  std::atomic<bool> timed_out_{false};
  bool broken_ = false;
  bool closed_ = false;
};

// One draft stream. A reader thread queues the draft's messages so the gateway can wait for
// proposals with a per-round deadline (a slow draft must not hold a round up).
class DraftStream {
 public:
  // `op_timeout` bounds opening the stream and each Send (a draft that cannot take a message
  // in that time is treated as gone). `traceparent` as for VerifierStream.
  DraftStream(v1::Draft::Stub* stub, const grpc::ServerContext* parent,
              absl::Time deadline = absl::InfiniteFuture(),
              absl::Duration op_timeout = absl::InfiniteDuration(),
              const std::string& traceparent = "");
  ~DraftStream();

  // False when the stream is broken.
  bool Send(const v1::DraftRequest& request);
  enum class ReadResult { kMessage, kTimeout, kClosed };
  // The next message, waiting until `deadline`.
  ReadResult Read(v1::DraftResponse* response, absl::Time deadline);
  // Sends Release (when `release` and the stream works), half-closes, waits briefly for the
  // draft to end the call, cancels it otherwise, and joins the reader.
  void Close(bool release, const std::string& session_id);
  // The call's status once closed (for logs).
  const grpc::Status& final_status() const { return final_status_; }

 private:
  void ReaderLoop();

  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::DraftRequest, v1::DraftResponse>> stream_;
  absl::Duration op_timeout_;
  std::thread reader_;
  absl::Mutex mu_;
  std::deque<v1::DraftResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool reader_done_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ = false;
  bool closed_ = false;
  grpc::Status final_status_;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_BACKEND_STREAMS_H_
