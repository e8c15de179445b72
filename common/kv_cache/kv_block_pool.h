// KvBlockPool: the allocator of a view's shared KV block pool. A block holds `block_tokens`
// tokens of every layer; sequences take blocks as they grow and give them back when they shrink
// or are destroyed. Thread-safe. Only ids are handed out here: the storage tensors live with the
// model view (common/kv_cache/paged_kv_cache.h), so this header stays torch-free.
#ifndef SPECDEC_COMMON_KV_CACHE_KV_BLOCK_POOL_H_
#define SPECDEC_COMMON_KV_CACHE_KV_BLOCK_POOL_H_

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "common/kv_cache/kv_cache_config.h"

namespace specdec {

class KvBlockPool {
 public:
  KvBlockPool(int64_t total_blocks, int64_t block_tokens, int64_t bytes_per_block);

  // Appends `n` block ids to `blocks`, all or nothing: RESOURCE_EXHAUSTED (and `blocks`
  // unchanged) when fewer than `n` are free.
  absl::Status Allocate(int64_t n, std::vector<int32_t>* blocks);
  // Returns blocks to the pool.
  void Release(absl::Span<const int32_t> blocks);
  void AddSequence(int delta);

  KvPoolStats stats() const;
  int64_t block_tokens() const { return block_tokens_; }
  int64_t total_blocks() const { return total_blocks_; }
  int64_t bytes_per_block() const { return bytes_per_block_; }

 private:
  const int64_t total_blocks_;
  const int64_t block_tokens_;
  const int64_t bytes_per_block_;
  mutable absl::Mutex mu_;
  std::vector<int32_t> free_ ABSL_GUARDED_BY(mu_);  // LIFO: recently used blocks are reused first
  int64_t peak_used_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t sequences_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_KV_CACHE_KV_BLOCK_POOL_H_
