// Internal to common/cpu_kernels: the entry points every per-ISA kernel translation unit
// (kernels_generic.cc, kernels_avx2.cc, kernels_avx512.cc) defines in its own namespace. The
// dispatchers (matmul.cc, softmax.cc, ops.cc) pick one at run time and the kernel tests call each
// instance the CPU can run; declaring them once here keeps those callers and the .inc
// definitions on one signature.
#ifndef SPECDEC_COMMON_CPU_KERNELS_ISA_KERNELS_H_
#define SPECDEC_COMMON_CPU_KERNELS_ISA_KERNELS_H_

#include <cstdint>

#include "common/cpu_kernels/matmul.h"
#include "common/cpu_kernels/packed_matrix.h"

#define SPECDEC_DECLARE_ISA_KERNELS(ns)                                                        \
  namespace ns {                                                                              \
  void MatMulPanels(const PackedMatrix& w, const float* x, int64_t rows, int64_t x_stride,     \
                    float* y, int64_t y_stride, Epilogue epilogue, int64_t first, int64_t last); \
  float MaxLogit(const float* logits, int64_t n);                                              \
  double SoftmaxWeights(const float* logits, int64_t n, float max_logit, float inv_t,          \
                        float* w);                                                             \
  int64_t ArgMax(const float* x, int64_t n);                                                   \
  int64_t IndicesAtLeast(const float* w, int64_t n, float floor, int32_t* out);                \
  double MassBelow(const float* w, int64_t n, float floor, int64_t* at_least);                 \
  void CausalAttention(const float* q, int64_t q_stride, int64_t q_head_stride,               \
                       const float* const* key_rows, const float* const* value_rows,          \
                       int64_t kv_head_stride, int64_t n, int64_t past, int64_t heads,        \
                       int64_t head_dim, float* out, int64_t out_stride, float* scratch,      \
                       float* probs);                                                         \
  void RowAttention(const float* q, const float* const* key_rows,                             \
                    const float* const* value_rows, int64_t kv_offset, int64_t count,         \
                    int64_t head_dim, float* out, float* scratch);                            \
  void PageBounds(const float* q, const float* summaries, int64_t pages, int64_t head_dim,    \
                  float* bounds);                                                             \
  }

namespace specdec {
SPECDEC_DECLARE_ISA_KERNELS(isa_generic)
SPECDEC_DECLARE_ISA_KERNELS(isa_avx2)
SPECDEC_DECLARE_ISA_KERNELS(isa_avx512)
}  // namespace specdec

#undef SPECDEC_DECLARE_ISA_KERNELS

#endif  // SPECDEC_COMMON_CPU_KERNELS_ISA_KERNELS_H_
