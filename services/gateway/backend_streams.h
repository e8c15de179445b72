// The gateway's ends of the per-session streams to the verifier and the draft. Their contexts
// derive from the client's call, so a client's cancellation or deadline reaches both services,
// which then drop the session's cache.
#ifndef SPECDEC_SERVICES_GATEWAY_BACKEND_STREAMS_H_
#define SPECDEC_SERVICES_GATEWAY_BACKEND_STREAMS_H_

#include <deque>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "specdec/v1/draft.grpc.pb.h"
#include "specdec/v1/verifier.grpc.pb.h"

namespace specdec {

// Request/response over one verifier stream (the verifier answers every request in order).
class VerifierStream {
 public:
  // `parent` (nullable) is the client's call: its deadline and cancellation propagate.
  VerifierStream(v1::Verifier::Stub* stub, const grpc::ServerContext* parent);
  ~VerifierStream();

  // Sends `request` and waits for its response. A broken stream gives the stream's status
  // (UNAVAILABLE when the verifier is down, CANCELLED / DEADLINE_EXCEEDED from the client...).
  absl::StatusOr<v1::VerifierResponse> Call(const v1::VerifierRequest& request);
  // Sends Release (when `release` and the stream works), half-closes and finishes the call.
  void Close(bool release, const std::string& session_id);

 private:
  absl::Status Broken(const char* what);

  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::VerifierRequest, v1::VerifierResponse>> stream_;
  bool broken_ = false;
  bool closed_ = false;
};

// One draft stream. A reader thread queues the draft's messages so the gateway can wait for
// proposals with a per-round deadline (a slow draft must not hold a round up).
class DraftStream {
 public:
  DraftStream(v1::Draft::Stub* stub, const grpc::ServerContext* parent);
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
