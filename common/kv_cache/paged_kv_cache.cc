// Paged KV storage and the per-sequence cache (see paged_kv_cache.h and docs/kv_cache.md).
#include "common/kv_cache/paged_kv_cache.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace specdec {

using torch::indexing::Slice;

namespace {

torch::Tensor RotateHalf(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Rows of a causal mask for `n` new queries that see every one of `total - n` older keys.
torch::Tensor CausalMask(int64_t n, int64_t total, const torch::Device& device) {
  return torch::ones({n, total}, torch::TensorOptions().dtype(torch::kBool).device(device))
      .triu(total - n + 1);
}

}  // namespace

torch::Tensor ApplyRotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                          int64_t rot) {
  if (rot == 0) return x;
  torch::Tensor x_rot = x.slice(-1, 0, rot);
  torch::Tensor rotated = x_rot * cos + RotateHalf(x_rot) * sin;
  if (rot == x.size(-1)) return rotated;
  return torch::cat({rotated, x.slice(-1, rot)}, -1);
}

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
    if (q.defined()) q = q.slice(1, 0, slots_ - committed_slots_);
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
  torch::Tensor k_rot = ApplyRotary(k, cos, sin, s.rotary_dims);
  Write(layer, true, past, rerotate ? k : k_rot);
  Write(layer, false, past, v);

  const bool tracks_queries =
      config_.policy == KvPolicy::kH2o || config_.policy == KvPolicy::kHierarchical;
  if (tracks_queries) {
    queries_[layer] = queries_[layer].defined() ? torch::cat({queries_[layer], q}, 1) : q.clone();
  }

  torch::Tensor keys, values;
  const bool bias = log_count_[layer].defined() && committed_slots_ > 0;
  if (!config_.int8 && !rerotate && config_.policy != KvPolicy::kQueryAware) {
    // The stored values are the fresh ones: read everything back (as the contiguous cache does).
    keys = ReadSlots(layer, true, past + n);
    values = ReadSlots(layer, false, past + n);
  } else {
    torch::Tensor old_k = ReadSlots(layer, true, past);
    torch::Tensor old_v = ReadSlots(layer, false, past);
    if (rerotate && past > 0) {
      old_k = ApplyRotary(old_k, s.cos.slice(0, 0, past).to(q.scalar_type()),
                          s.sin.slice(0, 0, past).to(q.scalar_type()), s.rotary_dims);
    }
    keys = torch::cat({old_k, k_rot.to(old_k.scalar_type())}, 1);
    values = torch::cat({old_v, v.to(old_v.scalar_type())}, 1);
  }
  const int64_t total = keys.size(1);
  torch::Tensor scores = torch::matmul(q, keys.transpose(1, 2)) * (1.0 / std::sqrt(static_cast<double>(hd)));
  if (bias) {
    scores = scores.clone();
    scores.slice(-1, 0, committed_slots_).add_(log_count_[layer].unsqueeze(1).to(scores.scalar_type()));
  }
  const int64_t b = store_->block();
  // Pages lying entirely below the chunk's last query, committed or not (slots are positions).
  const int64_t full_pages = (length_ + n - 1) / b;
  if (config_.policy == KvPolicy::kQueryAware && full_pages > config_.pages) {
    // Quest: an upper bound of q.k per page from the page's per-dimension key min and max; the
    // query at position p chooses among the pages below it ((j + 1) * block <= p) its top
    // `pages` (ties: the lower page, by a stable sort) and attends to them and to every slot from
    // floor(p / block) * block. Applied as a mask, per query, so a token's output never depends
    // on later tokens. The CPU engine computes the same without reading the other pages
    // (common/cpu_kernels/query_aware.h).
    torch::Tensor paged_keys =
        keys.slice(1, 0, full_pages * b).to(torch::kFloat).reshape({heads, full_pages, b, hd});
    torch::Tensor qf = q.to(torch::kFloat).unsqueeze(2);  // [heads, n, 1, hd]
    torch::Tensor bound = torch::maximum(qf * paged_keys.amin(2).unsqueeze(1),
                                         qf * paged_keys.amax(2).unsqueeze(1))
                              .sum(-1);  // [heads, n, pages]
    torch::Tensor page = torch::arange(full_pages, torch::TensorOptions().dtype(torch::kLong).device(q.device()));
    torch::Tensor position = torch::arange(length_, length_ + n, torch::TensorOptions().dtype(torch::kLong).device(q.device()));
    torch::Tensor eligible = (page.unsqueeze(0) + 1) * b <= position.unsqueeze(1);  // [n, pages]
    bound = bound.masked_fill(eligible.logical_not().unsqueeze(0), -std::numeric_limits<float>::infinity());
    torch::Tensor top = std::get<1>(bound.sort(/*stable=*/true, -1, /*descending=*/true)).slice(-1, 0, config_.pages);
    torch::Tensor drop = torch::ones_like(bound, torch::kBool).scatter(-1, top, false);
    // A query with no more eligible pages than `pages` keeps them all.
    torch::Tensor selects = (eligible.sum(-1) > config_.pages).view({1, n, 1});
    drop = drop.logical_and(selects).logical_and(eligible.unsqueeze(0));
    drop = drop.unsqueeze(-1).expand({heads, n, full_pages, b}).reshape({heads, n, full_pages * b});
    scores = scores.clone();
    scores.slice(-1, 0, full_pages * b).masked_fill_(drop, -std::numeric_limits<float>::infinity());
  }
  if (n > 1) scores = scores.masked_fill(CausalMask(n, total, q.device()), -std::numeric_limits<float>::infinity());
  torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat);
  if (probs_out) *probs_out = probs;
  return torch::matmul(probs.to(values.scalar_type()), values);
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
      if (queries_[l].defined()) queries_[l] = queries_[l].slice(1, 0, 0);
    }
  } else {
    for (auto& q : queries_) {
      if (q.defined()) q = q.slice(1, 0, length - committed_);
    }
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
  const int64_t new_committed_slots = committed_slots_ + (length - committed_);
  if (config_.policy == KvPolicy::kH2o || config_.policy == KvPolicy::kHierarchical) {
    AccumulateScores(new_committed_slots);
  }
  committed_ = length;
  committed_slots_ = new_committed_slots;
  const int64_t limit = config_.CommittedLimit();
  if (config_.Evicts() && committed_slots_ > limit + store_->block()) Evict();
  return absl::OkStatus();
}

// Attention mass that the newly committed queries give to each committed slot, recomputed from
// their stored queries so that a rolled-back speculative query never counts.
void PagedKvCache::AccumulateScores(int64_t new_committed_slots) {
  const int64_t first = committed_slots_, m = new_committed_slots - committed_slots_;
  const double scale = 1.0 / std::sqrt(static_cast<double>(store_->shape().head_dim));
  for (size_t l = 0; l < queries_.size(); ++l) {
    torch::Tensor keys = ReadSlots(l, true, new_committed_slots);
    torch::Tensor acc = torch::zeros({keys.size(0), new_committed_slots},
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
      torch::Tensor s = torch::matmul(q, keys.slice(1, 0, visible).transpose(1, 2)).to(torch::kFloat) * scale;
      if (bias.defined()) s = s + bias.slice(1, 0, visible).unsqueeze(1);
      s = s.masked_fill(CausalMask(rows, visible, s.device()), -std::numeric_limits<float>::infinity());
      acc.slice(1, 0, visible).add_(torch::softmax(s, -1).sum(1));
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
