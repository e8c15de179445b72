// Session registry (see session_registry.h).
#include "services/common/session_registry.h"

#include "absl/strings/str_cat.h"

namespace specdec {

absl::StatusOr<std::shared_ptr<SessionSlot>> SessionRegistry::Open(const std::string& id) {
  absl::MutexLock lock(&mu_);
  if (max_sessions_ > 0 && static_cast<int64_t>(sessions_.size()) >= max_sessions_ &&
      !sessions_.contains(id)) {
    ++refused_;
    return absl::ResourceExhaustedError(absl::StrCat(
        "the ", service_, " is serving its limit of ", max_sessions_,
        " sessions (--max_sessions); retry later or add a replica"));
  }
  auto [it, inserted] = sessions_.try_emplace(id);
  if (!inserted) {
    return absl::AlreadyExistsError(absl::StrCat("session ", id, " is served by another stream"));
  }
  it->second = std::make_shared<SessionSlot>();
  it->second->id = id;
  ++opened_;
  return it->second;
}

void SessionRegistry::Close(const std::string& id, CloseReason reason) {
  absl::MutexLock lock(&mu_);
  if (sessions_.erase(id) == 0) return;
  if (reason == CloseReason::kReleased) {
    ++released_;
  } else {
    ++abandoned_;
  }
}

bool SessionRegistry::Evict(const std::string& id) {
  absl::MutexLock lock(&mu_);
  if (id.empty()) {
    for (auto& [unused, slot] : sessions_) slot->evicted = true;
    evicted_ += static_cast<int64_t>(sessions_.size());
    return !sessions_.empty();
  }
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return false;
  it->second->evicted = true;
  ++evicted_;
  return true;
}

v1::GetStatsResponse SessionRegistry::Stats() const {
  v1::GetStatsResponse stats;
  absl::MutexLock lock(&mu_);
  int64_t bytes = 0;
  for (const auto& [id, slot] : sessions_) bytes += slot->cache_bytes;
  stats.set_active_sessions(static_cast<int32_t>(sessions_.size()));
  stats.set_cache_bytes(bytes);
  stats.set_sessions_opened(opened_);
  stats.set_sessions_released(released_);
  stats.set_sessions_abandoned(abandoned_);
  stats.set_sessions_evicted(evicted_);
  stats.set_sessions_refused(refused_);
  stats.set_tokens_processed(tokens_processed_);
  return stats;
}

}  // namespace specdec
