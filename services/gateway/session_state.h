// What the parts of one gateway session share: the committed tokens (the gateway owns them),
// how much of them each backend is known to hold, and whether the client still wants the
// answer. The round loop (generation_session.h) and the backend connections
// (verifier_connection.h, draft_connection.h) work on one SessionState.
#ifndef SPECDEC_SERVICES_GATEWAY_SESSION_STATE_H_
#define SPECDEC_SERVICES_GATEWAY_SESSION_STATE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/kv_cache/kv_cache_config.h"
#include "services/gateway/gateway_service.h"
#include "services/gateway/session_backends.h"

namespace specdec {

struct SessionState {
  std::string session_id;
  const GenerationRequest* request = nullptr;
  // Every committed token: the prompt and what was generated. The last one is "pending": the
  // caches hold positions before it, and it is the first input of the next round.
  std::vector<int32_t> committed;
  // Committed positions each side is known to hold (the speculative tail beyond is stale).
  int64_t verifier_valid = 0;
  int64_t draft_valid = 0;
  // Where the verifier's KV policy compresses (from its Prefilled answer; none by default): no
  // verification may cross a boundary (docs/kv_cache.md, "Exactness under speculation").
  KvBoundaries verifier_kv_boundaries;

  int64_t length() const { return static_cast<int64_t>(committed.size()); }
};

// The client's side: its deadline, the gateway's default deadline for the session, and whether
// the client cancelled. OK while the answer is still wanted.
class ClientWatch {
 public:
  ClientWatch(const SessionClock* clock, absl::Time session_deadline, absl::Time client_deadline,
              std::function<bool()> cancelled)
      : clock_(clock),
        session_deadline_(session_deadline),
        client_deadline_(client_deadline),
        cancelled_(std::move(cancelled)) {}

  absl::Status Check() const {
    const absl::Time now = clock_->Now();
    if (now > session_deadline_) {
      return absl::DeadlineExceededError("the request's deadline (the gateway's default) passed");
    }
    if (now > client_deadline_) return absl::DeadlineExceededError("the request's deadline passed");
    if (cancelled_ && cancelled_()) return absl::CancelledError("the client cancelled the request");
    return absl::OkStatus();
  }

 private:
  const SessionClock* clock_;
  absl::Time session_deadline_;
  absl::Time client_deadline_;
  std::function<bool()> cancelled_;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_SESSION_STATE_H_
