// Plain loops written so the compiler vectorises them (several partial sums, no aliasing
// across the inner loops); built at -O3.
#include "common/cpu_kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace specdec {
namespace {

// Dot product with eight independent partial sums (vectorisable without -ffast-math).
inline float Dot(const float* a, const float* b, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  }
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

}  // namespace

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
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  const int64_t total = past + n;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < n; ++i) {
      const float* qi = q + i * q_stride + h * q_head_stride;
      const int64_t visible = past + i + 1;
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < visible; ++j) {
        const float s = Dot(qi, key_rows[j] + h * kv_head_stride, head_dim) * scale;
        scratch[j] = s;
        max_score = std::max(max_score, s);
      }
      float z = 0;
      for (int64_t j = 0; j < visible; ++j) {
        scratch[j] = std::exp(scratch[j] - max_score);
        z += scratch[j];
      }
      const float inv_z = 1.0f / z;
      float* o = out + i * out_stride + h * head_dim;
      std::fill(o, o + head_dim, 0.0f);
      for (int64_t j = 0; j < visible; ++j) {
        const float p = scratch[j] * inv_z;
        scratch[j] = p;
        const float* vj = value_rows[j] + h * kv_head_stride;
        for (int64_t d = 0; d < head_dim; ++d) o[d] += p * vj[d];
      }
      if (probs != nullptr) {
        float* row = probs + (h * n + i) * total;
        std::copy(scratch, scratch + visible, row);
        std::fill(row + visible, row + total, 0.0f);
      }
    }
  }
}

}  // namespace specdec
