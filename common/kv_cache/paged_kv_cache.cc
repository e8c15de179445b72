// Paged KV storage and the per-sequence cache (see paged_kv_cache.h and docs/kv_cache.md).
#include "common/kv_cache/paged_kv_cache.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/attention/attention.h"

namespace specdec {

using torch::indexing::Slice;

namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// KvStore

absl::StatusOr<std::shared_ptr<KvStore>> KvStore::Create(const KvCacheConfig& config,
                                                         KvStoreShape shape) {
  const int64_t block = config.block_tokens;
  if (config.RerotatesKeys() && config.CommittedLimit() + block + 1 > shape.max_positions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV policy ", config.ToString(), " keeps up to ", config.CommittedLimit() + block,
        " committed tokens (the limit plus one block of slack), more than the model's ",
        shape.max_positions, " positions"));
  }
  std::shared_ptr<KvStore> store(new KvStore(config, std::move(shape)));
  const KvStoreShape& s = store->shape_;
  int64_t blocks = config.pool_blocks;
  if (blocks == 0) blocks = 8 * CeilDiv(s.max_positions, block);
  int64_t heads_total = 0;
  for (int64_t h : s.layer_heads) heads_total += h;
  const int64_t float_bytes = torch::elementSize(s.dtype);
  const int64_t per_head_token = config.int8 ? s.head_dim + 4 : s.head_dim * float_bytes;
  store->pool_ = std::make_unique<KvBlockPool>(blocks, block, heads_total * 2 * per_head_token * block);
  auto options = torch::TensorOptions().device(s.device);
  // torch::empty leaves pages untouched: on the CPU only blocks that were used become resident.
  for (int64_t heads : s.layer_heads) {
    Layer layer;
    auto values = options.dtype(config.int8 ? torch::kChar : s.dtype);
    layer.k = torch::empty({heads, blocks, block, s.head_dim}, values);
    layer.v = torch::empty({heads, blocks, block, s.head_dim}, values);
    if (config.int8) {
      layer.k_scale = torch::empty({heads, blocks, block}, options.dtype(torch::kFloat));
      layer.v_scale = torch::empty({heads, blocks, block}, options.dtype(torch::kFloat));
    }
    store->layers_.push_back(std::move(layer));
  }
  return store;
}

// ---------------------------------------------------------------------------------------------
// PagedKvCache

PagedKvCache::PagedKvCache(std::shared_ptr<KvStore> store)
    : store_(std::move(store)), config_(store_->config()) {
  store_->pool().AddSequence(1);
  const size_t layers = store_->layers().size();
  scores_.resize(layers);
  log_count_.resize(layers);
  queries_.resize(layers);
  const KvStoreShape& shape = store_->shape();
  direct_rows_ = config_.policy == KvPolicy::kFull && !config_.int8 && shape.device.is_cpu() &&
                 shape.dtype == torch::kFloat;
  direct_query_aware_ = config_.policy == KvPolicy::kQueryAware && !config_.int8 &&
                        shape.device.is_cpu() && shape.dtype == torch::kFloat;
  summaries_.resize(layers);
  summarized_.assign(layers, 0);
  for (size_t l = 0; l < layers; ++l) summaries_[l].resize(static_cast<size_t>(shape.layer_heads[l]));
}

PagedKvCache::~PagedKvCache() {
  store_->pool().Release(blocks_);
  store_->pool().AddSequence(-1);
}

int64_t PagedKvCache::bytes() const {
  return static_cast<int64_t>(blocks_.size()) * store_->pool().bytes_per_block();
}

float* PagedKvCache::SlotRow(size_t layer, bool keys, int64_t slot) {
  KvStore::Layer& l = store_->layers()[layer];
  const int64_t b = store_->block();
  const int64_t row = static_cast<int64_t>(blocks_[slot / b]) * b + slot % b;
  return (keys ? l.k : l.v).data_ptr<float>() + row * store_->shape().head_dim;
}

int64_t PagedKvCache::HeadStride(size_t layer) const {
  const torch::Tensor& k = store_->layers()[layer].k;
  return k.size(1) * k.size(2) * k.size(3);  // [heads, blocks, block, head_dim]
}

void PagedKvCache::SummarizePages(size_t layer, int64_t slots) {
  const int64_t b = store_->block(), hd = store_->shape().head_dim;
  const int64_t heads = static_cast<int64_t>(summaries_[layer].size()), stride = HeadStride(layer);
  for (int64_t page = summarized_[layer]; page < slots / b; ++page) {
    for (int64_t h = 0; h < heads; ++h) {
      std::vector<float>& out = summaries_[layer][h];
      out.resize(static_cast<size_t>((page + 1) * 2 * hd));
      float* lo = out.data() + page * 2 * hd;
      float* hi = lo + hd;
      // A page's rows are contiguous in its block: [block, head_dim] per head.
      const float* rows = SlotRow(layer, true, page * b) + h * stride;
      std::copy(rows, rows + hd, lo);
      std::copy(rows, rows + hd, hi);
      for (int64_t t = 1; t < b; ++t) {
        const float* k = rows + t * hd;
        for (int64_t d = 0; d < hd; ++d) {
          lo[d] = std::min(lo[d], k[d]);
          hi[d] = std::max(hi[d], k[d]);
        }
      }
    }
    summarized_[layer] = page + 1;
  }
}

const float* PagedKvCache::PageSummaries(size_t layer, int64_t head) const {
  return summaries_[layer][head].data();
}

void PagedKvCache::DropSummariesBeyond(int64_t slots) {
  for (int64_t& pages : summarized_) pages = std::min(pages, slots / store_->block());
}

int64_t PagedKvCache::PositionEnd(int64_t n) const {
  return config_.RerotatesKeys() ? slots_ + n : length_ + n;
}

absl::Status PagedKvCache::BeginForward(int64_t n) {
  const KvBoundaries bounds = config_.Boundaries();
  if (bounds.any() && length_ + n > bounds.Next(committed_)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a forward over positions [", length_, ", ", length_ + n, ") would cross the KV compression "
        "boundary at ", bounds.Next(committed_), " of policy ", config_.ToString(), " with ",
        committed_, " positions committed: commit up to the boundary first and split the forward "
        "there (KvBoundaries::ForwardLimit)"));
  }
  const int64_t needed = CeilDiv(slots_ + n, store_->block()) - static_cast<int64_t>(blocks_.size());
  reserved_ = 0;
  if (needed > 0) {
    std::vector<int32_t> fresh;
    absl::Status status = store_->pool().Allocate(needed, &fresh);
    if (!status.ok()) return status;
    blocks_.insert(blocks_.end(), fresh.begin(), fresh.end());
    reserved_ = needed;
  }
  if (!block_table_.defined() || block_table_.size(0) != static_cast<int64_t>(blocks_.size())) {
    block_table_ = torch::tensor(std::vector<int64_t>(blocks_.begin(), blocks_.end()), torch::kLong)
                       .to(store_->shape().device);
  }
  return absl::OkStatus();
}

void PagedKvCache::EndForward(int64_t n) {
  slots_ += n;
  length_ += n;
  reserved_ = 0;
}

void PagedKvCache::AbortForward() {
  // Whatever Attend wrote past slots_ is garbage that nothing reads.
  for (auto& q : queries_) {
    if (q.defined()) q = q.slice(1, 0, length_ - segment_start_);
  }
  DropSummariesBeyond(slots_);
  ReleaseBlocksBeyond(slots_);
  reserved_ = 0;
}

void PagedKvCache::ReleaseBlocksBeyond(int64_t slots) {
  const int64_t keep = CeilDiv(slots, store_->block());
  if (keep < static_cast<int64_t>(blocks_.size())) {
    store_->pool().Release(absl::MakeConstSpan(blocks_).subspan(keep));
    blocks_.resize(keep);
    block_table_ = block_table_.slice(0, 0, keep);
  }
}

torch::Tensor PagedKvCache::SlotIndex(int64_t first, int64_t count, bool block_part) {
  const int64_t b = store_->block();
  std::vector<int64_t> idx(count);
  for (int64_t i = 0; i < count; ++i) {
    idx[i] = block_part ? blocks_[(first + i) / b] : (first + i) % b;
  }
  return torch::tensor(idx, torch::kLong).to(store_->shape().device);
}

void PagedKvCache::WriteRaw(size_t layer, bool keys, int64_t first, const torch::Tensor& values,
                            const torch::Tensor& scales) {
  const int64_t n = values.size(1);
  if (n == 0) return;
  KvStore::Layer& l = store_->layers()[layer];
  torch::Tensor bidx = SlotIndex(first, n, true), oidx = SlotIndex(first, n, false);
  (keys ? l.k : l.v).index_put_({Slice(), bidx, oidx}, values);
  if (config_.int8) (keys ? l.k_scale : l.v_scale).index_put_({Slice(), bidx, oidx}, scales);
}

void PagedKvCache::Write(size_t layer, bool keys, int64_t first, const torch::Tensor& x) {
  if (!config_.int8) {
    WriteRaw(layer, keys, first, x.to(store_->shape().dtype), {});
    return;
  }
  // Symmetric per token and head: scale = max|x| / 127.
  torch::Tensor f = x.to(torch::kFloat);
  torch::Tensor scale = f.abs().amax(-1).clamp_min(1e-12) / 127.0;  // [heads, n]
  torch::Tensor q = (f / scale.unsqueeze(-1)).round().clamp(-127, 127).to(torch::kChar);
  WriteRaw(layer, keys, first, q, scale);
}

void PagedKvCache::ReadRaw(size_t layer, bool keys, int64_t count, torch::Tensor* values,
                           torch::Tensor* scales) {
  KvStore::Layer& l = store_->layers()[layer];
  const int64_t b = store_->block();
  const int64_t nb = CeilDiv(count, b);
  torch::Tensor table = block_table_.slice(0, 0, nb);
  torch::Tensor t = keys ? l.k : l.v;
  *values = t.index_select(1, table).view({t.size(0), nb * b, t.size(3)}).slice(1, 0, count);
  if (config_.int8) {
    torch::Tensor s = keys ? l.k_scale : l.v_scale;
    *scales = s.index_select(1, table).view({s.size(0), nb * b}).slice(1, 0, count);
  }
}

torch::Tensor PagedKvCache::ReadSlots(size_t layer, bool keys, int64_t count) {
  const KvStoreShape& s = store_->shape();
  if (count == 0) {
    return torch::empty({s.layer_heads[layer], 0, s.head_dim},
                        torch::TensorOptions().dtype(s.dtype).device(s.device));
  }
  torch::Tensor values, scales;
  ReadRaw(layer, keys, count, &values, &scales);
  if (!config_.int8) return values;
  return (values.to(torch::kFloat) * scales.unsqueeze(-1)).to(s.dtype);
}

torch::Tensor PagedKvCache::Attend(size_t layer, torch::Tensor q, torch::Tensor k, torch::Tensor v,
                                   torch::Tensor* probs_out) {
  const KvStoreShape& s = store_->shape();
  const int64_t n = q.size(1), past = slots_, hd = s.head_dim, heads = q.size(0);
  const bool rerotate = config_.RerotatesKeys();
  const int64_t pos0 = rerotate ? slots_ : length_;
  torch::Tensor cos = s.cos.slice(0, pos0, pos0 + n).to(q.scalar_type());
  torch::Tensor sin = s.sin.slice(0, pos0, pos0 + n).to(q.scalar_type());
  q = ApplyRotary(q, cos, sin, s.rotary_dims);
  Write(layer, true, past, rerotate ? k : ApplyRotary(k, cos, sin, s.rotary_dims));
  Write(layer, false, past, v);

  const bool tracks_queries =
      config_.policy == KvPolicy::kH2o || config_.policy == KvPolicy::kHierarchical;
  if (tracks_queries) {
    queries_[layer] = queries_[layer].defined() ? torch::cat({queries_[layer], q}, 1) : q.clone();
  }

  // Store first, then read: every query sees the stored (for int8: dequantised) keys and values
  // of every slot, its own forward's included, so that a token computed in a forward of n
  // tokens sees exactly what it would see computed alone (docs/kv_cache.md, "Exactness").
  torch::Tensor keys = ReadSlots(layer, true, past + n);
  torch::Tensor values = ReadSlots(layer, false, past + n);
  if (rerotate) {
    keys = ApplyRotary(keys, s.cos.slice(0, 0, past + n).to(keys.scalar_type()),
                       s.sin.slice(0, 0, past + n).to(keys.scalar_type()), s.rotary_dims);
  }
  torch::Tensor scores = AttentionScores(q, keys);
  if (log_count_[layer].defined() && log_count_[layer].size(1) > 0) {
    // Merged slots stand for `count` tokens. Slots after the last compression hold one token
    // each (log 1 = 0), so only the slots the last compression left carry a bias.
    scores = scores.clone();
    scores.slice(-1, 0, log_count_[layer].size(1))
        .add_(log_count_[layer].unsqueeze(1).to(scores.scalar_type()));
  }
  if (config_.policy == KvPolicy::kQueryAware) MaskUnselectedPages(layer, q, keys, &scores);
  torch::Tensor probs = CausalProbs(scores);
  if (probs_out) *probs_out = probs;
  return AttendValues(probs, values);
}

// Quest, per query position p (slots are positions under query_aware): the eligible pages are
// those lying entirely below p (pages j with (j + 1) * block <= p), committed or not; when more
// than `pages` are eligible, p attends to the top `pages` of them by the bound
// sum_d max(q_d min_d, q_d max_d) plus every slot from floor(p / block) * block to p. The page
// summaries come from the keys this path reads anyway (none are kept between forwards: the CPU
// engine keeps its own, PagedKvCache::SummarizePages). Applied as a mask over a full read (the
// selection, not the saving).
void PagedKvCache::MaskUnselectedPages(size_t layer, const torch::Tensor& q, const torch::Tensor& keys,
                                       torch::Tensor* scores) {
  const int64_t b = store_->block(), n = q.size(1), heads = q.size(0), past = length_;
  const int64_t eligible_last = (past + n - 1) / b;  // eligible pages of the forward's last query
  if (eligible_last <= config_.pages) return;
  torch::Tensor k = keys.slice(1, 0, eligible_last * b).to(torch::kFloat);
  k = k.reshape({k.size(0), eligible_last, b, k.size(2)});
  const torch::Tensor mn = k.amin(2), mx = k.amax(2);
  const int64_t pages = eligible_last;
  torch::Tensor qf = q.to(torch::kFloat).unsqueeze(2);  // [heads, n, 1, hd]
  torch::Tensor bound = torch::maximum(qf * mn.unsqueeze(1), qf * mx.unsqueeze(1)).sum(-1);  // [heads, n, pages]
  // Row i (position past + i) may choose among its first (past + i) / b pages.
  std::vector<int64_t> eligible_rows(n);
  for (int64_t i = 0; i < n; ++i) eligible_rows[i] = (past + i) / b;
  torch::Tensor eligible_count = torch::tensor(eligible_rows, torch::kLong).to(q.device());
  torch::Tensor eligible =
      torch::arange(pages, torch::TensorOptions().dtype(torch::kLong).device(q.device())).unsqueeze(0) <
      eligible_count.unsqueeze(1);  // [n, pages]
  bound = bound.masked_fill(eligible.logical_not().unsqueeze(0), -std::numeric_limits<float>::infinity());
  // Ties go to the lower page (a stable sort), as in the CPU engine's kernel.
  torch::Tensor top =
      std::get<1>(bound.sort(/*stable=*/true, -1, /*descending=*/true)).slice(-1, 0, config_.pages);
  torch::Tensor unselected = torch::ones_like(bound, torch::kBool).scatter(-1, top, false);
  // Only rows with more eligible pages than `pages` select; the others attend to every page.
  torch::Tensor selects = (eligible_count > config_.pages).unsqueeze(0).unsqueeze(-1);  // [1, n, 1]
  torch::Tensor drop = unselected.logical_and(eligible.unsqueeze(0)).logical_and(selects);
  drop = drop.unsqueeze(-1).expand({heads, n, pages, b}).reshape({heads, n, pages * b});
  *scores = scores->clone();
  scores->slice(-1, 0, pages * b).masked_fill_(drop, -std::numeric_limits<float>::infinity());
}

absl::Status PagedKvCache::Truncate(int64_t length) {
  if (length < 0 || length > length_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot truncate a sequence of ", length_,
                                                   " tokens to ", length));
  }
  if (length < committed_) {
    if (evicted_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot truncate to ", length, ": positions below the committed length ", committed_,
          " were already compressed by KV policy ", config_.ToString(), " (re-prefill instead)"));
    }
    // Nothing evicted yet: slots are still positions, so the committed part can shrink.
    committed_ = length;
    committed_slots_ = length;
    for (size_t l = 0; l < scores_.size(); ++l) {
      if (scores_[l].defined()) scores_[l] = scores_[l].slice(1, 0, length);
      if (log_count_[l].defined()) log_count_[l] = log_count_[l].slice(1, 0, length);
    }
  }
  // queries_ holds the queries of positions [segment_start_, length_) (segment_start_ is 0
  // while truncating below the committed length is allowed).
  for (auto& q : queries_) {
    if (q.defined()) q = q.slice(1, 0, length - segment_start_);
  }
  slots_ = committed_slots_ + (length - committed_);
  length_ = length;
  DropSummariesBeyond(slots_);
  ReleaseBlocksBeyond(slots_);
  return absl::OkStatus();
}

absl::Status PagedKvCache::Commit(int64_t length) {
  if (length < committed_ || length > length_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot commit ", length, " tokens of a sequence of ",
                                                   length_, " with ", committed_, " committed"));
  }
  if (length == committed_) return absl::OkStatus();
  // BeginForward keeps length_ at or below the next boundary, so one commit reaches at most one.
  const KvBoundaries bounds = config_.Boundaries();
  const bool at_boundary = bounds.any() && length == bounds.Next(committed_);
  const int64_t new_committed_slots = committed_slots_ + (length - committed_);
  committed_ = length;
  committed_slots_ = new_committed_slots;
  if (at_boundary) {
    if (config_.policy == KvPolicy::kH2o || config_.policy == KvPolicy::kHierarchical) {
      AccumulateScores();
    }
    Evict();
    segment_start_ = committed_;
    segment_slots_ = committed_slots_;
  }
  return absl::OkStatus();
}

// Attention mass that the queries of the segment [segment_start_, committed_) (all committed:
// this runs at the boundary that ends it) give to each slot, recomputed from their stored
// queries. One pass per boundary in chunks of rows fixed relative to the segment's start, so
// the float sums never depend on how the segment's positions were grouped into forwards or
// rounds; and a rolled-back speculative query never counts.
void PagedKvCache::AccumulateScores() {
  const int64_t first = segment_slots_, m = committed_ - segment_start_;
  for (size_t l = 0; l < queries_.size(); ++l) {
    torch::Tensor keys = ReadSlots(l, true, committed_slots_);
    torch::Tensor acc = torch::zeros({keys.size(0), committed_slots_},
                                     torch::TensorOptions().dtype(torch::kFloat).device(keys.device()));
    if (scores_[l].defined()) acc.slice(1, 0, first).copy_(scores_[l]);
    torch::Tensor bias;
    if (config_.policy == KvPolicy::kHierarchical) {
      bias = torch::zeros_like(acc);
      if (log_count_[l].defined()) bias.slice(1, 0, first).copy_(log_count_[l]);
      log_count_[l] = bias;
    }
    constexpr int64_t kChunk = 256;  // bounds the [heads, rows, keys] temporary
    for (int64_t r = 0; r < m; r += kChunk) {
      const int64_t rows = std::min(kChunk, m - r);
      const int64_t visible = first + r + rows;
      torch::Tensor q = queries_[l].slice(1, r, r + rows);
      torch::Tensor s = AttentionScores(q, keys.slice(1, 0, visible)).to(torch::kFloat);
      if (bias.defined()) s = s + bias.slice(1, 0, visible).unsqueeze(1);
      acc.slice(1, 0, visible).add_(CausalProbs(s).sum(1));
    }
    scores_[l] = acc;
    queries_[l] = queries_[l].slice(1, m);
  }
}

void PagedKvCache::Evict() {
  const int64_t c = committed_slots_, tail = slots_ - committed_slots_;
  const torch::Device device = store_->shape().device;
  int64_t kept = 0;
  for (size_t l = 0; l < store_->layers().size(); ++l) {
    const int64_t heads = store_->shape().layer_heads[l];
    if (config_.policy == KvPolicy::kHierarchical) {
      // Merge matrix W [heads, kept, c]: kept slots copy one slot, cold slots average a group.
      torch::Tensor scores = scores_[l].to(torch::kCPU).contiguous();
      torch::Tensor counts = log_count_[l].to(torch::kCPU, torch::kFloat).exp().contiguous();
      const int64_t cold_cap = std::max<int64_t>(1, config_.budget / 4);
      const int64_t warm = config_.budget - config_.sink - config_.recent - cold_cap;
      const int64_t mid_begin = std::min(config_.sink, c), mid_end = std::max(mid_begin, c - config_.recent);
      std::vector<std::vector<std::vector<int64_t>>> rows(heads);  // per head: groups of slots
      for (int64_t h = 0; h < heads; ++h) {
        std::vector<int64_t> mid(mid_end - mid_begin);
        std::iota(mid.begin(), mid.end(), mid_begin);
        auto sc = scores.accessor<float, 2>();
        std::vector<float> score(mid.size());
        for (size_t i = 0; i < mid.size(); ++i) score[i] = sc[h][mid[i]];
        std::vector<size_t> order(mid.size());
        std::iota(order.begin(), order.end(), 0);
        const int64_t w = std::clamp<int64_t>(warm, 0, mid.size());
        std::partial_sort(order.begin(), order.begin() + w, order.end(),
                          [&](size_t a, size_t b) { return score[a] > score[b]; });
        std::vector<bool> is_warm(mid.size(), false);
        for (int64_t i = 0; i < w; ++i) is_warm[order[i]] = true;
        std::vector<int64_t> evicted;
        for (size_t i = 0; i < mid.size(); ++i) if (!is_warm[i]) evicted.push_back(mid[i]);
        const int64_t groups = std::min<int64_t>(cold_cap, (evicted.size() + config_.pool - 1) / config_.pool);
        // Slots in position order: sinks, then the middle (warm slots and cold groups), recent.
        auto& out = rows[h];
        for (int64_t i = 0; i < mid_begin; ++i) out.push_back({i});
        size_t e = 0;
        int64_t g = 0;
        for (size_t i = 0; i < mid.size(); ++i) {
          if (is_warm[i]) {
            out.push_back({mid[i]});
          } else if (e < evicted.size() && evicted[e] == mid[i] && groups > 0) {
            // Group g takes evicted[begin, end): as equal as possible, in position order.
            const size_t begin = evicted.size() * g / groups, end = evicted.size() * (g + 1) / groups;
            if (e == begin) {
              out.push_back(std::vector<int64_t>(evicted.begin() + begin, evicted.begin() + end));
              ++g;
            }
            ++e;
          }
        }
        for (int64_t i = mid_end; i < c; ++i) out.push_back({i});
      }
      kept = static_cast<int64_t>(rows[0].size());
      torch::Tensor weights = torch::zeros({heads, kept, c});
      torch::Tensor member = torch::zeros({heads, kept, c});
      auto cnt = counts.accessor<float, 2>();
      auto wa = weights.accessor<float, 3>();
      auto ma = member.accessor<float, 3>();
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t r = 0; r < kept; ++r) {
          double total = 0;
          for (int64_t j : rows[h][r]) total += cnt[h][j];
          for (int64_t j : rows[h][r]) {
            wa[h][r][j] = static_cast<float>(cnt[h][j] / total);
            ma[h][r][j] = 1.0f;
          }
        }
      }
      weights = weights.to(device);
      member = member.to(device);
      torch::Tensor k = torch::matmul(weights, ReadSlots(l, true, c).to(torch::kFloat));
      torch::Tensor v = torch::matmul(weights, ReadSlots(l, false, c).to(torch::kFloat));
      torch::Tensor tk, tks, tv, tvs;
      ReadRaw(l, true, slots_, &tk, &tks);
      ReadRaw(l, false, slots_, &tv, &tvs);
      tk = tk.slice(1, c).clone(), tv = tv.slice(1, c).clone();
      if (config_.int8) tks = tks.slice(1, c).clone(), tvs = tvs.slice(1, c).clone();
      Write(l, true, 0, k);
      Write(l, false, 0, v);
      WriteRaw(l, true, kept, tk, tks);
      WriteRaw(l, false, kept, tv, tvs);
      scores_[l] = torch::matmul(member, scores_[l].unsqueeze(-1)).squeeze(-1);
      log_count_[l] = torch::matmul(member, counts.to(device).unsqueeze(-1)).squeeze(-1).log();
      continue;
    }
    // sink_window and h2o keep a subset of slots: a gather of the raw (possibly int8) storage.
    torch::Tensor keep;  // [heads, kept] ascending slot indices
    if (config_.policy == KvPolicy::kSinkWindow) {
      const int64_t sink = std::min(config_.sink, c);
      torch::Tensor idx = torch::cat({torch::arange(0, sink, torch::kLong),
                                      torch::arange(c - config_.window, c, torch::kLong)});
      keep = idx.to(device).unsqueeze(0).expand({heads, idx.size(0)});
    } else {  // h2o: the recent window plus the heaviest of the rest, per head
      const int64_t recent = config_.recent, heavy = config_.budget - config_.recent;
      torch::Tensor top = std::get<1>(scores_[l].slice(1, 0, c - recent).topk(heavy, -1));
      keep = std::get<0>(
          torch::cat({top, torch::arange(c - recent, c, torch::kLong).to(device).unsqueeze(0).expand({heads, recent})}, 1)
              .sort(-1));
    }
    kept = keep.size(1);
    torch::Tensor all = torch::cat({keep, torch::arange(c, slots_, torch::kLong).to(device).unsqueeze(0).expand({heads, tail})}, 1);
    for (bool keys : {true, false}) {
      torch::Tensor raw, scales;
      ReadRaw(l, keys, slots_, &raw, &scales);
      torch::Tensor moved = raw.gather(1, all.unsqueeze(-1).expand({heads, all.size(1), raw.size(2)}));
      if (config_.int8) scales = scales.gather(1, all);
      WriteRaw(l, keys, 0, moved, scales);
    }
    if (scores_[l].defined()) scores_[l] = scores_[l].gather(1, keep);
  }
  committed_slots_ = kept;
  slots_ = kept + tail;
  evicted_ = true;
  ReleaseBlocksBeyond(slots_);
}

}  // namespace specdec
