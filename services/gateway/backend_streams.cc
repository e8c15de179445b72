// Gateway-side stream wrappers (see backend_streams.h).
#include "services/gateway/backend_streams.h"

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/rpc/status.h"
#include "common/tracing/trace_context.h"

namespace specdec {
namespace {

std::unique_ptr<grpc::ClientContext> ChildContext(const grpc::CallbackServerContext* parent,
                                                  absl::Time deadline,
                                                  const std::string& traceparent) {
  std::unique_ptr<grpc::ClientContext> context =
      parent != nullptr ? grpc::ClientContext::FromCallbackServerContext(*parent)
                        : std::make_unique<grpc::ClientContext>();
  // gRPC keeps the earlier of this and the parent's propagated deadline.
  if (deadline != absl::InfiniteFuture()) context->set_deadline(absl::ToChronoTime(deadline));
  if (!traceparent.empty()) context->AddMetadata(kTraceparentKey, traceparent);
  return context;
}

// How long Close waits for a service to acknowledge a Release before cancelling the call.
constexpr absl::Duration kReleaseWait = absl::Milliseconds(500);

absl::Time Bound(absl::Duration timeout) {
  return timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
}

}  // namespace

VerifierStream::VerifierStream(v1::Verifier::Stub* stub, const grpc::CallbackServerContext* parent,
                               absl::Time deadline, absl::Duration call_timeout,
                               const std::string& traceparent)
    : call_(ChildContext(parent, deadline, traceparent)), call_timeout_(call_timeout) {
  stub->async()->Session(call_.context(), &call_);
  call_.Start();
}

VerifierStream::~VerifierStream() { Close(false, ""); }

absl::Status VerifierStream::Broken(const char* what) {
  closed_ = true;
  // A stream the service ended has its status on the way: wait for it briefly.
  const grpc::Status status = call_.Shutdown(absl::Now() + kReleaseWait, /*cancel=*/timed_out_);
  if (timed_out_) {
    return absl::UnavailableError(absl::StrCat("the verifier did not answer within ",
                                               absl::FormatDuration(call_timeout_), " (", what,
                                               ")"));
  }
  if (status.ok()) {
    return absl::UnavailableError(absl::StrCat("the verifier ended the session stream (", what, ")"));
  }
  absl::Status result = FromGrpcStatus(status);
  if (result.code() == absl::StatusCode::kUnavailable) {
    result = absl::UnavailableError(absl::StrCat("verifier unavailable: ", result.message()));
  }
  return result;
}

absl::StatusOr<v1::VerifierResponse> VerifierStream::Call(const v1::VerifierRequest& request) {
  if (closed_) return absl::FailedPreconditionError("the verifier stream is closed");
  const absl::Time deadline = Bound(call_timeout_);
  if (!call_.Write(request, deadline)) {
    timed_out_ = !call_.broken();
    return Broken("write");
  }
  v1::VerifierResponse response;
  switch (call_.Read(&response, deadline)) {
    case DraftLink::ReadResult::kMessage:
      return response;
    case DraftLink::ReadResult::kTimeout:
      timed_out_ = true;
      break;
    case DraftLink::ReadResult::kClosed:
      break;
  }
  return Broken("read");
}

void VerifierStream::Close(bool release, const std::string& session_id) {
  if (closed_) return;
  closed_ = true;
  // A release is a courtesy: never wait long for it.
  const absl::Time deadline = absl::Now() + kReleaseWait;
  if (release) {
    v1::VerifierRequest request;
    request.set_session_id(session_id);
    request.mutable_release();
    v1::VerifierResponse response;
    if (call_.Write(request, deadline)) call_.Read(&response, deadline);
  }
  const grpc::Status status = call_.Shutdown(deadline, /*cancel=*/!release);
  if (!status.ok() && release) {
    SPECDEC_LOG(Debug) << "verifier stream of " << session_id << " ended: " << status.error_message();
  }
}

DraftStream::DraftStream(v1::Draft::Stub* stub, const grpc::CallbackServerContext* parent,
                         absl::Time deadline, absl::Duration op_timeout,
                         const std::string& traceparent)
    : call_(ChildContext(parent, deadline, traceparent)), op_timeout_(op_timeout) {
  stub->async()->Session(call_.context(), &call_);
  call_.Start();
}

DraftStream::~DraftStream() { Close(false, ""); }

bool DraftStream::Send(const v1::DraftRequest& request) {
  if (closed_ || write_failed_) return false;
  if (!call_.Write(request, Bound(op_timeout_))) write_failed_ = true;
  return !write_failed_;
}

DraftLink::ReadResult DraftStream::Read(v1::DraftResponse* response, absl::Time deadline) {
  return call_.Read(response, deadline);
}

void DraftStream::Close(bool release, const std::string& session_id) {
  if (closed_) return;
  const absl::Time deadline = absl::Now() + kReleaseWait;
  bool released = false;
  if (release && !write_failed_) {
    v1::DraftRequest request;
    request.set_session_id(session_id);
    request.mutable_release();
    released = call_.Write(request, deadline);
  }
  closed_ = true;
  final_status_ = call_.Shutdown(deadline, /*cancel=*/!released);
}

}  // namespace specdec
