// A weight matrix packed once, at load time, into the layout the CPU matmul streams: panels of
// `block` output rows stored k-major ([in][block]), so a kernel reads each weight byte once per
// forward, whatever the number of input rows, and keeps all rows' sums in registers.
// Torch-free. Weights may be stored as f32, bf16 (the top half of each f32, rounded to
// nearest even) or int8 (symmetric, one scale per output row); arithmetic is f32, except for
// bf16_dot (below).
#ifndef SPECDEC_COMMON_CPU_KERNELS_PACKED_MATRIX_H_
#define SPECDEC_COMMON_CPU_KERNELS_PACKED_MATRIX_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cpu_kernels/cpu_isa.h"

namespace specdec {

// kBf16Dot stores bf16 weights like kBf16, in pairs of adjacent k ([in / 2][block][2]), and rounds
// the activations to bf16 too, so that a product is one bf16 dot product (AVX512-BF16's
// vdpbf16ps: two multiply-adds a lane, accumulated in f32); CPUs without it compute the same
// rounded values with f32 multiply-adds. The only dtype whose arithmetic is not f32 throughout.
enum class WeightDtype { kF32, kBf16, kInt8, kBf16Dot };

const char* WeightDtypeName(WeightDtype dtype);
// Bytes a stored weight takes: 4, 2 (bf16, bf16_dot) or 1 (int8).
int WeightDtypeBytes(WeightDtype dtype);
// "f32", "bf16", "int8" or "bf16_dot"; INVALID_ARGUMENT naming the choices otherwise.
absl::StatusOr<WeightDtype> ParseWeightDtype(const std::string& name);

// Floats a vector holds on `isa`, and output rows per panel (two vectors).
int VectorFloats(CpuIsa isa);
inline int PanelRows(CpuIsa isa) { return 2 * VectorFloats(isa); }

// bf16 <-> f32, round to nearest even (NaN kept a NaN).
uint16_t FloatToBf16(float f);
float Bf16ToFloat(uint16_t h);

class PackedMatrix {
 public:
  PackedMatrix() = default;
  // Packs the row-major [out, in] matrix `w` and optional `bias` [out] for `isa`'s kernels.
  static PackedMatrix Pack(const float* w, int64_t out, int64_t in, const float* bias,
                           WeightDtype dtype, CpuIsa isa);

  bool empty() const { return out_ == 0; }
  int64_t out() const { return out_; }
  int64_t in() const { return in_; }
  WeightDtype dtype() const { return dtype_; }
  CpuIsa isa() const { return isa_; }
  int block() const { return block_; }
  int64_t panels() const { return (out_ + block_ - 1) / block_; }
  // Bytes of weights a forward streams (what bandwidth-bound decoding reads).
  int64_t weight_bytes() const { return static_cast<int64_t>(panels()) * panel_bytes_; }

  // Panel p: in * block elements of the storage dtype ([in][block]; bf16_dot: [in / 2][block][2]).
  const void* panel(int64_t p) const { return data_.get() + p * panel_bytes_; }
  // Per output row (padded to panels() * block): dequantisation scale (1 unless int8), bias (0
  // when none).
  const float* scales() const { return scales_.data(); }
  const float* bias() const { return bias_.data(); }

  // The weight at [o, k] as the kernel sees it (dequantised): for tests and reference paths.
  float At(int64_t o, int64_t k) const;

 private:
  // Element (panel row j, input k) within a panel, in elements of the storage dtype.
  int64_t Index(int64_t j, int64_t k) const {
    return dtype_ == WeightDtype::kBf16Dot ? ((k / 2) * block_ + j) * 2 + (k & 1) : k * block_ + j;
  }

  struct Free {
    void operator()(uint8_t* p) const;
  };
  int64_t out_ = 0, in_ = 0;
  WeightDtype dtype_ = WeightDtype::kF32;
  CpuIsa isa_ = CpuIsa::kGeneric;
  int block_ = 0;
  int64_t panel_bytes_ = 0;
  std::shared_ptr<uint8_t> data_;  // 64-byte aligned panels; shared so views copy cheaply
  std::vector<float> scales_, bias_;
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_CPU_KERNELS_PACKED_MATRIX_H_
