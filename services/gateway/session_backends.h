// What a GenerationSession needs from the world, as interfaces: a stream to one verifier
// replica, a stream to one draft replica, the replica sets that pick them (and hear about
// failures), and a clock. grpc_backends.h implements them over gRPC and ReplicaSet; the unit
// tests implement them with fakes (a deterministic "model", a manual clock), so the session's
// state machine runs without processes, sockets or sleeps.
//
// The link calls block, each with an explicit bound (the link's call timeout, or the deadline
// passed to Read): the gRPC links (backend_streams.h) are callback reactors whose OnReadDone /
// OnWriteDone complete what the session's thread waits for until its bound.
#ifndef SPECDEC_SERVICES_GATEWAY_SESSION_BACKENDS_H_
#define SPECDEC_SERVICES_GATEWAY_SESSION_BACKENDS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "specdec/v1/draft.pb.h"
#include "specdec/v1/verifier.pb.h"

namespace specdec {

// Time as the session sees it: deadlines, backoff, and the round timings it reports.
class SessionClock {
 public:
  virtual ~SessionClock() = default;
  virtual absl::Time Now() const = 0;
  // absl::Now().
  static const SessionClock* Real();
};

// Request/response over one verifier session stream (the verifier answers in order).
class VerifierLink {
 public:
  virtual ~VerifierLink() = default;
  // Sends `request` and waits for its answer. A broken stream gives its status: UNAVAILABLE for
  // a replica that is down or did not answer within the call timeout, the service's own code
  // (RESOURCE_EXHAUSTED, INVALID_ARGUMENT...) when it ended the call with one.
  virtual absl::StatusOr<v1::VerifierResponse> Call(const v1::VerifierRequest& request) = 0;
  // Sends Release first when `release` (and the stream works), then ends the call. Idempotent.
  virtual void Close(bool release, const std::string& session_id) = 0;
};

// One draft session stream: requests go out without waiting, answers are read with a deadline
// (a slow draft must not hold a round up).
class DraftLink {
 public:
  enum class ReadResult { kMessage, kTimeout, kClosed };
  virtual ~DraftLink() = default;
  // False when the stream is broken.
  virtual bool Send(const v1::DraftRequest& request) = 0;
  // The next message, waiting until `deadline` (in SessionClock time).
  virtual ReadResult Read(v1::DraftResponse* response, absl::Time deadline) = 0;
  // As VerifierLink::Close.
  virtual void Close(bool release, const std::string& session_id) = 0;
  // Why the stream ended, once closed ("" when it ended well); for logs.
  virtual std::string final_error() const = 0;
};

// The replicas of both backends, as one session uses them. Replicas are named by address.
class SessionBackends {
 public:
  virtual ~SessionBackends() = default;
  // Every verifier replica, best first for `session_id` (healthy ones first).
  virtual std::vector<std::string> RankedVerifiers(const std::string& session_id) = 0;
  // The --verifier target, for messages.
  virtual std::string verifier_target() const = 0;
  // Whether a draft backend is configured at all.
  virtual bool has_drafts() const = 0;
  // The best healthy draft replica for `session_id`; "" when none is healthy.
  virtual std::string PickDraft(const std::string& session_id) = 0;
  // Opens a session stream to the replica (waiting briefly for its connection). Never null.
  virtual std::unique_ptr<VerifierLink> OpenVerifier(const std::string& address) = 0;
  virtual std::unique_ptr<DraftLink> OpenDraft(const std::string& address) = 0;
  // A replica failed a session (transport failures only, replica_failure.h).
  virtual void ReportVerifierFailure(const std::string& address, const absl::Status& why) = 0;
  virtual void ReportDraftFailure(const std::string& address, const absl::Status& why) = 0;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_SESSION_BACKENDS_H_
