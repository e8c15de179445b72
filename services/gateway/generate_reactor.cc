// The gRPC Generate stream (see generate_reactor.h).
#include "services/gateway/generate_reactor.h"

#include <chrono>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/rpc/status.h"
#include "common/tracing/trace_context.h"

namespace specdec {

GenerateReactor* GenerateReactor::Start(GatewayServiceImpl* service, SessionRunner* runner,
                                        grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request) {
  std::shared_ptr<GenerateReactor> reactor(
      new GenerateReactor(service, runner, context, request));
  reactor->self_ = reactor;
  // gRPC holds writes and Finish that come before this returns until it binds the reactor.
  runner->Submit(reactor);
  return reactor.get();
}

GenerateReactor::GenerateReactor(GatewayServiceImpl* service, SessionRunner* runner,
                                 grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* request)
    : service_(service), runner_(runner), context_(context), request_(request) {}

CallContext GenerateReactor::MakeCallContext() {
  CallContext call;
  const auto& metadata = context_->client_metadata();
  if (const auto it = metadata.find(kTraceparentKey); it != metadata.end()) {
    // An invalid value is ignored (W3C: start a new trace).
    call.trace_parent = ParseTraceparent(std::string_view(it->second.data(), it->second.size()));
  }
  // gRPC's "no deadline" is the far future.
  if (context_->deadline() < std::chrono::system_clock::now() + std::chrono::hours(24 * 365)) {
    call.client_deadline = absl::FromChrono(context_->deadline());
  }
  // OnCancel may come after the backend streams saw the cancellation (it propagates to them at
  // once): ask the call itself too, so that their failure is never taken for the replicas'.
  call.cancelled = [this] { return cancelled_.load() || context_->IsCancelled(); };
  call.grpc_call = context_;
  call.transport = "grpc";
  return call;
}

absl::Status GenerateReactor::Begin() {
  grpc::ByteBuffer copy(*request_);  // Deserialize consumes its buffer
  const grpc::Status parsed =
      grpc::SerializationTraits<v1::GenerateRequest>::Deserialize(&copy, &parsed_);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request is not a valid specdec.v1.GenerateRequest (a string field with invalid "
        "UTF-8, or a field of the wrong type?): ",
        parsed.error_message()));
  }
  call_ = service_->BeginCall(parsed_, MakeCallContext());
  return absl::OkStatus();
}

void GenerateReactor::FinishAfterWrites(const grpc::Status& status) {
  bool finish = false;
  {
    absl::MutexLock lock(&mu_);
    finishing_ = true;
    finish_status_ = status;
    if (!writing_) finish = finished_ = true;
  }
  if (finish) Finish(status);
}

SessionRunner::Task::Next GenerateReactor::Step(absl::Time* park_until) {
  if (call_ == nullptr) {
    if (const absl::Status begun = Begin(); !begun.ok()) {
      FinishAfterWrites(ToGrpcStatus(begun));
      return Next::kDone;
    }
  }
  bool overdue = false;
  {
    absl::MutexLock lock(&mu_);
    if (queue_.size() > kMaxBacklog && !write_failed_ && !cancelled_) {
      if (absl::Now() < call_->deadline()) {
        *park_until = call_->deadline();
        return Next::kPark;  // OnWriteDone or OnCancel wakes it
      }
      overdue = true;
    }
  }
  // Past its deadline with a client that does not read: end the call (its writes fail, the
  // session sees the cancellation).
  if (overdue) context_->TryCancel();
  if (call_->Step([this](const v1::GenerateResponse& response) { return Emit(response); })) {
    return Next::kReady;
  }
  const grpc::Status status = ToGrpcStatus(call_->End());
  call_.reset();  // the session's streams and its --max_sessions slot go now
  FinishAfterWrites(status);
  return Next::kDone;
}

bool GenerateReactor::Emit(const v1::GenerateResponse& response) {
  grpc::ByteBuffer bytes;
  bool own_buffer = false;
  if (!grpc::SerializationTraits<v1::GenerateResponse>::Serialize(response, &bytes, &own_buffer)
           .ok()) {
    return false;
  }
  const grpc::ByteBuffer* start = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (write_failed_ || cancelled_) return false;
    queue_.push_back(std::move(bytes));
    if (!writing_) {
      writing_ = true;
      start = &queue_.front();  // a deque keeps it in place while others are queued behind
    }
  }
  if (start != nullptr) StartWrite(start);
  return true;
}

void GenerateReactor::OnWriteDone(bool ok) {
  const grpc::ByteBuffer* next = nullptr;
  bool finish = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    queue_.pop_front();
    if (!ok) {
      write_failed_ = true;  // the client is gone: the session ends at its next message
      queue_.clear();
    }
    if (!queue_.empty()) {
      next = &queue_.front();
    } else {
      writing_ = false;
      if (finishing_ && !finished_) {
        finish = finished_ = true;
        status = finish_status_;
      }
    }
  }
  if (next != nullptr) StartWrite(next);
  if (finish) Finish(status);
  runner_->Wake(this);  // a session waiting for its client may go on
}

void GenerateReactor::OnCancel() {
  cancelled_ = true;
  runner_->Wake(this);
}

void GenerateReactor::OnDone() {
  std::shared_ptr<GenerateReactor> last = std::move(self_);  // may delete this on return
}

}  // namespace specdec
