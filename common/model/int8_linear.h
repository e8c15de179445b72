// Int8 weights on the CPU (`--dtype int8`): a linear layer's weight is quantized once, per
// output channel (symmetric, scale = max |w| / 127), and multiplied by oneDNN's dynamically
// quantized kernel (activations quantized per call). A decode step on a CPU is bound by reading
// weights, and int8 reads a quarter of f32's bytes, but only big matrices gain (PaysInInt8).
// Internal to common/model: includes libtorch.
#ifndef SPECDEC_COMMON_MODEL_INT8_LINEAR_H_
#define SPECDEC_COMMON_MODEL_INT8_LINEAR_H_

#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace specdec {

// OK when this libtorch can run int8 linear layers (oneDNN's quantized engine), which it then
// selects; FAILED_PRECONDITION saying what to use instead otherwise.
absl::Status EnableInt8Linear();

// A linear layer's weight and bias packed for the int8 kernel. Empty (packed.isNone()) when
// the layer runs in floating point.
struct Int8Linear {
  c10::IValue packed;
  bool empty() const { return packed.isNone(); }
  // x @ w^T + b for x [rows, in] (f32); returns [rows, out] f32.
  torch::Tensor Apply(const torch::Tensor& x) const;
};

// Whether an [out, in] matrix runs faster in int8 than f32 for one row. Measured on the 2-core
// development CPU (docs/benchmarks/decode.md): the int8 kernel's fixed cost (~20 us a call, the
// activations quantized each time) loses on every layer of Pythia-70M's shape (0.14-0.8x of
// f32's speed) and wins on the full LM head (2.25x at 50304 x 128 and 50304 x 512).
inline bool PaysInInt8(int64_t out, int64_t in) { return out * in >= (int64_t{4} << 20); }

// Quantizes `w` ([out, in], f32) per output channel and packs it with `bias` (may be undefined).
Int8Linear PackInt8Linear(const torch::Tensor& w, const torch::Tensor& bias);

}  // namespace specdec

#endif  // SPECDEC_COMMON_MODEL_INT8_LINEAR_H_
