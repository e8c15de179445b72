// Internal to common/model: what a view and a sequence hold, shared by the two forward paths
// (cpu_forward.cc: the CPU engine; model.cc: libtorch, for GPUs). Includes libtorch.
#ifndef SPECDEC_COMMON_MODEL_MODEL_IMPL_H_
#define SPECDEC_COMMON_MODEL_MODEL_IMPL_H_

#include <memory>
#include <vector>

#include <torch/torch.h>

#include "common/cpu_kernels/packed_matrix.h"
#include "common/kv_cache/paged_kv_cache.h"
#include "common/model/model.h"
#include "common/model/weights.h"

namespace specdec {

// One transformer layer as a view runs it. Weights alias the model's tensors unless the view
// masks heads, in which case the attention projections hold only the kept heads' rows.
struct ViewLayer {
  int index = 0;               // the model layer this is
  std::vector<int64_t> heads;  // model head index of each computed head
  const LayerWeights* base = nullptr;
  torch::Tensor qkv_w, qkv_b, dense_w;  // possibly head-sliced
  int64_t num_heads = 0;                // heads computed by this view
  PackedLayer packed;                   // CPU engine: shares the model's panels unless sliced
};

struct ModelView::Impl {
  std::shared_ptr<const Model> model;
  LayerPlan plan;
  std::vector<ViewLayer> layers;
  torch::Tensor head_w;     // [cols, hidden]
  PackedMatrix head_packed;  // CPU engine
  std::shared_ptr<const std::vector<int32_t>> vocab_ids;
  int64_t cols = 0;
  std::shared_ptr<KvStore> kv_store;  // null: contiguous caches
};

struct Sequence::State {
  int64_t length = 0;
  int64_t committed = 0;
  // libtorch path, per view layer: [heads, capacity, head_dim]; positions >= length are garbage.
  std::vector<torch::Tensor> k, v;
  // CPU engine, per view layer: [capacity, heads * head_dim] (rotary applied to keys).
  std::vector<std::vector<float>> cpu_k, cpu_v;
  // Set instead of the above when the view has a KV policy.
  std::unique_ptr<PagedKvCache> paged;
};

// One sequence's rows in a forward pass (several sequences share a batched pass).
struct PassRows {
  Sequence::State* state = nullptr;
  int64_t offset = 0;  // first row of this sequence in the pass's [rows, hidden] input
  int64_t n = 0;       // its new tokens
  int64_t past = 0;    // positions already cached
  LogitsWanted wanted = LogitsWanted::kAll;
  torch::Tensor cos, sin;  // rotary rows of its new positions (libtorch path, contiguous cache)
};

// Adds one layer's attention probabilities ([heads, n, keys] row-major, keys >= past + n) to
// `stats`; query row i sees keys 0 .. past + i.
void RecordAttentionStats(const ViewLayer& layer, const float* probs, int64_t heads, int64_t n,
                          int64_t keys, int64_t past, AttentionStats* stats);

// The CPU engine's forward over the new tokens of every sequence in `pass` (their rows
// concatenated in `tokens`). Writes the logits of the rows each wants, in pass order, to
// `logits` ([rows wanted, view.cols]). Records hidden states (Hugging Face's
// output_hidden_states) when `record` is given, attention statistics when `stats` is.
// Throws c10::Error (paged attention) or std::bad_alloc; the caller restores the sequences.
void CpuForward(const ModelView::Impl& view, std::vector<PassRows>& pass,
                absl::Span<const int32_t> tokens, std::vector<float>* logits,
                std::vector<std::vector<float>>* record, AttentionStats* stats);

}  // namespace specdec

#endif  // SPECDEC_COMMON_MODEL_MODEL_IMPL_H_
