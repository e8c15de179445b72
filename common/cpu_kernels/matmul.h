// The CPU engine's one matrix product: y = x W^T + b for a few rows x (a decode step is 1 row,
// a verification K+1, a batched pass a few dozen) against a PackedMatrix. Each panel of W is
// streamed from memory once; the rows' sums stay in registers (up to 6 rows a tile on AVX2, 12
// on AVX-512; more rows re-read the panel from L2). Torch-free.
#ifndef SPECDEC_COMMON_CPU_KERNELS_MATMUL_H_
#define SPECDEC_COMMON_CPU_KERNELS_MATMUL_H_

#include <cstdint>

#include "common/cpu_kernels/packed_matrix.h"

namespace specdec {

// What the product does with its result v = x W^T + b.
enum class Epilogue {
  kStore,       // y = v
  kAccumulate,  // y += v (a residual connection)
  kGelu,        // y = gelu(v), erf form (Hugging Face "gelu")
  kGeluTanh,    // y = gelu(v), tanh approximation ("gelu_new", "gelu_fast")
  kRelu,        // y = max(v, 0)
};

// x: [rows, w.in()] with row stride x_stride; y: [rows, w.out()] with row stride y_stride.
// Runs on the compute threads (parallel.h) when the product is big enough to pay for them.
void MatMul(const PackedMatrix& w, const float* x, int64_t rows, int64_t x_stride, float* y,
            int64_t y_stride, Epilogue epilogue = Epilogue::kStore);

namespace internal {
// Panels [first, last) of the product on one thread, with the kernel of w.isa().
void MatMulPanels(const PackedMatrix& w, const float* x, int64_t rows, int64_t x_stride, float* y,
                  int64_t y_stride, Epilogue epilogue, int64_t first, int64_t last);
}  // namespace internal

}  // namespace specdec

#endif  // SPECDEC_COMMON_CPU_KERNELS_MATMUL_H_
