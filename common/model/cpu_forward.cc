// The CPU engine's forward pass: every layer runs over raw float buffers that live as long as
// the thread (no tensor created per token), its products go through packed weights
// (common/cpu_kernels/matmul.h), and attention over a contiguous cache is a plain loop. Paged
// caches (KV policies) keep their own attention (paged_kv_cache.h), called with views of the
// same buffers. The math follows Hugging Face's GPTNeoXForCausalLM, as model.cc's does.
#include <algorithm>
#include <cstring>
#include <vector>

#include "common/cpu_kernels/matmul.h"
#include "common/cpu_kernels/ops.h"
#include "common/cpu_kernels/query_aware.h"
#include "common/model/model_impl.h"

namespace specdec {
namespace {

// Buffers reused by every forward on this thread; they only grow.
struct Scratch {
  std::vector<float> x, ln, qkv, attn, mlp, scores, probs, last;
  std::vector<const float*> key_rows, value_rows, summaries;
  QueryAwareScratch query_aware;
};

Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

float* AtLeast(std::vector<float>& buffer, int64_t n) {
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

Epilogue ActivationEpilogue(const std::string& act) {
  if (act == "gelu") return Epilogue::kGelu;
  if (act == "relu") return Epilogue::kRelu;
  return Epilogue::kGeluTanh;  // gelu_new / gelu_fast
}

const float* Data(const torch::Tensor& t) { return t.data_ptr<float>(); }

// Rotates a sequence's new rows in place (queries and keys at positions past .. past + n - 1),
// copies their keys and values into the cache rows `row_at(slot, keys)` (head h at + h *
// kv_head_stride; slot = position for every cache that comes here) and points
// scratch.key_rows / value_rows at every cached row [0, past + n). Rows come in runs of `run`
// slots `row_step` floats apart (a paged cache's block), so row_at is asked once per run.
// Returns the rows' queries.
template <typename RowAt>
float* StoreRows(const Model::Impl& m, const ViewLayer& layer, const PassRows& rows, int64_t past,
                 float* qkv, int64_t kv_head_stride, RowAt row_at, int64_t run, int64_t row_step,
                 Scratch& scratch) {
  const int64_t hd = m.config.head_dim(), heads = layer.num_heads, width = heads * hd;
  const int64_t rot = m.config.rotary_dims(), n = rows.n;
  float* q = qkv + rows.offset * 3 * width;
  for (int64_t i = 0; i < n; ++i) {
    float* row = q + i * 3 * width;
    const int64_t pos = past + i;
    if (rot > 0) {
      const float* cos = Data(m.cos) + pos * rot;
      const float* sin = Data(m.sin) + pos * rot;
      ApplyRotaryInPlace(row, heads, 3 * hd, rot, cos, sin);       // queries
      ApplyRotaryInPlace(row + hd, heads, 3 * hd, rot, cos, sin);  // keys
    }
    float* k = row_at(pos, true);
    float* v = row_at(pos, false);
    for (int64_t h = 0; h < heads; ++h) {
      std::memcpy(k + h * kv_head_stride, row + h * 3 * hd + hd, hd * sizeof(float));
      std::memcpy(v + h * kv_head_stride, row + h * 3 * hd + 2 * hd, hd * sizeof(float));
    }
  }
  scratch.key_rows.resize(static_cast<size_t>(past + n));
  scratch.value_rows.resize(static_cast<size_t>(past + n));
  const float *k = nullptr, *v = nullptr;
  for (int64_t j = 0; j < past + n; ++j) {
    if (j % run == 0) k = row_at(j, true), v = row_at(j, false);
    scratch.key_rows[j] = k + (j % run) * row_step;
    scratch.value_rows[j] = v + (j % run) * row_step;
  }
  return q;
}

// Full causal attention of the rows over scratch.key_rows / value_rows (StoreRows).
void AttendAll(const ViewLayer& layer, const PassRows& rows, int64_t past, int64_t hd,
               const float* q, int64_t kv_head_stride, float* attn, Scratch& scratch,
               AttentionStats* stats) {
  const int64_t heads = layer.num_heads, width = heads * hd, n = rows.n;
  float* probs = stats ? AtLeast(scratch.probs, heads * n * (past + n)) : nullptr;
  CausalAttention(q, 3 * width, 3 * hd, scratch.key_rows.data(), scratch.value_rows.data(),
                  kv_head_stride, n, past, heads, hd, attn + rows.offset * width, width,
                  AtLeast(scratch.scores, past + n), probs);
  if (stats) RecordAttentionStats(layer, probs, heads, n, past + n, past, stats);
}

// Attention of one sequence's rows against its contiguous cache, which it extends. `qkv` holds
// the pass's [rows, heads * 3 * head_dim] projection (per head: q, k, v), rotated in place.
void AttendContiguous(const Model::Impl& m, const ViewLayer& layer, size_t slot, PassRows& rows,
                      float* qkv, float* attn, Scratch& scratch, AttentionStats* stats) {
  const int64_t hd = m.config.head_dim(), width = layer.num_heads * hd, past = rows.past;
  Sequence::State& state = *rows.state;
  std::vector<float>& keys = state.cpu_k[slot];
  std::vector<float>& values = state.cpu_v[slot];
  const size_t needed = static_cast<size_t>((past + rows.n) * width);
  if (keys.size() < needed) {
    // Doubling keeps appends amortised O(1); positions past `length` are garbage.
    const size_t capacity = std::max({needed, keys.size() * 2, static_cast<size_t>(64 * width)});
    keys.resize(capacity);
    values.resize(capacity);
  }
  auto row_at = [&](int64_t j, bool k) { return (k ? keys : values).data() + j * width; };
  const float* q = StoreRows(m, layer, rows, past, qkv, hd, row_at, past + rows.n, width, scratch);
  AttendAll(layer, rows, past, hd, q, hd, attn, scratch, stats);
}

// The paged cache of a `full` policy (DirectRows): the same attention, reading and writing the
// pool's blocks through the sequence's block table.
void AttendPagedDirect(const Model::Impl& m, const ViewLayer& layer, size_t slot, PassRows& rows,
                       float* qkv, float* attn, Scratch& scratch, AttentionStats* stats) {
  PagedKvCache& paged = *rows.state->paged;
  const int64_t past = paged.slots();  // == paged.length(): `full` never evicts
  const int64_t head_stride = paged.HeadStride(slot);
  auto row_at = [&](int64_t j, bool k) { return paged.SlotRow(slot, k, j); };
  const float* q = StoreRows(m, layer, rows, past, qkv, head_stride, row_at, paged.config().block_tokens,
                             m.config.head_dim(), scratch);
  AttendAll(layer, rows, past, m.config.head_dim(), q, head_stride, attn, scratch, stats);
}

// The paged cache of a `query_aware` policy (DirectQueryAware): the new rows are stored as for
// `full`, the pages they complete are summarised, then each query and head attends only to its
// selected pages and its partial page (query_aware.h). No attention statistics: a query's
// probabilities cover only the rows it read.
void AttendQueryAware(const Model::Impl& m, const ViewLayer& layer, size_t slot, PassRows& rows,
                      float* qkv, float* attn, Scratch& scratch) {
  PagedKvCache& paged = *rows.state->paged;
  const int64_t hd = m.config.head_dim(), heads = layer.num_heads, width = heads * hd;
  const int64_t past = paged.slots();  // == paged.length(): query_aware never evicts
  const int64_t head_stride = paged.HeadStride(slot);
  auto row_at = [&](int64_t j, bool k) { return paged.SlotRow(slot, k, j); };
  const float* q = StoreRows(m, layer, rows, past, qkv, head_stride, row_at, paged.config().block_tokens,
                             hd, scratch);
  paged.SummarizePages(slot, past + rows.n);
  scratch.summaries.resize(static_cast<size_t>(heads));
  for (int64_t h = 0; h < heads; ++h) scratch.summaries[h] = paged.PageSummaries(slot, h);
  const KvCacheConfig& config = paged.config();
  QueryAwareAttention(q, 3 * width, 3 * hd, rows.n, past, scratch.key_rows.data(),
                      scratch.value_rows.data(), head_stride, scratch.summaries.data(),
                      config.block_tokens, config.pages, heads, hd, attn + rows.offset * width,
                      width, &scratch.query_aware, nullptr);
}

// The same through the sequence's paged cache, which applies rotary and the KV policy itself.
void AttendPaged(const Model::Impl& m, const ViewLayer& layer, size_t slot, PassRows& rows,
                 float* qkv, float* attn, AttentionStats* stats) {
  const int64_t hd = m.config.head_dim(), heads = layer.num_heads, width = heads * hd;
  const int64_t n = rows.n;
  // [n, heads, 3 * hd] -> [heads, n, 3 * hd]
  torch::Tensor all = torch::from_blob(qkv + rows.offset * 3 * width, {n, heads, 3 * hd}, torch::kFloat)
                          .transpose(0, 1);
  torch::Tensor probs;
  PagedKvCache& paged = *rows.state->paged;
  const int64_t past = paged.slots();
  torch::Tensor out = paged.Attend(slot, all.slice(-1, 0, hd), all.slice(-1, hd, 2 * hd),
                                   all.slice(-1, 2 * hd, 3 * hd), stats ? &probs : nullptr);  // [heads, n, hd]
  torch::from_blob(attn + rows.offset * width, {n, heads, hd}, torch::kFloat).copy_(out.transpose(0, 1));
  if (stats) {
    torch::Tensor p = probs.to(torch::kCPU, torch::kFloat).contiguous();
    RecordAttentionStats(layer, p.data_ptr<float>(), heads, n, p.size(2), past, stats);
  }
}

}  // namespace

void CpuForward(const ModelView::Impl& view, std::vector<PassRows>& pass,
                absl::Span<const int32_t> tokens, std::vector<float>* logits,
                std::vector<std::vector<float>>* record, AttentionStats* stats) {
  const Model::Impl& m = view.model->impl();
  const ModelConfig& c = m.config;
  const int64_t rows = static_cast<int64_t>(tokens.size());
  const int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  const float eps = static_cast<float>(c.layer_norm_eps);
  Scratch& s = ThreadScratch();
  int64_t max_width = 0;
  for (const ViewLayer& layer : view.layers) max_width = std::max(max_width, layer.num_heads * c.head_dim());
  float* x = AtLeast(s.x, rows * hidden);
  float* ln = AtLeast(s.ln, rows * hidden);
  float* qkv = AtLeast(s.qkv, rows * 3 * max_width);
  float* attn = AtLeast(s.attn, rows * max_width);
  float* mlp = AtLeast(s.mlp, rows * inter);

  const float* embed = Data(m.embed_in);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(x + r * hidden, embed + static_cast<int64_t>(tokens[r]) * hidden, hidden * sizeof(float));
  }
  for (PassRows& p : pass) {
    if (p.state->paged == nullptr && p.state->cpu_k.size() != view.layers.size()) {
      p.state->cpu_k.resize(view.layers.size());
      p.state->cpu_v.resize(view.layers.size());
    }
  }
  auto keep = [&] {
    if (record) record->emplace_back(x, x + rows * hidden);
  };
  keep();
  const Epilogue act = ActivationEpilogue(c.hidden_act);
  for (size_t slot = 0; slot < view.layers.size(); ++slot) {
    const ViewLayer& layer = view.layers[slot];
    const LayerWeights& w = *layer.base;
    const PackedLayer& pw = layer.packed;
    const int64_t width = layer.num_heads * c.head_dim();
    LayerNormRows(x, rows, hidden, Data(w.ln1_w), Data(w.ln1_b), eps, ln);
    MatMul(pw.qkv, ln, rows, hidden, qkv, 3 * width);
    AttentionStats* layer_stats = pass.size() == 1 ? stats : nullptr;
    for (PassRows& p : pass) {
      if (p.state->paged && p.state->paged->DirectQueryAware()) {
        AttendQueryAware(m, layer, slot, p, qkv, attn, s);
      } else if (p.state->paged && p.state->paged->DirectRows()) {
        AttendPagedDirect(m, layer, slot, p, qkv, attn, s, layer_stats);
      } else if (p.state->paged) {
        AttendPaged(m, layer, slot, p, qkv, attn, layer_stats);
      } else {
        AttendContiguous(m, layer, slot, p, qkv, attn, s, layer_stats);
      }
    }
    if (c.use_parallel_residual) {
      // x + attn(ln1(x)) + mlp(ln2(x)): the MLP reads x before the attention is added.
      LayerNormRows(x, rows, hidden, Data(w.ln2_w), Data(w.ln2_b), eps, ln);
      MatMul(pw.fc_in, ln, rows, hidden, mlp, inter, act);
      MatMul(pw.dense, attn, rows, width, x, hidden, Epilogue::kAccumulate);
      MatMul(pw.fc_out, mlp, rows, inter, x, hidden, Epilogue::kAccumulate);
    } else {
      MatMul(pw.dense, attn, rows, width, x, hidden, Epilogue::kAccumulate);
      LayerNormRows(x, rows, hidden, Data(w.ln2_w), Data(w.ln2_b), eps, ln);
      MatMul(pw.fc_in, ln, rows, hidden, mlp, inter, act);
      MatMul(pw.fc_out, mlp, rows, inter, x, hidden, Epilogue::kAccumulate);
    }
    keep();
  }
  for (PassRows& p : pass) {
    if (p.state->paged != nullptr) p.state->paged->EndForward(p.n);
    p.state->length = p.past + p.n;
  }
  // The final norm and the head only for the rows whose logits are wanted.
  int64_t wanted = 0;
  float* last = AtLeast(s.last, rows * hidden);
  for (const PassRows& p : pass) {
    const int64_t first = p.wanted == LogitsWanted::kLast ? p.offset + p.n - 1 : p.offset;
    const int64_t count = p.offset + p.n - first;
    LayerNormRows(x + first * hidden, count, hidden, Data(m.final_ln_w), Data(m.final_ln_b), eps,
                  last + wanted * hidden);
    wanted += count;
  }
  if (record) record->emplace_back(last, last + wanted * hidden);
  logits->resize(static_cast<size_t>(wanted * view.cols));
  MatMul(view.head_packed, last, wanted, hidden, logits->data(), view.cols);
}

}  // namespace specdec
