// Dispatch of the softmax kernels to the active ISA's instance.
#include "common/cpu_kernels/softmax.h"

#include "common/cpu_kernels/cpu_isa.h"
#include "common/cpu_kernels/isa_kernels.h"

namespace specdec {


float MaxLogit(const float* logits, int64_t n) {
  switch (ActiveCpuIsa()) {
    case CpuIsa::kAvx512: return isa_avx512::MaxLogit(logits, n);
    case CpuIsa::kAvx2: return isa_avx2::MaxLogit(logits, n);
    case CpuIsa::kGeneric: break;
  }
  return isa_generic::MaxLogit(logits, n);
}

double SoftmaxWeights(const float* logits, int64_t n, float max_logit, float inv_t, float* w) {
  switch (ActiveCpuIsa()) {
    case CpuIsa::kAvx512: return isa_avx512::SoftmaxWeights(logits, n, max_logit, inv_t, w);
    case CpuIsa::kAvx2: return isa_avx2::SoftmaxWeights(logits, n, max_logit, inv_t, w);
    case CpuIsa::kGeneric: break;
  }
  return isa_generic::SoftmaxWeights(logits, n, max_logit, inv_t, w);
}

int64_t ArgMax(const float* x, int64_t n) {
  switch (ActiveCpuIsa()) {
    case CpuIsa::kAvx512: return isa_avx512::ArgMax(x, n);
    case CpuIsa::kAvx2: return isa_avx2::ArgMax(x, n);
    case CpuIsa::kGeneric: break;
  }
  return isa_generic::ArgMax(x, n);
}

int64_t IndicesAtLeast(const float* w, int64_t n, float floor, int32_t* out) {
  switch (ActiveCpuIsa()) {
    case CpuIsa::kAvx512: return isa_avx512::IndicesAtLeast(w, n, floor, out);
    case CpuIsa::kAvx2: return isa_avx2::IndicesAtLeast(w, n, floor, out);
    case CpuIsa::kGeneric: break;
  }
  return isa_generic::IndicesAtLeast(w, n, floor, out);
}

double MassBelow(const float* w, int64_t n, float floor, int64_t* at_least) {
  switch (ActiveCpuIsa()) {
    case CpuIsa::kAvx512: return isa_avx512::MassBelow(w, n, floor, at_least);
    case CpuIsa::kAvx2: return isa_avx2::MassBelow(w, n, floor, at_least);
    case CpuIsa::kGeneric: break;
  }
  return isa_generic::MassBelow(w, n, floor, at_least);
}

}  // namespace specdec
