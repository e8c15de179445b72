// Model-side session state (see model_session.h).
#include "services/common/model_session.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"

namespace specdec {

ModelSession::ModelSession(std::shared_ptr<const ModelView> view,
                           std::shared_ptr<SessionSlot> slot, SessionRegistry* registry,
                           ForwardBatcher* batcher)
    : view_(std::move(view)), slot_(std::move(slot)), registry_(registry), batcher_(batcher) {}

absl::Status ModelSession::Prefill(const v1::TokenSpan& span, const SamplingParams& params,
                                  std::shared_ptr<const ModelView> view) {
  if (span.start_position() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("a prefill starts at position 0, got ", span.start_position()));
  }
  RETURN_IF_ERROR(params.Validate());
  slot_->evicted = false;
  sampling_ = params;
  if (view != nullptr) view_ = std::move(view);
  sequence_ = view_->NewSequence();
  tokens_.clear();
  slot_->cache_bytes = 0;
  if (span.tokens_size() > 0) {
    RETURN_IF_ERROR(ForwardCommitted(span.tokens(), LogitsWanted::kLast).status());
  }
  return absl::OkStatus();
}

std::optional<v1::SessionLost> ModelSession::Rewind(int64_t start_position) {
  v1::SessionLost lost;
  if (slot_->evicted.exchange(false)) {
    sequence_.reset();
    tokens_.clear();
    slot_->cache_bytes = 0;
    lost.set_reason("the session was evicted");
    return lost;
  }
  if (sequence_ == nullptr) {
    lost.set_reason("the session has no cache (no prefill)");
    return lost;
  }
  if (start_position < 0 || sequence_->length() < start_position) {
    lost.set_cache_length(sequence_->length());
    lost.set_reason(absl::StrCat("the cache holds ", sequence_->length(),
                                 " positions, the gateway asked to start at ", start_position));
    return lost;
  }
  if (sequence_->length() > start_position) {
    absl::Status status = sequence_->Truncate(start_position);
    tokens_.resize(static_cast<size_t>(std::min<int64_t>(start_position, tokens_.size())));
    if (!status.ok()) {
      sequence_.reset();
      lost.set_reason(absl::StrCat("rollback failed: ", status.ToString()));
      return lost;
    }
    slot_->cache_bytes = sequence_->cache_bytes();
  }
  // Every position before the span is committed: the gateway never rolls back below it, so
  // the KV cache may now compress or evict those positions (never the speculative tail).
  if (start_position > sequence_->committed_length()) {
    absl::Status status = sequence_->Commit(start_position);
    if (!status.ok()) {
      sequence_.reset();
      lost.set_reason(absl::StrCat("commit failed: ", status.ToString()));
      return lost;
    }
    slot_->cache_bytes = sequence_->cache_bytes();
  }
  return std::nullopt;
}

absl::StatusOr<Logits> ModelSession::Forward(absl::Span<const int32_t> tokens,
                                             LogitsWanted wanted) {
  if (sequence_ == nullptr) return absl::FailedPreconditionError("the session has no cache");
  ASSIGN_OR_RETURN(Logits logits, batcher_ != nullptr
                                      ? batcher_->Forward(sequence_.get(), tokens, wanted)
                                      : sequence_->Forward(tokens, wanted));
  slot_->cache_bytes = sequence_->cache_bytes();
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  registry_->AddTokens(static_cast<int64_t>(tokens.size()));
  return logits;
}

absl::Status ModelSession::SwitchView(std::shared_ptr<const ModelView> view) {
  if (view == view_) return absl::OkStatus();
  view_ = std::move(view);
  if (sequence_ == nullptr) return absl::OkStatus();
  const int64_t committed = sequence_->committed_length();
  std::vector<int32_t> tokens = std::move(tokens_);
  tokens_.clear();
  sequence_ = view_->NewSequence();
  slot_->cache_bytes = 0;
  if (!tokens.empty()) {
    absl::StatusOr<Logits> logits = ForwardCommitted(tokens, LogitsWanted::kLast);
    if (!logits.ok()) {
      sequence_.reset();  // the next round finds no cache and the gateway re-prefills
      tokens_.clear();
      return logits.status();
    }
  }
  if (committed > sequence_->committed_length()) RETURN_IF_ERROR(sequence_->Commit(committed));
  return absl::OkStatus();
}

absl::StatusOr<Logits> ModelSession::ForwardCommitted(absl::Span<const int32_t> tokens,
                                                      LogitsWanted wanted) {
  if (sequence_ == nullptr) return absl::FailedPreconditionError("the session has no cache");
  absl::StatusOr<Logits> logits = specdec::ForwardCommitted(
      *sequence_, tokens, wanted,
      [this](absl::Span<const int32_t> chunk, LogitsWanted chunk_wanted) {
        return Forward(chunk, chunk_wanted);
      });
  slot_->cache_bytes = sequence_->cache_bytes();
  return logits;
}

}  // namespace specdec
