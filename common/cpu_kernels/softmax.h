// The vectorised pieces of sampling over a row of ~50k logits (common/sampling uses them): the
// row's maximum and its softmax weights after temperature. Torch-free; runs on ActiveCpuIsa().
#ifndef SPECDEC_COMMON_CPU_KERNELS_SOFTMAX_H_
#define SPECDEC_COMMON_CPU_KERNELS_SOFTMAX_H_

#include <cstdint>

namespace specdec {

// The largest logit, NaN ignored; -inf when there is none.
float MaxLogit(const float* logits, int64_t n);

// w[i] = exp((logits[i] - max_logit) * inv_t), to about 2 ulp; 0 for NaN logits and below
// exp(-87) (where float underflows). Returns the sum of the weights.
double SoftmaxWeights(const float* logits, int64_t n, float max_logit, float inv_t, float* w);

// Index of the first largest value, NaN ignored; 0 when no value is above -inf (n > 0).
int64_t ArgMax(const float* x, int64_t n);

// Writes the indices i with w[i] >= floor, ascending, to `out` (room for n); returns how many.
// Sampling's nucleus candidates: on a peaked row almost every block of the row is skipped after
// one vector comparison.
int64_t IndicesAtLeast(const float* w, int64_t n, float floor, int32_t* out);

// The sum of the weights below `floor`, and in `at_least` how many are at or above it (one
// vector pass, no writes): how sampling narrows its nucleus candidates (common/sampling).
// Summed in float lanes: relative error below n * 2^-24 / (vector width).
double MassBelow(const float* w, int64_t n, float floor, int64_t* at_least);

}  // namespace specdec

#endif  // SPECDEC_COMMON_CPU_KERNELS_SOFTMAX_H_
