// SessionBackends over gRPC: the replica sets (replica_set.h) and the stream wrappers
// (backend_streams.h). One per Generate call: for a gRPC call the streams' contexts derive from
// the client's call, so its cancellation and deadline reach both services; an HTTP completion
// has no such call (parent null) and its streams are bounded by `deadline` and the timeouts.
#ifndef SPECDEC_SERVICES_GATEWAY_GRPC_BACKENDS_H_
#define SPECDEC_SERVICES_GATEWAY_GRPC_BACKENDS_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "common/tracing/span.h"
#include "services/gateway/replica_set.h"
#include "services/gateway/session_backends.h"

namespace specdec {

// A session's clock on the gateway: the steady clock mapped to Unix time once (its request
// trace's mapping), so that the round times it stamps and the trace's spans agree to the
// nanosecond and a wall-clock step cannot reorder them.
class SteadySessionClock : public SessionClock {
 public:
  explicit SteadySessionClock(const SteadyToUnix& mapping) : mapping_(mapping) {}
  absl::Time Now() const override {
    return absl::FromUnixNanos(static_cast<int64_t>(mapping_(SteadyToUnix::Clock::now())));
  }

 private:
  const SteadyToUnix mapping_;
};

struct GrpcBackendsOptions {
  ReplicaSet* verifiers = nullptr;
  ReplicaSet* drafts = nullptr;  // null: no draft configured
  // The client's call (nullable): its deadline and cancellation propagate to both streams.
  const grpc::CallbackServerContext* parent = nullptr;
  // The session's own deadline.
  absl::Time deadline = absl::InfiniteFuture();
  // The longest one verifier call may take before its replica counts as failed.
  absl::Duration verifier_timeout = absl::Seconds(30);
  // Bounds opening a draft stream and each send to it.
  absl::Duration draft_op_timeout = absl::Milliseconds(500);
  // W3C trace context sent with both streams (empty: none).
  std::string traceparent;
};

class GrpcSessionBackends : public SessionBackends {
 public:
  explicit GrpcSessionBackends(GrpcBackendsOptions options) : options_(std::move(options)) {}

  std::vector<std::string> RankedVerifiers(const std::string& session_id) override;
  std::string verifier_target() const override { return options_.verifiers->target(); }
  bool has_drafts() const override { return options_.drafts != nullptr; }
  std::string PickDraft(const std::string& session_id) override;
  std::unique_ptr<VerifierLink> OpenVerifier(const std::string& address) override;
  std::unique_ptr<DraftLink> OpenDraft(const std::string& address) override;
  void ReportVerifierFailure(const std::string& address, const absl::Status& why) override;
  void ReportDraftFailure(const std::string& address, const absl::Status& why) override;

 private:
  GrpcBackendsOptions options_;
  // Every replica this session was offered, by address: a session keeps its replica alive even
  // when a DNS refresh drops it from the set.
  absl::flat_hash_map<std::string, std::shared_ptr<Replica>> verifiers_;
  absl::flat_hash_map<std::string, std::shared_ptr<Replica>> drafts_;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_GRPC_BACKENDS_H_
