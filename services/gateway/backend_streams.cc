// Gateway-side stream wrappers (see backend_streams.h).
#include "services/gateway/backend_streams.h"

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/rpc/status.h"

namespace specdec {
namespace {

std::unique_ptr<grpc::ClientContext> ChildContext(const grpc::ServerContext* parent) {
  if (parent != nullptr) return grpc::ClientContext::FromServerContext(*parent);
  return std::make_unique<grpc::ClientContext>();
}

// How long Close waits for a service to acknowledge a Release before cancelling the call.
constexpr absl::Duration kReleaseWait = absl::Milliseconds(500);

}  // namespace

VerifierStream::VerifierStream(v1::Verifier::Stub* stub, const grpc::ServerContext* parent)
    : context_(ChildContext(parent)), stream_(stub->Session(context_.get())) {}

VerifierStream::~VerifierStream() { Close(false, ""); }

absl::Status VerifierStream::Broken(const char* what) {
  broken_ = true;
  closed_ = true;
  grpc::Status status = stream_->Finish();
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
  if (!stream_->Write(request)) return Broken("write");
  v1::VerifierResponse response;
  if (!stream_->Read(&response)) return Broken("read");
  return response;
}

void VerifierStream::Close(bool release, const std::string& session_id) {
  if (closed_) return;
  closed_ = true;
  if (release) {
    v1::VerifierRequest request;
    request.set_session_id(session_id);
    request.mutable_release();
    v1::VerifierResponse response;
    if (stream_->Write(request)) stream_->Read(&response);
  } else {
    context_->TryCancel();
  }
  stream_->WritesDone();
  v1::VerifierResponse ignored;
  while (stream_->Read(&ignored)) {
  }
  grpc::Status status = stream_->Finish();
  if (!status.ok() && release) {
    SPECDEC_LOG(Debug) << "verifier stream of " << session_id << " ended: " << status.error_message();
  }
}

DraftStream::DraftStream(v1::Draft::Stub* stub, const grpc::ServerContext* parent)
    : context_(ChildContext(parent)), stream_(stub->Session(context_.get())) {
  reader_ = std::thread([this] { ReaderLoop(); });
}

DraftStream::~DraftStream() { Close(false, ""); }

void DraftStream::ReaderLoop() {
  v1::DraftResponse response;
  while (stream_->Read(&response)) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(response));
    response = v1::DraftResponse();
  }
  absl::MutexLock lock(&mu_);
  reader_done_ = true;
}

bool DraftStream::Send(const v1::DraftRequest& request) {
  if (closed_ || write_failed_) return false;
  if (!stream_->Write(request)) write_failed_ = true;
  return !write_failed_;
}

DraftStream::ReadResult DraftStream::Read(v1::DraftResponse* response, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || reader_done_;
  };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (!queue_.empty()) {
    *response = std::move(queue_.front());
    queue_.pop_front();
    return ReadResult::kMessage;
  }
  return reader_done_ ? ReadResult::kClosed : ReadResult::kTimeout;
}

void DraftStream::Close(bool release, const std::string& session_id) {
  if (closed_) return;
  if (release && !write_failed_) {
    v1::DraftRequest request;
    request.set_session_id(session_id);
    request.mutable_release();
    if (stream_->Write(request)) stream_->WritesDone();
  }
  closed_ = true;
  {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return reader_done_; };
    if (!release || !mu_.AwaitWithTimeout(absl::Condition(&done), kReleaseWait)) {
      context_->TryCancel();
    }
  }
  reader_.join();
  final_status_ = stream_->Finish();
}

}  // namespace specdec
