// Query-aware (Quest) attention over row pointers: each query scores the page summaries of the
// cache (per-page, per-dimension key min and max), keeps its top pages, and attends exactly over
// those pages' rows and its own partial page, reading no other key or value. Torch-free; the CPU
// engine runs it for the `query_aware` KV policy (docs/kv_cache.md gives the definition).
#ifndef SPECDEC_COMMON_CPU_KERNELS_QUERY_AWARE_H_
#define SPECDEC_COMMON_CPU_KERNELS_QUERY_AWARE_H_

#include <cstdint>
#include <vector>

namespace specdec {

// Buffers one thread reuses across calls (they only grow).
struct QueryAwareScratch {
  std::vector<float> bounds, scores;
  std::vector<int32_t> order, chosen;
  std::vector<const float*> key_rows, value_rows;
};

// The pages a query at absolute position `position` attends to, ascending, into `chosen`:
// eligible pages are those lying entirely below the position ((j + 1) * block <= position); when
// more than `keep` are eligible, the `keep` with the largest `bounds` (ties: the lower page
// index), otherwise all of them. Returns the number of eligible pages.
int64_t SelectPages(const float* bounds, int64_t position, int64_t block, int64_t keep,
                    std::vector<int32_t>* order, std::vector<int32_t>* chosen);

// Attention of n new rows at positions first_pos .. first_pos + n - 1 of one sequence:
//   q:         [n, q_stride], head h of row i at q + i * q_stride + h * q_head_stride (rotated)
//   key_rows:  key_rows[s] + h * kv_head_stride is head h of slot s, s < first_pos + n (slot =
//              position); value_rows likewise. Only the rows attended to are dereferenced.
//   summaries: summaries[h] is head h's [pages][2 * head_dim] (min then max) for every page
//              lying entirely below first_pos + n - 1.
//   out:       [n, out_stride], head h of row i at out + i * out_stride + h * head_dim.
// Per query and head: the pages SelectPages picks (from PageBounds of the query), then every slot
// from floor(position / block) * block to the position. `bytes_read`, when not null, is increased
// by the bytes of cache this reads: the key and value rows attended to and the summaries scored.
void QueryAwareAttention(const float* q, int64_t q_stride, int64_t q_head_stride, int64_t n,
                         int64_t first_pos, const float* const* key_rows,
                         const float* const* value_rows, int64_t kv_head_stride,
                         const float* const* summaries, int64_t block, int64_t keep,
                         int64_t heads, int64_t head_dim, float* out, int64_t out_stride,
                         QueryAwareScratch* scratch, int64_t* bytes_read);

}  // namespace specdec

#endif  // SPECDEC_COMMON_CPU_KERNELS_QUERY_AWARE_H_
