// The CPU kernels (matmul, softmax and attention .inc files) built for the avx512 ISA; see
// CMakeLists.txt for its flags.
#define SPECDEC_VEC_FLOATS 16
#define SPECDEC_ISA_NS isa_avx512
#include "common/cpu_kernels/isa_kernels.h"
#include "common/cpu_kernels/matmul_kernel.inc"
#include "common/cpu_kernels/softmax_kernel.inc"
#include "common/cpu_kernels/attention_kernel.inc"
