// Plain loops the compiler vectorises (built at -O3); attention, the costly one, is per ISA
// (attention_kernel.inc) and dispatched here.
#include "common/cpu_kernels/ops.h"

#include "common/cpu_kernels/cpu_isa.h"
#include "common/cpu_kernels/isa_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace specdec {

void LayerNormRows(const float* x, int64_t rows, int64_t cols, const float* weight,
                   const float* bias, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * cols;
    float* o = out + r * cols;
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += in[c];
    const float mean = static_cast<float>(sum / cols);
    double sq = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double d = in[c] - mean;
      sq += d * d;
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(sq / cols + eps));
    for (int64_t c = 0; c < cols; ++c) o[c] = (in[c] - mean) * inv * weight[c] + bias[c];
  }
}

void ApplyRotaryInPlace(float* x, int64_t heads, int64_t head_stride, int64_t rot,
                        const float* cos, const float* sin) {
  const int64_t half = rot / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * head_stride;
    for (int64_t j = 0; j < half; ++j) {
      const float a = v[j], b = v[j + half];
      v[j] = a * cos[j] - b * sin[j];
      v[j + half] = b * cos[j + half] + a * sin[j + half];
    }
  }
}


void CausalAttention(const float* q, int64_t q_stride, int64_t q_head_stride,
                     const float* const* key_rows, const float* const* value_rows,
                     int64_t kv_head_stride, int64_t n, int64_t past, int64_t heads,
                     int64_t head_dim, float* out, int64_t out_stride, float* scratch, float* probs) {
  switch (ActiveCpuIsa()) {
    case CpuIsa::kAvx512:
      return isa_avx512::CausalAttention(q, q_stride, q_head_stride, key_rows, value_rows,
                                         kv_head_stride, n, past, heads, head_dim, out, out_stride,
                                         scratch, probs);
    case CpuIsa::kAvx2:
      return isa_avx2::CausalAttention(q, q_stride, q_head_stride, key_rows, value_rows,
                                       kv_head_stride, n, past, heads, head_dim, out, out_stride,
                                       scratch, probs);
    case CpuIsa::kGeneric:
      break;
  }
  isa_generic::CausalAttention(q, q_stride, q_head_stride, key_rows, value_rows, kv_head_stride, n,
                               past, heads, head_dim, out, out_stride, scratch, probs);
}

void RowAttention(const float* q, const float* const* key_rows, const float* const* value_rows,
                  int64_t kv_offset, int64_t count, int64_t head_dim, float* out, float* scratch) {
  switch (ActiveCpuIsa()) {
    case CpuIsa::kAvx512:
      return isa_avx512::RowAttention(q, key_rows, value_rows, kv_offset, count, head_dim, out, scratch);
    case CpuIsa::kAvx2:
      return isa_avx2::RowAttention(q, key_rows, value_rows, kv_offset, count, head_dim, out, scratch);
    case CpuIsa::kGeneric:
      break;
  }
  isa_generic::RowAttention(q, key_rows, value_rows, kv_offset, count, head_dim, out, scratch);
}

void PageBounds(const float* q, const float* summaries, int64_t pages, int64_t head_dim,
                float* bounds) {
  switch (ActiveCpuIsa()) {
    case CpuIsa::kAvx512:
      return isa_avx512::PageBounds(q, summaries, pages, head_dim, bounds);
    case CpuIsa::kAvx2:
      return isa_avx2::PageBounds(q, summaries, pages, head_dim, bounds);
    case CpuIsa::kGeneric:
      break;
  }
  isa_generic::PageBounds(q, summaries, pages, head_dim, bounds);
}

}  // namespace specdec
