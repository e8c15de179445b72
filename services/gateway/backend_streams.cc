// Gateway-side stream wrappers and the call watchdog (see backend_streams.h).
#include "services/gateway/backend_streams.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/rpc/status.h"
#include "common/tracing/trace_context.h"

namespace specdec {
namespace {

std::unique_ptr<grpc::ClientContext> ChildContext(const grpc::ServerContext* parent,
                                                  absl::Time deadline,
                                                  const std::string& traceparent) {
  std::unique_ptr<grpc::ClientContext> context =
      parent != nullptr ? grpc::ClientContext::FromServerContext(*parent)
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

Watchdog& Watchdog::Global() {
  static Watchdog* watchdog = new Watchdog;  // never destroyed: its thread lives with the process
  return *watchdog;
}

Watchdog::Watchdog() {
  thread_ = std::thread([this] { Loop(); });
  thread_.detach();
}

uint64_t Watchdog::Arm(absl::Time deadline, std::function<void()> fire) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  if (deadline == absl::InfiniteFuture()) return id;  // nothing to watch
  if (alarms_.empty() || deadline < alarms_.begin()->first.first) changed_ = true;
  alarms_.emplace(std::make_pair(deadline, id), std::move(fire));
  deadlines_.emplace(id, deadline);
  return id;
}

void Watchdog::Disarm(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = deadlines_.find(id);
  if (it == deadlines_.end()) return;
  alarms_.erase({it->second, id});
  deadlines_.erase(it);
}

void Watchdog::Loop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    const absl::Time next = alarms_.empty() ? absl::InfiniteFuture() : alarms_.begin()->first.first;
    changed_ = false;
    mu_.AwaitWithDeadline(absl::Condition(&changed_), next);
    const absl::Time now = absl::Now();
    while (!alarms_.empty() && alarms_.begin()->first.first <= now) {
      auto it = alarms_.begin();
      deadlines_.erase(it->first.second);
      std::function<void()> fire = std::move(it->second);
      alarms_.erase(it);
      fire();
    }
  }
}

VerifierStream::VerifierStream(v1::Verifier::Stub* stub, const grpc::ServerContext* parent,
                               absl::Time deadline, absl::Duration call_timeout,
                               const std::string& traceparent)
    : context_(ChildContext(parent, deadline, traceparent)), call_timeout_(call_timeout) {
  // Opening the call waits for the connection: bounded like a call.
  Watchdog::Scoped watch(CallDeadline(), [this] {
    timed_out_ = true;
    context_->TryCancel();
  });
  stream_ = stub->Session(context_.get());
}

VerifierStream::~VerifierStream() { Close(false, ""); }

absl::Time VerifierStream::CallDeadline() const { return Bound(call_timeout_); }

absl::Status VerifierStream::Broken(const char* what) {
  broken_ = true;
  closed_ = true;
  grpc::Status status = stream_->Finish();
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
  if (timed_out_) return Broken("open");
  Watchdog::Scoped watch(CallDeadline(), [this] {
    timed_out_ = true;
    context_->TryCancel();
  });
  if (!stream_->Write(request)) return Broken("write");
  v1::VerifierResponse response;
  if (!stream_->Read(&response)) return Broken("read");
  return response;
}

void VerifierStream::Close(bool release, const std::string& session_id) {
  if (closed_) return;
  closed_ = true;
  // A release is a courtesy: never wait long for it.
  Watchdog::Scoped watch(absl::Now() + kReleaseWait, [this] { context_->TryCancel(); });
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

DraftStream::DraftStream(v1::Draft::Stub* stub, const grpc::ServerContext* parent,
                         absl::Time deadline, absl::Duration op_timeout,
                         const std::string& traceparent)
    : context_(ChildContext(parent, deadline, traceparent)), op_timeout_(op_timeout) {
  {
    Watchdog::Scoped watch(Bound(op_timeout_), [this] { context_->TryCancel(); });
    stream_ = stub->Session(context_.get());
  }
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
  Watchdog::Scoped watch(Bound(op_timeout_), [this] { context_->TryCancel(); });
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
    Watchdog::Scoped watch(absl::Now() + kReleaseWait, [this] { context_->TryCancel(); });
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
