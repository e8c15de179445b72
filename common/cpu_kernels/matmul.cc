// Dispatch of MatMul to the kernel instance of the matrix's ISA, split over compute threads.
#include "common/cpu_kernels/matmul.h"

#include <algorithm>

#include "common/cpu_kernels/isa_kernels.h"
#include "common/cpu_kernels/parallel.h"

namespace specdec {

namespace internal {
void MatMulPanels(const PackedMatrix& w, const float* x, int64_t rows, int64_t x_stride, float* y,
                  int64_t y_stride, Epilogue epilogue, int64_t first, int64_t last) {
  switch (w.isa()) {
    case CpuIsa::kGeneric:
      return isa_generic::MatMulPanels(w, x, rows, x_stride, y, y_stride, epilogue, first, last);
    case CpuIsa::kAvx2:
      return isa_avx2::MatMulPanels(w, x, rows, x_stride, y, y_stride, epilogue, first, last);
    case CpuIsa::kAvx512:
      return isa_avx512::MatMulPanels(w, x, rows, x_stride, y, y_stride, epilogue, first, last);
  }
}
}  // namespace internal

void MatMul(const PackedMatrix& w, const float* x, int64_t rows, int64_t x_stride, float* y,
            int64_t y_stride, Epilogue epilogue) {
  if (w.empty() || rows <= 0) return;
  // A slice worth a thread streams at least ~256 KiB of weights (tens of microseconds);
  // smaller products stay on the caller.
  const int64_t panel_bytes = w.weight_bytes() / w.panels();
  const int64_t grain = std::max<int64_t>(1, (int64_t{256} << 10) / std::max<int64_t>(1, panel_bytes));
  ParallelFor(w.panels(), grain, [&](int64_t first, int64_t last) {
    internal::MatMulPanels(w, x, rows, x_stride, y, y_stride, epilogue, first, last);
  });
}

}  // namespace specdec
