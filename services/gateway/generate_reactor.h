// One gRPC Generate stream on the callback API. Its session runs in steps on the gateway's
// SessionRunner (the prefill, then a round a step) and its messages leave through a write queue,
// so the stream holds no thread while it waits: for its client to read (past kMaxBacklog unsent
// messages it parks until a write completes), for a cancellation, or for its deadline (a client
// that stops reading is cancelled then, so no session outlives its deadline).
#ifndef SPECDEC_SERVICES_GATEWAY_GENERATE_REACTOR_H_
#define SPECDEC_SERVICES_GATEWAY_GENERATE_REACTOR_H_

#include <atomic>
#include <deque>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/synchronization/mutex.h"
#include "services/common/session_runner.h"
#include "services/gateway/gateway_service.h"
#include "specdec/v1/gateway.pb.h"

namespace specdec {

class GenerateReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                              public SessionRunner::Task {
 public:
  // Messages queued beyond the one being written before the session waits for its client.
  static constexpr size_t kMaxBacklog = 4;

  // Queues the call's first step on `runner`; the reactor lives until gRPC's OnDone and the
  // runner's last step, whichever is later.
  static GenerateReactor* Start(GatewayServiceImpl* service, SessionRunner* runner,
                                grpc::CallbackServerContext* context,
                                const grpc::ByteBuffer* request);

  Next Step(absl::Time* park_until) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  GenerateReactor(GatewayServiceImpl* service, SessionRunner* runner,
                  grpc::CallbackServerContext* context, const grpc::ByteBuffer* request);
  // The call, or its refusal: INVALID_ARGUMENT for bytes that are no GenerateRequest.
  absl::Status Begin();
  CallContext MakeCallContext();
  // Finishes the call with `status` once every queued message is written.
  void FinishAfterWrites(const grpc::Status& status);
  // Queues `response`; false when the client is gone.
  bool Emit(const v1::GenerateResponse& response);

  GatewayServiceImpl* const service_;
  SessionRunner* const runner_;
  grpc::CallbackServerContext* const context_;
  const grpc::ByteBuffer* const request_;  // gRPC's, valid until OnDone
  v1::GenerateRequest parsed_;
  std::unique_ptr<GatewayServiceImpl::Call> call_;  // runner threads only
  std::atomic<bool> cancelled_{false};
  std::shared_ptr<GenerateReactor> self_;  // dropped by OnDone

  absl::Mutex mu_;
  // Messages not yet written, serialized; the front one is being written while `writing_`.
  std::deque<grpc::ByteBuffer> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;  // Finish once the queue is written
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_GENERATE_REACTOR_H_
