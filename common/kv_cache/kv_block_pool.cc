// KvBlockPool (see kv_block_pool.h): a LIFO free list under a mutex.
#include "common/kv_cache/kv_block_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace specdec {

KvBlockPool::KvBlockPool(int64_t total_blocks, int64_t block_tokens, int64_t bytes_per_block)
    : total_blocks_(total_blocks), block_tokens_(block_tokens), bytes_per_block_(bytes_per_block) {
  free_.reserve(total_blocks);
  // Block 0 ends up on top of the stack, so a fresh pool hands out low ids first.
  for (int64_t b = total_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

absl::Status KvBlockPool::Allocate(int64_t n, std::vector<int32_t>* blocks) {
  if (n <= 0) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  if (static_cast<int64_t>(free_.size()) < n) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV block pool exhausted: ", n, " blocks of ", block_tokens_, " tokens wanted, ",
        free_.size(), " of ", total_blocks_, " free"));
  }
  blocks->insert(blocks->end(), free_.end() - n, free_.end());
  free_.resize(free_.size() - n);
  peak_used_ = std::max<int64_t>(peak_used_, total_blocks_ - static_cast<int64_t>(free_.size()));
  return absl::OkStatus();
}

void KvBlockPool::Release(absl::Span<const int32_t> blocks) {
  if (blocks.empty()) return;
  absl::MutexLock lock(&mu_);
  // Reverse so that a sequence's first block is reused first next time.
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) free_.push_back(*it);
}

void KvBlockPool::AddSequence(int delta) {
  absl::MutexLock lock(&mu_);
  sequences_ += delta;
}

KvPoolStats KvBlockPool::stats() const {
  absl::MutexLock lock(&mu_);
  KvPoolStats s;
  s.total_blocks = total_blocks_;
  s.free_blocks = static_cast<int64_t>(free_.size());
  s.used_blocks = total_blocks_ - s.free_blocks;
  s.peak_used_blocks = peak_used_;
  s.block_tokens = block_tokens_;
  s.bytes_per_block = bytes_per_block_;
  s.sequences = sequences_;
  return s;
}

}  // namespace specdec
