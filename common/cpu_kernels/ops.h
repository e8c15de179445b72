// The CPU engine's elementwise and attention kernels over raw float rows: what a transformer
// layer does between its matrix products, without a tensor or an allocation per call.
// Torch-free. Shapes in comments are row-major.
#ifndef SPECDEC_COMMON_CPU_KERNELS_OPS_H_
#define SPECDEC_COMMON_CPU_KERNELS_OPS_H_

#include <cstdint>

namespace specdec {

// out[r] = (x[r] - mean) / sqrt(var + eps) * weight + bias for each of `rows` rows of `cols`.
void LayerNormRows(const float* x, int64_t rows, int64_t cols, const float* weight,
                   const float* bias, float eps, float* out);

// GPT-NeoX rotary embedding (Hugging Face's rotate_half form) on the first `rot` dims of each
// of `heads` head vectors of `head_dim` floats at x (head h at x + h * head_stride), for one
// position whose cos/sin table rows ([rot], halves duplicated) are given.
void ApplyRotaryInPlace(float* x, int64_t heads, int64_t head_stride, int64_t rot,
                        const float* cos, const float* sin);

// Causal attention of n new positions (absolute past .. past + n - 1) for `heads` heads of
// `head_dim`, over keys and values found through row pointers, so one kernel serves the
// contiguous cache and the paged one alike:
//   q:      [n, q_stride], head h of row i at q + i * q_stride + h * q_head_stride
//   keys:   key_rows[j] + h * kv_head_stride is head h of position j, j < past + n
//   values: value_rows[j] + h * kv_head_stride likewise
//   out:    [n, out_stride], head h of row i at out + i * out_stride + h * head_dim
// Position i sees keys 0 .. past + i. `scratch` holds past + n floats. When `probs` is not
// null it receives the attention probabilities as [heads, n, past + n] (zeros where masked).
void CausalAttention(const float* q, int64_t q_stride, int64_t q_head_stride,
                     const float* const* key_rows, const float* const* value_rows,
                     int64_t kv_head_stride, int64_t n, int64_t past, int64_t heads,
                     int64_t head_dim, float* out, int64_t out_stride, float* scratch, float* probs);

// One query of `head_dim` floats against `count` keys and values found through row pointers
// (head offset `kv_offset` added to each row): the attention output into `out` [head_dim], the
// same arithmetic as CausalAttention's for a query that sees those rows. `scratch` holds `count`
// floats and receives the probabilities.
void RowAttention(const float* q, const float* const* key_rows, const float* const* value_rows,
                  int64_t kv_offset, int64_t count, int64_t head_dim, float* out, float* scratch);

// Quest's upper bound of q . k over each of `pages` pages: bounds[j] = sum_d max(q[d] * min[d],
// q[d] * max[d]), where page j's summary is `2 * head_dim` floats at summaries + j * 2 *
// head_dim, the per-dimension minimum of its keys then their maximum.
void PageBounds(const float* q, const float* summaries, int64_t pages, int64_t head_dim,
                float* bounds);

}  // namespace specdec

#endif  // SPECDEC_COMMON_CPU_KERNELS_OPS_H_
