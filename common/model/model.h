// GPT-NeoX runtime: a loaded checkpoint (Model), a plan applied to it (ModelView), and one
// sequence's KV cache (Sequence). libtorch stays behind this header (pimpl) so that the services
// and tools that include it compile quickly.
#ifndef SPECDEC_COMMON_MODEL_MODEL_H_
#define SPECDEC_COMMON_MODEL_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/kv_cache/kv_cache_config.h"
#include "common/model/config.h"
#include "common/model/layer_plan.h"

namespace specdec {

struct LoadOptions {
  // "auto" (CUDA when libtorch has it and a GPU is present), "cpu" or "cuda". For tests,
  // "cpu-libtorch": the CPU running the libtorch forward that GPUs run instead of the CPU
  // engine (f32 only), so that the GPU's code path is checked on machines without a GPU.
  std::string device = "auto";
  // On the CPU, how the CPU engine stores the linear weights (it computes in f32): "f32"
  // (default; the checkpoint exactly), "bf16" or "int8" (a scale per output row); or "bf16_dot"
  // (bf16 weights and activations, the CPU's bf16 dot product). On a GPU, the
  // compute dtype: "f32", "f16" or "bf16".
  std::string dtype = "f32";
};

// The help text of every binary's --dtype flag (LoadOptions::dtype).
inline constexpr char kDtypeFlagHelp[] =
    "weights: on the CPU engine f32, bf16 or int8 (a scale per output row), computed in f32, or "
    "bf16_dot (bf16 weights and activations: the CPU's bf16 dot product); on a GPU the compute "
    "dtype f32, f16 or bf16";

// Logits of consecutive positions, row-major [rows, cols]. Column c scores token
// vocab_ids[c] when the view scores a vocabulary subset, token c otherwise.
struct Logits {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> values;
  std::shared_ptr<const std::vector<int32_t>> vocab_ids;  // null: column == token id

  const float* row(int64_t r) const { return values.data() + r * cols; }
  int32_t TokenAt(int64_t col) const {
    return vocab_ids ? (*vocab_ids)[col] : static_cast<int32_t>(col);
  }
};

enum class LogitsWanted { kAll, kLast };

// Attention statistics of one head, summed over the query rows observed (head probing).
struct HeadAttentionStats {
  static constexpr int kOffsets = 8;
  int64_t rows = 0;
  double entropy_sum = 0;          // sum over rows of -sum_j p_j log p_j (nats)
  double uniform_entropy_sum = 0;  // sum over rows of log(keys visible): the entropy if uniform
  // offset_mass_sum[d]: sum over rows of the mass on the key d positions back (0 = itself).
  double offset_mass_sum[kOffsets] = {};
  double first_token_mass_sum = 0;  // mass on position 0 (attention sinks)
};

// Per model layer, per head. Layers a view skips stay empty.
struct AttentionStats {
  std::vector<std::vector<HeadAttentionStats>> layers;
};

class Sequence;
class ModelView;

// A loaded checkpoint. Immutable after Load and shared by every view and sequence.
class Model : public std::enable_shared_from_this<Model> {
 public:
  // Loads config.json, the safetensors weights (single file or sharded with an index) and, when
  // present, vocab_rank.json (token ids by frequency, used for vocabulary-subset heads).
  static absl::StatusOr<std::shared_ptr<Model>> Load(const std::string& model_dir,
                                                     const LoadOptions& options);
  ~Model();

  const ModelConfig& config() const;
  const std::string& model_dir() const;
  std::string device() const;  // "cpu" or "cuda:0"
  std::string dtype() const;   // "f32", "f16", "bf16", "int8"
  // What runs the forward passes: "cpu engine, avx2 kernels, bf16 weights" or "libtorch".
  std::string cpu_kernels() const;
  // Token ids by frequency (most frequent first); the identity order when the checkpoint has
  // no vocab_rank.json.
  const std::vector<int32_t>& vocab_rank() const;

  // The view that runs `plan`. Layers share the model's weight tensors (no copy); a
  // vocabulary-subset head gathers its rows once per view.
  absl::StatusOr<std::shared_ptr<const ModelView>> View(const LayerPlan& plan) const;
  // The full model.
  std::shared_ptr<const ModelView> FullView() const;
  // The view that runs `plan` with a paged KV cache under `kv_cache`'s policy: its sequences
  // share one block pool of kv_cache.pool_blocks blocks (docs/kv_cache.md). Without this
  // overload sequences use the plain contiguous cache (drafts, tools, tests).
  absl::StatusOr<std::shared_ptr<const ModelView>> View(const LayerPlan& plan,
                                                        const KvCacheConfig& kv_cache) const;

  // Hugging Face's output_hidden_states convention for one forward pass over `tokens`:
  // entry 0 the embeddings, entry i the output of layer i-1, the last after the final norm.
  // Each entry is [tokens, hidden] row-major. For tests and debugging.
  absl::StatusOr<std::vector<std::vector<float>>> HiddenStates(
      absl::Span<const int32_t> tokens) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A LayerPlan applied to a Model. Cheap to share; creates sequences.
class ModelView : public std::enable_shared_from_this<ModelView> {
 public:
  ~ModelView();
  const LayerPlan& plan() const;
  const Model& model() const;
  // Columns of the logits this view returns (vocab_size, or the subset size).
  int64_t vocab_cols() const;
  // Column -> token id for subset heads; null for the full vocabulary.
  const std::shared_ptr<const std::vector<int32_t>>& vocab_ids() const;
  std::unique_ptr<Sequence> NewSequence() const;
  // The KV policy of the view's paged cache; null for the contiguous cache.
  const KvCacheConfig* kv_cache_config() const;
  // The shared block pool (all zeros for the contiguous cache). A service refuses a new session
  // up front when free_blocks cannot hold its prompt.
  KvPoolStats kv_pool_stats() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }
  explicit ModelView(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// One sequence: the tokens run so far live in its KV cache. Not thread-safe; one owner.
class Sequence {
 public:
  explicit Sequence(std::shared_ptr<const ModelView> view);
  ~Sequence();
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  // Tokens run so far (positions; under an evicting KV policy more than the tokens cached).
  int64_t length() const;
  // Runs `tokens` at positions [length(), length() + n) and appends them to the cache.
  // Returns logits for every new position (kAll) or only the last one (kLast).
  // INVALID_ARGUMENT for out-of-range ids or a sequence past max_position_embeddings (under
  // sink_window: more cached tokens than positions). RESOURCE_EXHAUSTED when the view's block
  // pool cannot hold the new tokens; the sequence is then unchanged.
  absl::StatusOr<Logits> Forward(absl::Span<const int32_t> tokens,
                                 LogitsWanted wanted = LogitsWanted::kAll);
  // One forward pass over several sequences of one view (cross-session batching): the matrix
  // products run over every sequence's rows at once, so the weights are read once for all of
  // them; attention runs per sequence against its own cache. Result i is what
  // items[i].sequence->Forward(items[i].tokens, items[i].wanted) returns, equal up to float
  // rounding (a product over more rows may round differently); errors are per item, and an
  // item that fails (bad ids, full pool, another view, a sequence given twice) leaves its
  // sequence unchanged and the others running.
  struct BatchItem {
    Sequence* sequence = nullptr;
    absl::Span<const int32_t> tokens;
    LogitsWanted wanted = LogitsWanted::kAll;
  };
  static std::vector<absl::StatusOr<Logits>> ForwardBatch(absl::Span<const BatchItem> items);
  // Drops cached positions >= `length` (rollback). Exact: later forwards match a fresh run.
  // Under an evicting KV policy (sink_window, h2o, hierarchical), truncating below the
  // committed length is FAILED_PRECONDITION once a committed token was evicted or merged.
  absl::Status Truncate(int64_t length);
  // Marks positions < `length` committed: the caller will never truncate below it. The KV
  // policy compresses or evicts only committed positions; the uncommitted (speculative) tail
  // stays exact. INVALID_ARGUMENT when `length` is below the committed length or past length().
  absl::Status Commit(int64_t length);
  int64_t committed_length() const;
  // Tokens held in the KV cache (length() unless the policy evicted or merged some).
  int64_t cached_tokens() const;
  // Bytes held by the KV cache (for a paged cache: its blocks, whole).
  int64_t cache_bytes() const;
  // While set, every Forward adds its attention statistics to `stats` (slower; for probing).
  // Heads the view masks are not recorded. nullptr stops recording.
  void RecordAttention(AttentionStats* stats) { attention_stats_ = stats; }
  const ModelView& view() const;

  struct State;

 private:
  // Validates `tokens` and reserves their KV blocks (the forward then must run or abort).
  absl::Status BeginForward(absl::Span<const int32_t> tokens);

  std::shared_ptr<const ModelView> view_;
  std::unique_ptr<State> state_;
  AttentionStats* attention_stats_ = nullptr;
};

// Runs `tokens` that are all committed (a prompt, a re-prefill, committed tokens the cache has
// not seen yet) after `sequence`'s cache. Under a KV policy everything before them is committed
// first, and they run in forwards that never cross the policy's compression boundaries
// (KvCacheConfig::Boundaries), each committed when it is done, so the cache never depends on
// how a prefix was grouped. A contiguous cache runs one Forward. `forward` runs one chunk
// (default: sequence.Forward; a service passes its batcher). kAll returns every chunk's rows.
using ChunkForward = std::function<absl::StatusOr<Logits>(absl::Span<const int32_t>, LogitsWanted)>;
absl::StatusOr<Logits> ForwardCommitted(Sequence& sequence, absl::Span<const int32_t> tokens,
                                        LogitsWanted wanted = LogitsWanted::kLast,
                                        const ChunkForward& forward = nullptr);

// Makes libtorch allocate CPU tensors from a caching allocator (common/model/
// caching_cpu_allocator.h): freed blocks are reused, so a steady-state decode loop makes no
// system allocations for its tensors. Call once at startup, before loading a model; tensors
// allocated before keep their own allocator.
void UseCachingCpuAllocator();
struct CpuAllocatorStats {
  int64_t system_allocations = 0;  // blocks taken from the system
  int64_t reused = 0;              // allocations served from freed blocks
  int64_t cached_bytes = 0;        // freed blocks kept for reuse now
};
// Counters of the caching allocator (all zero when it is not in use).
CpuAllocatorStats GetCpuAllocatorStats();

// Whether this libtorch was built with CUDA and sees a GPU (what device "auto" picks "cuda" on).
bool CudaAvailable();
// GPU only: lets f32 matrix products run in TF32 (faster, about 10 bits of mantissa). Off by
// default, as in libtorch itself; the golden tests hold f32 on a GPU to Hugging Face's logits
// with it off. Call before running a model; it applies to the whole process.
void AllowTf32OnCuda(bool allow);

// Sets the CPU engine's compute threads (common/cpu_kernels/parallel.h) and keeps libtorch's
// and OpenBLAS's own pools at one thread so they do not fight it. `threads` <= 0 picks half the
// cores (at least one). Call at startup.
void ConfigureComputeThreads(int threads);

}  // namespace specdec

#endif  // SPECDEC_COMMON_MODEL_MODEL_H_
