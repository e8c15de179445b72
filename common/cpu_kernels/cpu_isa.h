// Which vector instruction set the CPU kernels run with, chosen once at run time. The project's
// machines differ (AMD Zen 4 with AVX-512, Zen 3 with AVX2/FMA only), so every kernel is built
// for each ISA in its own translation unit and the best one the CPU supports is used.
#ifndef SPECDEC_COMMON_CPU_KERNELS_CPU_ISA_H_
#define SPECDEC_COMMON_CPU_KERNELS_CPU_ISA_H_

#include <string>
#include <vector>

namespace specdec {

// Ordered: a higher value needs everything a lower one does.
enum class CpuIsa {
  kGeneric = 0,  // x86-64 baseline (SSE2), 4 floats a vector: runs anywhere
  kAvx2 = 1,     // AVX2 + FMA, 8 floats a vector
  kAvx512 = 2,   // AVX-512 F/BW/VL/DQ, 16 floats a vector
};

const char* CpuIsaName(CpuIsa isa);

// The best ISA this CPU supports.
CpuIsa DetectCpuIsa();

// Every ISA this CPU can run, lowest first (what the kernel tests iterate over).
std::vector<CpuIsa> SupportedCpuIsas();

// The ISA kernels use: DetectCpuIsa(), lowered by the environment variable SPECDEC_CPU_ISA
// (generic|avx2|avx512; a value above what the CPU supports is ignored with a warning).
// Decided on first use and logged once.
CpuIsa ActiveCpuIsa();

// Whether the CPU has AVX512-BF16 (the bf16 dot product the bf16_dot weights use; without it
// they are computed with f32 multiply-adds). Only the avx512 kernels use it; SPECDEC_CPU_BF16=0
// turns it off (to test the other path on a CPU that has it).
bool CpuHasAvx512Bf16();

// Whether bf16_dot products on `isa`'s kernels use AVX512-BF16's instruction (the avx512 kernels
// on a CPU that has it); otherwise f32 multiply-adds of the same bf16 values.
// Not inline: the avx512 kernels call it, and an inline copy compiled there could be the one
// another translation unit links to.
bool UsesBf16DotInstruction(CpuIsa isa);

// Human-readable CPU features relevant to the kernels, e.g. "avx2 fma avx512f avx512_bf16".
std::string CpuFeatureSummary();

}  // namespace specdec

#endif  // SPECDEC_COMMON_CPU_KERNELS_CPU_ISA_H_
