// SessionBackends over gRPC (see grpc_backends.h).
#include "services/gateway/grpc_backends.h"

#include <algorithm>

#include "services/gateway/backend_streams.h"

namespace specdec {
namespace {

class RealClock : public SessionClock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

// A replica that came up after the gateway, or restarted, may leave its channel in reconnect
// backoff (up to 2 s, replica_set.cc), and gRPC fails calls on such a channel at once: the first
// requests after a verifier starts would be refused although it serves. Wait for the connection
// briefly instead (bounded by the session's and the client's deadlines); a replica that is really
// down still fails within kConnectWait.
constexpr absl::Duration kConnectWait = absl::Seconds(2);

void WaitBrieflyForConnection(grpc::Channel* channel, absl::Time session_deadline,
                              const grpc::CallbackServerContext* context) {
  if (channel->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY) return;
  absl::Time until = std::min(session_deadline, absl::Now() + kConnectWait);
  if (context != nullptr) until = std::min(until, absl::FromChrono(context->deadline()));
  channel->WaitForConnected(absl::ToChronoTime(until));
}

}  // namespace

const SessionClock* SessionClock::Real() {
  static const RealClock* clock = new RealClock;
  return clock;
}

std::vector<std::string> GrpcSessionBackends::RankedVerifiers(const std::string& session_id) {
  std::vector<std::string> out;
  for (const std::shared_ptr<Replica>& replica : options_.verifiers->Ranked(session_id)) {
    verifiers_[replica->address()] = replica;
    out.push_back(replica->address());
  }
  return out;
}

std::string GrpcSessionBackends::PickDraft(const std::string& session_id) {
  if (options_.drafts == nullptr) return "";
  std::shared_ptr<Replica> replica = options_.drafts->PickHealthy(session_id);
  if (replica == nullptr) return "";
  drafts_[replica->address()] = replica;
  return replica->address();
}

std::unique_ptr<VerifierLink> GrpcSessionBackends::OpenVerifier(const std::string& address) {
  Replica* replica = verifiers_.at(address).get();
  WaitBrieflyForConnection(replica->channel(), options_.deadline, options_.parent);
  return std::make_unique<VerifierStream>(replica->verifier(), options_.parent,
                                            options_.deadline, options_.verifier_timeout,
                                            options_.traceparent);
}

std::unique_ptr<DraftLink> GrpcSessionBackends::OpenDraft(const std::string& address) {
  return std::make_unique<DraftStream>(drafts_.at(address)->draft(), options_.parent,
                                         options_.deadline, options_.draft_op_timeout,
                                         options_.traceparent);
}

void GrpcSessionBackends::ReportVerifierFailure(const std::string& address,
                                                const absl::Status& why) {
  if (auto it = verifiers_.find(address); it != verifiers_.end()) {
    options_.verifiers->ReportFailure(it->second.get(), why);
  }
}

void GrpcSessionBackends::ReportDraftFailure(const std::string& address,
                                             const absl::Status& why) {
  if (auto it = drafts_.find(address); it != drafts_.end() && options_.drafts != nullptr) {
    options_.drafts->ReportFailure(it->second.get(), why);
  }
}

}  // namespace specdec
