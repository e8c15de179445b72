// The CPU kernels (matmul, softmax and attention .inc files) built for the generic ISA; see
// CMakeLists.txt for its flags.
#define SPECDEC_VEC_FLOATS 4
#define SPECDEC_ISA_NS isa_generic
#include "common/cpu_kernels/isa_kernels.h"
#include "common/cpu_kernels/matmul_kernel.inc"
#include "common/cpu_kernels/softmax_kernel.inc"
#include "common/cpu_kernels/attention_kernel.inc"
