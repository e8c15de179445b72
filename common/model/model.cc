// GPT-NeoX forward pass in libtorch (see model.h). The math follows Hugging Face's
// GPTNeoXForCausalLM (eager attention) so that logits match its fixtures within 1e-4.
#include "common/model/model.h"

#include <dlfcn.h>

#include <cmath>
#include <fstream>
#include <algorithm>
#include <set>
#include <sstream>
#include <mutex>
#include <thread>

#include <ATen/Context.h>
#include <c10/core/CPUAllocator.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/attention/attention.h"
#include "common/cpu_kernels/cpu_isa.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/kv_cache/paged_kv_cache.h"
#include "common/model/caching_cpu_allocator.h"
#include "common/cpu_kernels/parallel.h"
#include "common/model/model_impl.h"
#include "common/model/weights.h"
#include "nlohmann/json.hpp"

namespace specdec {

using torch::indexing::Slice;

namespace {

absl::Status TorchError(const c10::Error& e, absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
}

// x @ w^T + b (the libtorch path: GPUs). A single row goes through matrix-vector products.
torch::Tensor Linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {}) {
  if (x.dim() == 2 && x.size(0) == 1) {
    torch::Tensor row = x.select(0, 0);
    torch::Tensor y = b.defined() ? torch::addmv(b, w, row) : torch::mv(w, row);
    return y.unsqueeze(0);
  }
  return b.defined() ? torch::linear(x, w, b) : torch::linear(x, w);
}

torch::Tensor Activation(const torch::Tensor& x, const std::string& act) {
  if (act == "gelu") return torch::gelu(x);
  if (act == "relu") return torch::relu(x);
  return torch::gelu(x, "tanh");  // gelu_new / gelu_fast
}

// Appends [heads, n, head_dim] to a growable cache; returns the view of all cached positions.
torch::Tensor AppendToCache(torch::Tensor& cache, const torch::Tensor& fresh, int64_t length) {
  const int64_t n = fresh.size(1);
  const int64_t needed = length + n;
  if (!cache.defined() || cache.size(1) < needed) {
    int64_t capacity = cache.defined() ? cache.size(1) : 0;
    capacity = std::max<int64_t>({64, capacity * 2, needed});
    torch::Tensor grown =
        torch::empty({fresh.size(0), capacity, fresh.size(2)}, fresh.options());
    if (length > 0) grown.slice(1, 0, length).copy_(cache.slice(1, 0, length));
    cache = grown;
  }
  cache.slice(1, length, needed).copy_(fresh);
  return cache.slice(1, 0, needed);
}

}  // namespace

void RecordAttentionStats(const ViewLayer& layer, const float* probs, int64_t heads, int64_t n,
                          int64_t keys, int64_t past, AttentionStats* stats) {
  if (stats->layers.size() <= static_cast<size_t>(layer.index)) stats->layers.resize(layer.index + 1);
  auto& per_head = stats->layers[layer.index];
  int64_t max_head = 0;
  for (int64_t h : layer.heads) max_head = std::max(max_head, h + 1);
  if (static_cast<int64_t>(per_head.size()) < max_head) per_head.resize(max_head);
  for (int64_t h = 0; h < heads; ++h) {
    HeadAttentionStats& s = per_head[layer.heads[h]];
    for (int64_t i = 0; i < n; ++i) {
      const float* a = probs + (h * n + i) * keys;
      const int64_t q = past + i;  // keys 0..q are visible
      double entropy = 0;
      for (int64_t j = 0; j <= q; ++j) {
        const double v = a[j];
        if (v > 0) entropy -= v * std::log(v);
      }
      s.rows += 1;
      s.entropy_sum += entropy;
      s.uniform_entropy_sum += std::log(static_cast<double>(q + 1));
      for (int d = 0; d < HeadAttentionStats::kOffsets && d <= q; ++d) s.offset_mass_sum[d] += a[q - d];
      s.first_token_mass_sum += a[0];
    }
  }
}

// The libtorch path's attention probabilities ([heads, n, keys]) into `stats`.
static void RecordAttentionStats(const ViewLayer& layer, const torch::Tensor& probs, int64_t past,
                                 AttentionStats* stats) {
  torch::Tensor p = probs.to(torch::kCPU, torch::kFloat).contiguous();
  RecordAttentionStats(layer, p.data_ptr<float>(), p.size(0), p.size(1), p.size(2), past, stats);
}

// Attention of one sequence's rows ([n, heads * 3 * hd] of the layer's qkv projection) against
// its cache, which it extends; returns [n, heads * hd] before the output projection.
static torch::Tensor Attend(const Model::Impl& m, const ViewLayer& layer, const torch::Tensor& qkv_rows,
                            PassRows& rows, size_t layer_slot, AttentionStats* stats) {
  const ModelConfig& c = m.config;
  const int64_t n = rows.n;
  const int64_t hd = c.head_dim();
  const int64_t heads = layer.num_heads;
  const int64_t past = rows.past;
  // [n, heads * 3 * hd] -> [heads, n, 3 * hd]
  torch::Tensor qkv = qkv_rows.view({n, heads, 3 * hd}).transpose(0, 1);
  torch::Tensor q = qkv.slice(-1, 0, hd);
  torch::Tensor k = qkv.slice(-1, hd, 2 * hd);
  torch::Tensor v = qkv.slice(-1, 2 * hd, 3 * hd);
  if (PagedKvCache* paged = rows.state->paged.get()) {
    // The paged cache applies rotary itself (positions depend on the policy).
    torch::Tensor probs;
    torch::Tensor out = paged->Attend(layer_slot, q, k, v, stats ? &probs : nullptr);  // [heads, n, hd]
    if (stats != nullptr) RecordAttentionStats(layer, probs, paged->slots(), stats);
    return out.transpose(0, 1).reshape({n, heads * hd});
  }
  const int64_t rot = c.rotary_dims();
  q = ApplyRotary(q, rows.cos, rows.sin, rot);
  k = ApplyRotary(k, rows.cos, rows.sin, rot);
  torch::Tensor keys = AppendToCache(rows.state->k[layer_slot], k, past);    // [heads, past + n, hd]
  torch::Tensor values = AppendToCache(rows.state->v[layer_slot], v, past);  // [heads, past + n, hd]
  // New position i (absolute past + i) sees keys j <= past + i.
  torch::Tensor probs = CausalProbs(AttentionScores(q, keys));
  if (stats != nullptr) RecordAttentionStats(layer, probs, past, stats);
  return AttendValues(probs, values).transpose(0, 1).reshape({n, heads * hd});
}

// Runs `x` ([rows, hidden], the rows of every sequence in `pass`) through one layer: the matrix
// products over all rows at once (one read of the weights), attention per sequence with its
// own cache. Returns the new hidden state.
static torch::Tensor LayerForward(const Model::Impl& m, const ViewLayer& layer, torch::Tensor x,
                                  std::vector<PassRows>& pass, size_t layer_slot,
                                  AttentionStats* stats) {
  const ModelConfig& c = m.config;
  const LayerWeights& w = *layer.base;
  torch::Tensor ln1 = torch::layer_norm(x, {c.hidden_size}, w.ln1_w, w.ln1_b, c.layer_norm_eps);
  torch::Tensor qkv = Linear(ln1, layer.qkv_w, layer.qkv_b);  // [rows, heads * 3 * hd]
  torch::Tensor attn;
  if (pass.size() == 1) {
    attn = Attend(m, layer, qkv, pass[0], layer_slot, stats);
  } else {
    std::vector<torch::Tensor> parts;
    parts.reserve(pass.size());
    for (PassRows& rows : pass) {
      parts.push_back(Attend(m, layer, qkv.slice(0, rows.offset, rows.offset + rows.n), rows,
                             layer_slot, nullptr));
    }
    attn = torch::cat(parts, 0);
  }
  torch::Tensor attn_out = Linear(attn, layer.dense_w, w.dense_b);
  auto mlp = [&](const torch::Tensor& h) {
    torch::Tensor ln2 = torch::layer_norm(h, {c.hidden_size}, w.ln2_w, w.ln2_b, c.layer_norm_eps);
    return Linear(Activation(Linear(ln2, w.fc_in_w, w.fc_in_b), c.hidden_act), w.fc_out_w, w.fc_out_b);
  };
  if (c.use_parallel_residual) return x + attn_out + mlp(x);
  torch::Tensor h = x + attn_out;
  return h + mlp(h);
}

// The whole forward over the new tokens of every sequence in `pass` (their rows concatenated in
// `tokens`); returns the logits of the rows each wants, concatenated in pass order. Records
// hidden states when `record` is given (single sequence).
static torch::Tensor RunForward(const ModelView::Impl& view, std::vector<PassRows>& pass,
                                absl::Span<const int32_t> tokens,
                                std::vector<torch::Tensor>* record, AttentionStats* stats) {
  const Model::Impl& m = view.model->impl();
  const int64_t total = static_cast<int64_t>(tokens.size());
  torch::Tensor ids = torch::from_blob(const_cast<int32_t*>(tokens.data()), {total}, torch::kInt32)
                          .to(m.device, torch::kLong);
  torch::Tensor x = torch::embedding(m.embed_in, ids);
  for (PassRows& rows : pass) {
    Sequence::State& state = *rows.state;
    if (state.paged == nullptr) {
      rows.cos = m.cos.slice(0, rows.past, rows.past + rows.n).to(x.scalar_type());
      rows.sin = m.sin.slice(0, rows.past, rows.past + rows.n).to(x.scalar_type());
      if (state.k.size() != view.layers.size()) {
        state.k.resize(view.layers.size());
        state.v.resize(view.layers.size());
      }
    }
  }
  if (record) record->push_back(x);
  for (size_t i = 0; i < view.layers.size(); ++i) {
    x = LayerForward(m, view.layers[i], x, pass, i, stats);
    if (record) record->push_back(x);
  }
  for (PassRows& rows : pass) {
    if (rows.state->paged != nullptr) rows.state->paged->EndForward(rows.n);
    rows.state->length = rows.past + rows.n;
  }
  if (pass.size() == 1) {
    if (pass[0].wanted == LogitsWanted::kLast) x = x.slice(0, total - 1, total);
  } else {
    std::vector<int64_t> keep;
    for (const PassRows& rows : pass) {
      const int64_t first = rows.wanted == LogitsWanted::kLast ? rows.offset + rows.n - 1 : rows.offset;
      for (int64_t r = first; r < rows.offset + rows.n; ++r) keep.push_back(r);
    }
    x = x.index_select(0, torch::tensor(keep, torch::kLong).to(x.device()));
  }
  x = torch::layer_norm(x, {m.config.hidden_size}, m.final_ln_w, m.final_ln_b,
                        m.config.layer_norm_eps);
  if (record) record->push_back(x);
  return Linear(x, view.head_w);
}

// ---------------------------------------------------------------------------------------------
// Model

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

absl::StatusOr<std::shared_ptr<Model>> Model::Load(const std::string& model_dir,
                                                   const LoadOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl, LoadModelImpl(model_dir, options));
  return std::shared_ptr<Model>(new Model(std::move(impl)));
}

const ModelConfig& Model::config() const { return impl_->config; }
const std::string& Model::model_dir() const { return impl_->model_dir; }
std::string Model::device() const { return impl_->device.str(); }
std::string Model::dtype() const { return impl_->dtype_name; }
std::string Model::cpu_kernels() const {
  if (!impl_->cpu_engine) return "libtorch on " + impl_->device.str();
  std::string out = absl::StrCat("cpu engine, ", CpuIsaName(impl_->isa), " kernels, ",
                                 WeightDtypeName(impl_->weight_dtype), " weights");
  if (impl_->weight_dtype == WeightDtype::kBf16Dot) {
    // Which arithmetic bf16_dot got: the instruction, or f32 multiply-adds of the same values.
    absl::StrAppend(&out, UsesBf16DotInstruction(impl_->isa)
                              ? " (avx512_bf16 dot product)"
                              : " (bf16 products in f32 multiply-adds: no avx512_bf16)");
  }
  return out;
}
const std::vector<int32_t>& Model::vocab_rank() const { return impl_->vocab_rank; }

absl::StatusOr<std::shared_ptr<const ModelView>> Model::View(const LayerPlan& plan) const {
  RETURN_IF_ERROR(plan.Validate(impl_->config));
  auto view = std::make_unique<ModelView::Impl>();
  view->model = shared_from_this();
  view->plan = plan;
  const ModelConfig& c = impl_->config;
  try {
    c10::InferenceMode guard;
    for (int index : plan.LayersToRun(static_cast<int>(c.num_hidden_layers))) {
      const LayerWeights& w = impl_->layers[index];
      ViewLayer layer{index, {}, &w, w.qkv_w, w.qkv_b, w.dense_w, c.num_attention_heads, {}};
      if (impl_->cpu_engine) layer.packed = impl_->packed_layers[index];
      for (int64_t h = 0; h < c.num_attention_heads; ++h) layer.heads.push_back(h);
      auto masked = plan.masked_heads.find(index);
      if (masked != plan.masked_heads.end() && !masked->second.empty()) {
        std::set<int> drop(masked->second.begin(), masked->second.end());
        std::vector<int64_t> kept;
        for (int h = 0; h < c.num_attention_heads; ++h) {
          if (!drop.count(h)) kept.push_back(h);
        }
        const int64_t hd = c.head_dim();
        torch::Tensor idx = torch::tensor(kept, torch::kLong).to(impl_->device);
        // Rows of query_key_value are grouped per head ([heads, 3, hd]); dense's columns too.
        layer.qkv_w = w.qkv_w.view({c.num_attention_heads, 3 * hd, c.hidden_size})
                          .index_select(0, idx)
                          .reshape({-1, c.hidden_size});
        layer.qkv_b = w.qkv_b.view({c.num_attention_heads, 3 * hd}).index_select(0, idx).reshape({-1});
        layer.dense_w = w.dense_w.view({c.hidden_size, c.num_attention_heads, hd})
                            .index_select(1, idx)
                            .reshape({c.hidden_size, -1});
        layer.num_heads = static_cast<int64_t>(kept.size());
        layer.heads = kept;
        if (impl_->cpu_engine) {
          layer.packed.qkv = PackForCpu(*impl_, layer.qkv_w, layer.qkv_b);
          layer.packed.dense = PackForCpu(*impl_, layer.dense_w, w.dense_b);
        }
      }
      view->layers.push_back(layer);
    }
    if (plan.vocab_size > 0 && plan.vocab_size < c.vocab_size) {
      auto ids = std::make_shared<std::vector<int32_t>>(
          impl_->vocab_rank.begin(), impl_->vocab_rank.begin() + plan.vocab_size);
      torch::Tensor idx = torch::from_blob(ids->data(), {plan.vocab_size}, torch::kInt32)
                              .to(impl_->device, torch::kLong);
      view->head_w = impl_->embed_out.index_select(0, idx).contiguous();
      view->vocab_ids = ids;
      view->cols = plan.vocab_size;
    } else {
      view->head_w = impl_->embed_out;
      view->cols = c.vocab_size;
    }
    if (impl_->cpu_engine) {
      view->head_packed = view->vocab_ids ? PackForCpu(*impl_, view->head_w, {}) : impl_->packed_head;
    }
  } catch (const c10::Error& e) {
    return TorchError(e, "building the model view");
  }
  return std::make_shared<const ModelView>(std::move(view));
}

absl::StatusOr<std::shared_ptr<const ModelView>> Model::View(const LayerPlan& plan,
                                                             const KvCacheConfig& kv_cache) const {
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelView> plain, View(plan));
  // Rebuild the Impl with a store: views are immutable once shared.
  auto view = std::make_unique<ModelView::Impl>(plain->impl());
  KvStoreShape shape;
  const ModelConfig& c = impl_->config;
  for (const ViewLayer& layer : view->layers) shape.layer_heads.push_back(layer.num_heads);
  shape.head_dim = c.head_dim();
  shape.max_positions = c.max_position_embeddings;
  shape.rotary_dims = c.rotary_dims();
  shape.cos = impl_->cos;
  shape.sin = impl_->sin;
  shape.dtype = impl_->dtype;
  shape.device = impl_->device;
  try {
    c10::InferenceMode guard;
    ASSIGN_OR_RETURN(view->kv_store, KvStore::Create(kv_cache, std::move(shape)));
  } catch (const c10::Error& e) {
    return TorchError(e, "allocating the KV block pool");
  }
  return std::make_shared<const ModelView>(std::move(view));
}

std::shared_ptr<const ModelView> Model::FullView() const {
  auto view = View(LayerPlan{});
  return *std::move(view);  // the full plan always validates
}

absl::StatusOr<std::vector<std::vector<float>>> Model::HiddenStates(
    absl::Span<const int32_t> tokens) const {
  std::shared_ptr<const ModelView> view = FullView();
  for (int32_t t : tokens) {
    if (t < 0 || t >= impl_->config.vocab_size) return absl::InvalidArgumentError("token id out of range");
  }
  Sequence::State state;
  std::vector<torch::Tensor> record;
  try {
    c10::InferenceMode guard;
    std::vector<PassRows> pass(1);
    pass[0].state = &state;
    pass[0].n = static_cast<int64_t>(tokens.size());
    if (impl_->cpu_engine) {
      std::vector<std::vector<float>> out;
      std::vector<float> logits;
      CpuForward(view->impl(), pass, tokens, &logits, &out, nullptr);
      return out;
    }
    RunForward(view->impl(), pass, tokens, &record, nullptr);
    std::vector<std::vector<float>> out;
    for (const auto& t : record) {
      torch::Tensor f = t.to(torch::kCPU, torch::kFloat).contiguous();
      out.emplace_back(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
    }
    return out;
  } catch (const c10::Error& e) {
    return TorchError(e, "hidden states");
  }
}

// ---------------------------------------------------------------------------------------------
// ModelView

ModelView::ModelView(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ModelView::~ModelView() = default;
const LayerPlan& ModelView::plan() const { return impl_->plan; }
const Model& ModelView::model() const { return *impl_->model; }
int64_t ModelView::vocab_cols() const { return impl_->cols; }
const std::shared_ptr<const std::vector<int32_t>>& ModelView::vocab_ids() const {
  return impl_->vocab_ids;
}
std::unique_ptr<Sequence> ModelView::NewSequence() const {
  return std::make_unique<Sequence>(shared_from_this());
}
const KvCacheConfig* ModelView::kv_cache_config() const {
  return impl_->kv_store ? &impl_->kv_store->config() : nullptr;
}
KvPoolStats ModelView::kv_pool_stats() const {
  return impl_->kv_store ? impl_->kv_store->pool().stats() : KvPoolStats{};
}

// ---------------------------------------------------------------------------------------------
// Sequence

Sequence::Sequence(std::shared_ptr<const ModelView> view)
    : view_(std::move(view)), state_(std::make_unique<State>()) {
  if (view_->impl().kv_store) state_->paged = std::make_unique<PagedKvCache>(view_->impl().kv_store);
}
Sequence::~Sequence() = default;
int64_t Sequence::length() const { return state_->length; }
const ModelView& Sequence::view() const { return *view_; }

absl::Status Sequence::BeginForward(absl::Span<const int32_t> tokens) {
  const ModelConfig& c = view_->model().config();
  if (tokens.empty()) return absl::InvalidArgumentError("Forward needs at least one token");
  for (int32_t t : tokens) {
    if (t < 0 || t >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", t, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  const int64_t n = static_cast<int64_t>(tokens.size());
  PagedKvCache* paged = state_->paged.get();
  const int64_t position_end = paged ? paged->PositionEnd(n) : state_->length + n;
  if (position_end > c.max_position_embeddings) {
    if (paged && view_->kv_cache_config()->RerotatesKeys()) {
      return absl::InvalidArgumentError(absl::StrCat(
          paged->slots() + n, " cached tokens exceed the model's ", c.max_position_embeddings,
          " positions (commit more of the sequence so that the KV policy can evict)"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "sequence of ", state_->length + tokens.size(), " tokens exceeds the model's ",
        c.max_position_embeddings, " positions"));
  }
  if (paged) {
    try {
      c10::InferenceMode guard;
      RETURN_IF_ERROR(paged->BeginForward(n));
    } catch (const c10::Error& e) {
      return TorchError(e, "reserving KV blocks");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Logits> Sequence::Forward(absl::Span<const int32_t> tokens, LogitsWanted wanted) {
  const BatchItem item{this, tokens, wanted};
  return std::move(ForwardBatch(absl::MakeConstSpan(&item, 1))[0]);
}

std::vector<absl::StatusOr<Logits>> Sequence::ForwardBatch(absl::Span<const BatchItem> items) {
  std::vector<absl::StatusOr<Logits>> out(items.size(), absl::UnknownError("not run"));
  std::vector<size_t> run;
  std::vector<PassRows> pass;
  int64_t rows_total = 0;
  const ModelView* view = nullptr;
  for (size_t i = 0; i < items.size(); ++i) {
    Sequence* sequence = items[i].sequence;
    if (view != nullptr && &sequence->view() != view) {
      out[i] = absl::InvalidArgumentError("a batched forward runs sequences of one view only");
      continue;
    }
    // A scan, not a set: batches are small, and a lone Forward (every decode step) comes here.
    const bool twice = std::any_of(items.begin(), items.begin() + i,
                                   [&](const BatchItem& earlier) { return earlier.sequence == sequence; });
    if (twice) {
      out[i] = absl::InvalidArgumentError("a sequence appears twice in one batched forward");
      continue;
    }
    if (absl::Status status = sequence->BeginForward(items[i].tokens); !status.ok()) {
      out[i] = status;
      continue;
    }
    view = &sequence->view();
    PassRows rows;
    rows.state = sequence->state_.get();
    rows.offset = rows_total;
    rows.n = static_cast<int64_t>(items[i].tokens.size());
    rows.past = rows.state->length;
    rows.wanted = items[i].wanted;
    rows_total += rows.n;
    pass.push_back(std::move(rows));
    run.push_back(i);
  }
  if (run.empty()) return out;
  // One sequence runs its own tokens; several run theirs concatenated in pass order.
  std::vector<int32_t> concatenated;
  absl::Span<const int32_t> tokens = items[run[0]].tokens;
  if (run.size() > 1) {
    concatenated.reserve(static_cast<size_t>(rows_total));
    for (size_t i : run) concatenated.insert(concatenated.end(), items[i].tokens.begin(), items[i].tokens.end());
    tokens = concatenated;
  }
  // Attention statistics are recorded for a sequence running alone (probing runs one).
  AttentionStats* stats = run.size() == 1 ? items[run[0]].sequence->attention_stats_ : nullptr;
  auto fail = [&](const absl::Status& status) {
    for (size_t j = 0; j < run.size(); ++j) {
      // The cache beyond `past` is garbage; never expose it.
      pass[j].state->length = pass[j].past;
      if (pass[j].state->paged) pass[j].state->paged->AbortForward();
      out[run[j]] = status;
    }
  };
  try {
    c10::InferenceMode guard;
    const ModelView::Impl& impl = view->impl();
    std::vector<float> values;
    const float* data = nullptr;
    torch::Tensor logits;
    if (impl.model->impl().cpu_engine) {
      CpuForward(impl, pass, tokens, &values, nullptr, stats);
      data = values.data();
    } else {
      logits = RunForward(impl, pass, tokens, nullptr, stats).to(torch::kCPU, torch::kFloat).contiguous();
      data = logits.data_ptr<float>();
    }
    const int64_t cols = impl.cols;
    int64_t row = 0;
    for (size_t j = 0; j < run.size(); ++j) {
      Logits result;
      result.rows = pass[j].wanted == LogitsWanted::kLast ? 1 : pass[j].n;
      result.cols = cols;
      if (run.size() == 1 && !values.empty()) {
        result.values = std::move(values);  // a lone sequence takes the buffer, no copy
      } else {
        result.values.assign(data + row * cols, data + (row + result.rows) * cols);
      }
      result.vocab_ids = view->vocab_ids();
      row += result.rows;
      out[run[j]] = std::move(result);
    }
  } catch (const c10::Error& e) {
    fail(TorchError(e, "forward pass"));
  } catch (const std::bad_alloc&) {
    fail(absl::ResourceExhaustedError("forward pass: out of memory"));
  }
  return out;
}

absl::Status Sequence::Truncate(int64_t length) {
  if (length < 0 || length > state_->length) {
    return absl::InvalidArgumentError(absl::StrCat("cannot truncate a sequence of ", state_->length,
                                                   " tokens to ", length));
  }
  if (state_->paged) {
    try {
      c10::InferenceMode guard;
      RETURN_IF_ERROR(state_->paged->Truncate(length));
    } catch (const c10::Error& e) {
      return TorchError(e, "truncating the KV cache");
    }
  }
  state_->length = length;
  state_->committed = std::min(state_->committed, length);
  return absl::OkStatus();
}

absl::Status Sequence::Commit(int64_t length) {
  if (length < state_->committed || length > state_->length) {
    return absl::InvalidArgumentError(absl::StrCat("cannot commit ", length, " tokens of a sequence of ",
                                                   state_->length, " with ", state_->committed,
                                                   " committed"));
  }
  if (state_->paged) {
    try {
      c10::InferenceMode guard;
      RETURN_IF_ERROR(state_->paged->Commit(length));
    } catch (const c10::Error& e) {
      return TorchError(e, "committing to the KV cache");
    }
  }
  state_->committed = length;
  return absl::OkStatus();
}

int64_t Sequence::committed_length() const { return state_->committed; }

absl::StatusOr<Logits> ForwardCommitted(Sequence& sequence, absl::Span<const int32_t> tokens,
                                        LogitsWanted wanted, const ChunkForward& forward) {
  auto run = [&](absl::Span<const int32_t> chunk) {
    return forward ? forward(chunk, wanted) : sequence.Forward(chunk, wanted);
  };
  const KvCacheConfig* kv = sequence.view().kv_cache_config();
  if (kv == nullptr) return run(tokens);
  if (tokens.empty()) return absl::InvalidArgumentError("Forward needs at least one token");
  const KvBoundaries bounds = kv->Boundaries();
  Logits out;
  size_t done = 0;
  while (done < tokens.size()) {
    RETURN_IF_ERROR(sequence.Commit(sequence.length()));
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(tokens.size() - done),
                                        bounds.ForwardLimit(sequence.length()));
    ASSIGN_OR_RETURN(Logits logits, run(tokens.subspan(done, n)));
    done += n;
    if (wanted == LogitsWanted::kLast || out.rows == 0) {
      out = std::move(logits);
    } else {
      out.values.insert(out.values.end(), logits.values.begin(), logits.values.end());
      out.rows += logits.rows;
    }
  }
  RETURN_IF_ERROR(sequence.Commit(sequence.length()));
  return out;
}

int64_t Sequence::cached_tokens() const {
  return state_->paged ? state_->paged->slots() : state_->length;
}

int64_t Sequence::cache_bytes() const {
  if (state_->paged) return state_->paged->bytes();
  int64_t bytes = 0;
  for (const auto& v : state_->cpu_k) bytes += static_cast<int64_t>(v.capacity() * sizeof(float));
  for (const auto& v : state_->cpu_v) bytes += static_cast<int64_t>(v.capacity() * sizeof(float));
  for (const auto& t : state_->k) {
    if (t.defined()) bytes += t.numel() * t.element_size();
  }
  for (const auto& t : state_->v) {
    if (t.defined()) bytes += t.numel() * t.element_size();
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------

void ConfigureComputeThreads(int threads) {
  // Default: half the cores, at least one. On this project's 2-core machines that is 1, which
  // keeps two services (or a service and a build) on one machine from spin-waiting on each
  // other's cores.
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency() / 2));
  // The CPU engine's own pool does the work (common/cpu_kernels/parallel.h). libtorch's OpenMP
  // pool and OpenBLAS, which only the paged cache's attention still calls, stay at one thread
  // each: three pools spinning for the same cores would fight (docs/benchmarks/decode.md).
  SetComputeThreads(threads);
  torch::set_num_threads(1);
  using SetThreads = void (*)(int);
  if (auto* set_blas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set_blas(1);
  }
}

bool CudaAvailable() { return torch::cuda::is_available(); }

void AllowTf32OnCuda(bool allow) {
  at::globalContext().setAllowTF32CuBLAS(allow);
  at::globalContext().setAllowTF32CuDNN(allow);
}

void UseCachingCpuAllocator() {
  static std::once_flag once;
  // Priority above libtorch's default registration, so it wins whatever the order.
  std::call_once(once, [] { c10::SetCPUAllocator(&CachingCpuAllocator::Instance(), 10); });
}

CpuAllocatorStats GetCpuAllocatorStats() {
  if (c10::GetCPUAllocator() != &CachingCpuAllocator::Instance()) return {};
  return CachingCpuAllocator::Instance().stats();
}

}  // namespace specdec
