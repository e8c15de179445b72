// The CPU kernels (matmul_kernel.inc, softmax_kernel.inc) built for the generic ISA; see
// CMakeLists.txt for its flags.
#define SPECDEC_VEC_FLOATS 4
#define SPECDEC_ISA_NS isa_generic
#include "common/cpu_kernels/matmul_kernel.inc"
#include "common/cpu_kernels/softmax_kernel.inc"
