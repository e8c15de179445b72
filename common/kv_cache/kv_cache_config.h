// KvCacheConfig: which KV-cache policy a verifier view runs (--kv_policy), parsed from one flag
// string such as "int8+sink_window:sink=4,window=508". Torch-free; docs/kv_cache.md explains
// each policy and the decisions behind it.
#ifndef SPECDEC_COMMON_KV_CACHE_KV_CACHE_CONFIG_H_
#define SPECDEC_COMMON_KV_CACHE_KV_CACHE_CONFIG_H_

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace specdec {

enum class KvPolicy {
  kFull,          // every token, exact
  kSinkWindow,    // StreamingLLM: the first `sink` and the last `window` committed tokens
  kH2o,           // heavy hitters (accumulated attention) plus a recent window, within `budget`
  kHierarchical,  // hot (sinks + recent), warm (by attention), cold (evicted tokens pooled)
  kQueryAware,    // Quest: keep everything, attend to the top `pages` pages per head
};

// Where an evicting policy compresses: at the committed positions first, first + period,
// first + 2 * period, ... (a function of the position alone). The cache that a query at position
// p sees has been compressed at every boundary <= p and at none above, so it depends only on the
// committed tokens before p, never on how positions were grouped into forwards or rounds. A
// forward must therefore not hold a position at or above the next boundary before the sequence
// is committed up to it. period 0: no boundaries (full, int8, query_aware).
struct KvBoundaries {
  int64_t first = 0;
  int64_t period = 0;

  bool any() const { return period > 0; }
  // The smallest boundary > position; INT64_MAX when there is none.
  int64_t Next(int64_t position) const;
  // Most positions a forward starting at `first_position` (with every position before it
  // committed) may hold: Next(first_position) - first_position, at least 1.
  int64_t ForwardLimit(int64_t first_position) const;
  // Most draft tokens a verification may carry when its pending token (the first input of the
  // forward) stands at `pending_position`: ForwardLimit - 1. Cutting drafts is lossless.
  int64_t MaxDraftTokens(int64_t pending_position) const;
};

struct KvCacheConfig {
  KvPolicy policy = KvPolicy::kFull;
  // Keys and values stored as int8 with per-token, per-head f32 scales (any policy).
  bool int8 = false;
  // sink_window; also the hot tier of hierarchical.
  int64_t sink = 4;
  int64_t window = 1020;
  // h2o and hierarchical: committed tokens kept (heavy hitters + recent), and the recent part.
  int64_t budget = 256;
  int64_t recent = 64;
  // hierarchical: evicted tokens pooled `pool` at a time into one cold slot.
  int64_t pool = 4;
  // query_aware: whole pages (blocks) attended per head and query, besides the query's own
  // partial page. 16 (256 tokens of 16-token pages): the fewest that kept perplexity within 2% of
  // full at 2,048 positions on held-out text (docs/benchmarks/query_aware.md).
  int64_t pages = 16;
  // Tokens per block of the shared pool (also Quest's page size).
  int64_t block_tokens = 16;
  // Blocks in the view's shared pool (one block holds block_tokens tokens of every layer).
  // 0: room for 8 sequences of the model's max_position_embeddings.
  int64_t pool_blocks = 0;

  // Evicts or merges committed tokens (the cache no longer maps 1:1 to positions).
  bool Evicts() const;
  // Keys are stored without rotary and rotated at read time with positions inside the cache,
  // so the sequence can outgrow max_position_embeddings (sink_window).
  bool RerotatesKeys() const { return policy == KvPolicy::kSinkWindow; }
  // Committed tokens kept after an eviction; -1 when every token is kept.
  int64_t CommittedLimit() const;
  // Compression boundaries: first = CommittedLimit() + block_tokens, period = block_tokens for
  // the evicting policies; none for the others.
  KvBoundaries Boundaries() const;
  // Canonical flag spelling, e.g. "int8+h2o:budget=256,recent=64" (GetInfo, metrics, logs);
  // block=N is added when it is not the default 16, so that the string parses back to the same
  // boundaries.
  std::string ToString() const;
  // Bytes one cached token takes in every layer (K and V, scales included), for `layers`
  // layers of `heads` heads of `head_dim`, with `float_bytes` per unquantised value.
  int64_t BytesPerToken(int64_t layers, int64_t heads, int64_t head_dim, int64_t float_bytes) const;

 private:
  std::string ToStringWithoutBlock() const;
};

// A snapshot of a view's shared block pool, for metrics and GetInfo.
struct KvPoolStats {
  int64_t total_blocks = 0;
  int64_t used_blocks = 0;
  int64_t free_blocks = 0;
  int64_t peak_used_blocks = 0;  // since the pool was created
  int64_t block_tokens = 0;
  int64_t bytes_per_block = 0;  // every layer, K and V, scales included
  int64_t sequences = 0;        // live sequences drawing from the pool
};

// Parses "full", "int8", "sink_window:sink=4,window=1020", "h2o:budget=256,recent=64",
// "hierarchical:sink=4,recent=64,budget=256,pool=4", "query_aware:pages=8", "int8+<policy>".
// INVALID_ARGUMENT names the offending part.
absl::StatusOr<KvCacheConfig> ParseKvCacheConfig(absl::string_view text);

}  // namespace specdec

#endif  // SPECDEC_COMMON_KV_CACHE_KV_CACHE_CONFIG_H_
