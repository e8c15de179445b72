// Leader/follower batching of forward passes (see forward_batcher.h).
#include "common/batching/forward_batcher.h"

#include <algorithm>
#include <vector>

namespace specdec {

absl::StatusOr<Logits> ForwardBatcher::Forward(Sequence* sequence,
                                               absl::Span<const int32_t> tokens,
                                               LogitsWanted wanted) {
  Call call;
  call.item = Sequence::BatchItem{sequence, tokens, wanted};
  absl::MutexLock lock(&mu_);
  queue_.push_back(&call);
  queued_rows_ += static_cast<int64_t>(tokens.size());
  while (true) {
    auto ready = [this, &call]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return call.done || (!call.taken && leaders_ < std::max(1, options_.max_passes));
    };
    mu_.Await(absl::Condition(&ready));
    if (call.done) return std::move(call.result);
    LeadOnePass();  // the call may not fit this pass: then loop and wait again
  }
}

void ForwardBatcher::LeadOnePass() {
  ++leaders_;
  // Wait briefly for the calls the last pass had (sessions that run in step), never for more
  // rows than a pass takes.
  if (options_.max_wait > absl::ZeroDuration()) {
    const size_t expected = static_cast<size_t>(std::max<int64_t>(1, last_pass_calls_));
    auto gathered = [this, expected]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return queue_.size() >= expected || queued_rows_ >= options_.max_rows;
    };
    mu_.AwaitWithTimeout(absl::Condition(&gathered), options_.max_wait);
  }
  std::vector<Call*> pass;
  int64_t rows = 0;
  // A pass runs the sequences of one view (the first call's): a draft that switched plans has
  // sessions on both views until each moves at its next round; the others wait for a later pass.
  const ModelView* view = queue_.empty() ? nullptr : &queue_.front()->item.sequence->view();
  for (auto it = queue_.begin(); it != queue_.end();) {
    Call* call = *it;
    if (&call->item.sequence->view() != view) {
      ++it;
      continue;
    }
    const int64_t n = static_cast<int64_t>(call->item.tokens.size());
    if (!pass.empty() && rows + n > options_.max_rows) break;
    rows += n;
    call->taken = true;
    pass.push_back(call);
    it = queue_.erase(it);
  }
  queued_rows_ -= rows;
  std::vector<Sequence::BatchItem> items;
  items.reserve(pass.size());
  for (const Call* call : pass) items.push_back(call->item);

  mu_.Unlock();  // the pass runs without the lock: new calls queue for the next one
  std::vector<absl::StatusOr<Logits>> results = Sequence::ForwardBatch(items);
  mu_.Lock();

  for (size_t i = 0; i < pass.size(); ++i) {
    pass[i]->result = std::move(results[i]);
    pass[i]->done = true;
  }
  last_pass_calls_ = static_cast<int64_t>(pass.size());
  stats_.passes += 1;
  stats_.calls += static_cast<int64_t>(pass.size());
  stats_.rows += rows;
  stats_.largest = std::max(stats_.largest, static_cast<int64_t>(pass.size()));
  --leaders_;
}

ForwardBatcher::Stats ForwardBatcher::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace specdec
