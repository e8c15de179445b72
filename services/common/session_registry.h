// Which sessions a draft or verifier process holds, with counters for GetStats. The KV cache
// itself belongs to the stream that serves the session (one stream per session); the registry
// only knows the ids, their cache sizes, and whether an operator evicted one.
#ifndef SPECDEC_SERVICES_COMMON_SESSION_REGISTRY_H_
#define SPECDEC_SERVICES_COMMON_SESSION_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "specdec/v1/session.pb.h"

namespace specdec {

// Shared between the registry and the stream serving the session.
struct SessionSlot {
  std::string id;
  // Set by Evict(); the stream drops its cache and answers SessionLost next time.
  std::atomic<bool> evicted{false};
  std::atomic<int64_t> cache_bytes{0};
};

class SessionRegistry {
 public:
  enum class CloseReason { kReleased, kAbandoned };

  // `service` names the process in messages ("draft", "verifier"); at most `max_sessions`
  // sessions are open at once (0: no limit).
  explicit SessionRegistry(std::string service = "service", int max_sessions = 0)
      : service_(std::move(service)), max_sessions_(max_sessions) {}

  // Registers a session for the calling stream. ALREADY_EXISTS when another stream holds it;
  // RESOURCE_EXHAUSTED when max_sessions are open.
  absl::StatusOr<std::shared_ptr<SessionSlot>> Open(const std::string& id);
  // Unregisters a session (idempotent).
  void Close(const std::string& id, CloseReason reason);
  // Marks a session evicted (every session when `id` is empty); false when there was none.
  bool Evict(const std::string& id);
  void AddTokens(int64_t n) { tokens_processed_ += n; }
  v1::GetStatsResponse Stats() const;

 private:
  const std::string service_;
  const int max_sessions_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<SessionSlot>> sessions_ ABSL_GUARDED_BY(mu_);
  int64_t opened_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t released_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t abandoned_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evicted_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int64_t> tokens_processed_{0};
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_SESSION_REGISTRY_H_
