// One session's KV cache on the draft or verifier side: created by a prefill, rewound to the
// gateway's start_position before each step (rollback of a rejected speculative tail), and
// reported lost when it cannot be rewound (evicted, never prefilled, shorter than asked).
#ifndef SPECDEC_SERVICES_COMMON_MODEL_SESSION_H_
#define SPECDEC_SERVICES_COMMON_MODEL_SESSION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/batching/forward_batcher.h"
#include "common/model/model.h"
#include "common/sampling/sampling.h"
#include "services/common/session_registry.h"
#include "specdec/v1/session.pb.h"

namespace specdec {

class ModelSession {
 public:
  // `batcher` (nullable): forward passes run batched with other sessions' through it.
  ModelSession(std::shared_ptr<const ModelView> view, std::shared_ptr<SessionSlot> slot,
               SessionRegistry* registry, ForwardBatcher* batcher = nullptr);

  // A fresh cache holding span.tokens (span.start_position must be 0), on `view` when given
  // (the draft's plan may have changed since the session opened).
  absl::Status Prefill(const v1::TokenSpan& span, const SamplingParams& params,
                       std::shared_ptr<const ModelView> view = nullptr);
  // Truncates the cache to start_position. Returns the SessionLost answer instead when the
  // session was evicted, never prefilled, or holds fewer positions than start_position.
  std::optional<v1::SessionLost> Rewind(int64_t start_position);
  // Runs `tokens` after the cache. Only after a successful Prefill/Rewind.
  absl::StatusOr<Logits> Forward(absl::Span<const int32_t> tokens, LogitsWanted wanted);
  // The same for tokens that are all committed (prefill, catch-up): under a KV policy they run
  // in chunks that never cross a compression boundary, committed as they go (ForwardCommitted).
  absl::StatusOr<Logits> ForwardCommitted(absl::Span<const int32_t> tokens, LogitsWanted wanted);

  // Moves the session to `view` (another plan over the same model): a fresh cache on it holds
  // the tokens the old one held, run again (exact: a re-prefill). Between rounds only, so a
  // round runs on one plan. A session without a cache just takes the view for its prefill.
  absl::Status SwitchView(std::shared_ptr<const ModelView> view);

  int64_t length() const { return sequence_ ? sequence_->length() : 0; }
  // The tokens in the cache, in order (what a SwitchView runs again).
  const std::vector<int32_t>& tokens() const { return tokens_; }
  const std::shared_ptr<const ModelView>& view_ptr() const { return view_; }
  const SamplingParams& sampling() const { return sampling_; }
  const ModelView& view() const { return *view_; }

 private:
  std::shared_ptr<const ModelView> view_;
  std::shared_ptr<SessionSlot> slot_;
  SessionRegistry* registry_;
  ForwardBatcher* batcher_;
  std::unique_ptr<Sequence> sequence_;  // null until prefilled, and after an eviction
  std::vector<int32_t> tokens_;         // sequence_'s positions; 4 bytes a token
  SamplingParams sampling_;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_MODEL_SESSION_H_
