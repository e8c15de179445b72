// Internal to common/model: the loaded weight tensors (Model::Impl) and the loader that reads
// them from a checkpoint folder. Includes libtorch; include only from common/model .cc files.
#ifndef SPECDEC_COMMON_MODEL_WEIGHTS_H_
#define SPECDEC_COMMON_MODEL_WEIGHTS_H_

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "common/cpu_kernels/packed_matrix.h"
#include "common/model/config.h"
#include "common/model/model.h"

namespace specdec {

struct LayerWeights {
  torch::Tensor ln1_w, ln1_b, ln2_w, ln2_b;  // [hidden]
  torch::Tensor qkv_w, qkv_b;                // [3 * hidden, hidden], [3 * hidden]
  torch::Tensor dense_w, dense_b;            // [hidden, hidden], [hidden]
  torch::Tensor fc_in_w, fc_in_b;            // [mlp, hidden], [mlp]
  torch::Tensor fc_out_w, fc_out_b;          // [hidden, mlp], [hidden]
};

// A layer's linear weights packed for the CPU engine (common/cpu_kernels), biases included.
struct PackedLayer {
  PackedMatrix qkv, dense, fc_in, fc_out;
};

struct Model::Impl {
  std::string model_dir;
  ModelConfig config;
  torch::Device device = torch::kCPU;
  // The torch tensors' dtype: the compute dtype on a GPU; always f32 on the CPU, where the
  // CPU engine computes in f32 from packed weights stored as `weight_dtype` (bf16_dot: bf16
  // products, f32 sums).
  torch::ScalarType dtype = torch::kFloat;
  std::string dtype_name = "f32";  // what --dtype asked for: f32, f16, bf16, int8 or bf16_dot
  bool cpu_engine = false;         // device is the CPU: forwards run common/cpu_kernels
  WeightDtype weight_dtype = WeightDtype::kF32;
  CpuIsa isa = CpuIsa::kGeneric;
  std::vector<PackedLayer> packed_layers;  // CPU engine: every layer, all heads
  PackedMatrix packed_head;                // CPU engine: the full LM head
  torch::Tensor embed_in;                // [vocab, hidden]
  std::vector<LayerWeights> layers;
  torch::Tensor final_ln_w, final_ln_b;  // [hidden]
  torch::Tensor embed_out;               // [vocab, hidden]
  torch::Tensor cos, sin;                // [max_positions, rotary_dims], float32, HF's tables
  std::vector<int32_t> vocab_rank;
};

// The CPU engine's packing of `w` ([out, in]) and `bias` (may be undefined) in m.weight_dtype.
PackedMatrix PackForCpu(const Model::Impl& m, const torch::Tensor& w, const torch::Tensor& bias);
// Packs every layer and the LM head of a CPU model (Load does this).
void PackForCpu(Model::Impl& m);

// Reads config.json, the safetensors weights (validated) and vocab_rank.json from `model_dir`.
absl::StatusOr<std::unique_ptr<Model::Impl>> LoadModelImpl(const std::string& model_dir,
                                                           const LoadOptions& options);

}  // namespace specdec

#endif  // SPECDEC_COMMON_MODEL_WEIGHTS_H_
