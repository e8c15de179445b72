// Internal to the runtime: the paged KV storage of a view (KvStore) and one sequence's cache
// over it (PagedKvCache): storage and policy (int8, eviction, re-rotation, page selection).
// Its libtorch attention path calls the maths of common/attention, as the contiguous cache
// does, and adds only what the policy changes (merged slots' bias, unselected pages). Includes
// libtorch: include only from .cc files (common/model and the tests); the public API is model.h.
#ifndef SPECDEC_COMMON_KV_CACHE_PAGED_KV_CACHE_H_
#define SPECDEC_COMMON_KV_CACHE_PAGED_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "common/kv_cache/kv_block_pool.h"
#include "common/kv_cache/kv_cache_config.h"

namespace specdec {

// Shape of the model the store serves.
struct KvStoreShape {
  std::vector<int64_t> layer_heads;  // heads computed in each view layer
  int64_t head_dim = 0;
  int64_t max_positions = 0;
  int64_t rotary_dims = 0;
  torch::Tensor cos, sin;  // [max_positions, rotary_dims] float32 (the model's tables)
  torch::ScalarType dtype = torch::kFloat;
  torch::Device device = torch::kCPU;
};

// The pool's storage: per layer K and V as [heads, blocks, block_tokens, head_dim] (float dtype,
// or int8 with [heads, blocks, block_tokens] f32 scales). Shared by the sequences of a view.
class KvStore {
 public:
  static absl::StatusOr<std::shared_ptr<KvStore>> Create(const KvCacheConfig& config,
                                                         KvStoreShape shape);
  const KvCacheConfig& config() const { return config_; }
  const KvStoreShape& shape() const { return shape_; }
  KvBlockPool& pool() { return *pool_; }
  const KvBlockPool& pool() const { return *pool_; }
  int64_t block() const { return config_.block_tokens; }

  struct Layer {
    torch::Tensor k, v;              // [heads, blocks, block, head_dim]
    torch::Tensor k_scale, v_scale;  // [heads, blocks, block] f32 (int8 only)
  };
  std::vector<Layer>& layers() { return layers_; }

 private:
  KvStore(const KvCacheConfig& config, KvStoreShape shape) : config_(config), shape_(std::move(shape)) {}
  KvCacheConfig config_;
  KvStoreShape shape_;
  std::unique_ptr<KvBlockPool> pool_;
  std::vector<Layer> layers_;
};

// One sequence's cache. Slots [0, committed_slots) hold committed tokens (compressed or
// evicted per the policy); slots after them are the uncommitted tail, one per position.
// Not thread-safe (one owner); the pool it draws from is.
class PagedKvCache {
 public:
  explicit PagedKvCache(std::shared_ptr<KvStore> store);
  ~PagedKvCache();
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  int64_t length() const { return length_; }
  int64_t committed() const { return committed_; }
  int64_t slots() const { return slots_; }
  int64_t bytes() const;
  // One past the highest rotary position the next `n` tokens would use.
  int64_t PositionEnd(int64_t n) const;

  // A forward over `n` tokens: BeginForward reserves the blocks (RESOURCE_EXHAUSTED and no
  // change when the pool is short), Attend runs per layer, then EndForward or AbortForward.
  absl::Status BeginForward(int64_t n);
  // q, k, v: [heads, n, head_dim] from the projection, before rotary. Returns the attention
  // output [heads, n, head_dim]; `probs`, when given, receives [heads, n, slots + n].
  torch::Tensor Attend(size_t layer, torch::Tensor q, torch::Tensor k, torch::Tensor v,
                       torch::Tensor* probs);
  void EndForward(int64_t n);
  void AbortForward();

  // The CPU engine's attention for the policy that keeps every token as it was written
  // (`full`: f32, no eviction, no re-rotation, no page selection) reads and writes the block
  // storage directly instead of calling Attend. Slot s of layer l, head h, is the head_dim floats
  // at SlotRow(l, keys, s) + h * HeadStride(l); slots [0, slots() + n) are backed between
  // BeginForward(n) and EndForward, and the new tokens' positions are length() + i.
  bool DirectRows() const { return direct_rows_; }
  float* SlotRow(size_t layer, bool keys, int64_t slot);
  int64_t HeadStride(size_t layer) const;

  // The CPU engine's `query_aware` (f32 on the CPU) reads and writes rows like DirectRows and
  // selects pages from a compact summary: per layer and head, `2 * head_dim` floats per full page
  // (the minimum of its rotated keys per dimension, then the maximum). SummarizePages brings the
  // summaries up to date for every full page among slots [0, slots), whose keys must be written;
  // a summary is computed once, when its page is complete (committed or not), and dropped by
  // Truncate or AbortForward when its page is no longer whole.
  bool DirectQueryAware() const { return direct_query_aware_; }
  void SummarizePages(size_t layer, int64_t slots);
  const float* PageSummaries(size_t layer, int64_t head) const;
  int64_t SummarizedPages(size_t layer) const { return summarized_[layer]; }
  const KvCacheConfig& config() const { return config_; }

  // Drops positions >= `length`. FAILED_PRECONDITION below the committed length once the
  // policy has evicted or merged a committed token.
  absl::Status Truncate(int64_t length);
  // Marks positions < `length` committed; when `length` is a compression boundary of the policy
  // (KvCacheConfig::Boundaries), compresses the committed slots. A forward may not hold a
  // position at or past the next boundary before it is committed (FAILED_PRECONDITION in
  // BeginForward), so the cache a position sees never depends on how positions were grouped.
  absl::Status Commit(int64_t length);

 private:
  // Float [heads, count, head_dim] of slots [0, count) (dequantised).
  torch::Tensor ReadSlots(size_t layer, bool keys, int64_t count);
  // Raw storage of slots [0, count): values [heads, count, hd] and int8 scales [heads, count].
  void ReadRaw(size_t layer, bool keys, int64_t count, torch::Tensor* values, torch::Tensor* scales);
  void WriteRaw(size_t layer, bool keys, int64_t first, const torch::Tensor& values,
                const torch::Tensor& scales);
  void Write(size_t layer, bool keys, int64_t first, const torch::Tensor& x);  // quantises
  torch::Tensor SlotIndex(int64_t first, int64_t count, bool block_part);
  void ReleaseBlocksBeyond(int64_t slots);
  void AccumulateScores();
  void MaskUnselectedPages(size_t layer, const torch::Tensor& q, const torch::Tensor& keys,
                           torch::Tensor* scores);
  void Evict();
  torch::Tensor KeepIndex(size_t layer, int64_t committed_slots, std::vector<std::vector<int64_t>>* groups);

  std::shared_ptr<KvStore> store_;
  const KvCacheConfig& config_;
  std::vector<int32_t> blocks_;  // block table
  torch::Tensor block_table_;    // blocks_ as a long tensor on the device (rebuilt on change)
  int64_t length_ = 0;           // positions run
  int64_t committed_ = 0;        // committed positions
  int64_t slots_ = 0;            // cached tokens
  int64_t committed_slots_ = 0;  // slots holding committed tokens
  bool evicted_ = false;         // a committed token was evicted or merged
  // The last compression boundary (0 before the first) and the committed slots it left.
  int64_t segment_start_ = 0;
  int64_t segment_slots_ = 0;
  int64_t reserved_ = 0;         // blocks taken by BeginForward
  bool direct_rows_ = false;     // see DirectRows()

  // h2o / hierarchical, per layer.
  std::vector<torch::Tensor> scores_;     // [heads, slots] attention mass from committed queries
  std::vector<torch::Tensor> log_count_;  // [heads, slots] log(tokens merged into the slot)
  // [heads, length - segment_start_, hd] rotated queries of the positions since the last boundary
  std::vector<torch::Tensor> queries_;
  // Native query_aware (see DirectQueryAware): [layer][head] -> [pages][2 * head_dim].
  void DropSummariesBeyond(int64_t slots);
  bool direct_query_aware_ = false;
  std::vector<std::vector<std::vector<float>>> summaries_;
  std::vector<int64_t> summarized_;  // valid pages per layer
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_KV_CACHE_PAGED_KV_CACHE_H_
