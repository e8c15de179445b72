// Run-time ISA detection with the compiler's cpuid wrappers (GCC and Clang).
#include "common/cpu_kernels/cpu_isa.h"

#include <cstdlib>
#include <cstring>

#include "common/base/log.h"

namespace specdec {
namespace {

bool HasAvx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

bool HasAvx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

CpuIsa ParseIsa(const char* name, bool* ok) {
  *ok = true;
  if (std::strcmp(name, "generic") == 0) return CpuIsa::kGeneric;
  if (std::strcmp(name, "avx2") == 0) return CpuIsa::kAvx2;
  if (std::strcmp(name, "avx512") == 0) return CpuIsa::kAvx512;
  *ok = false;
  return CpuIsa::kGeneric;
}

CpuIsa ChooseIsa() {
  CpuIsa isa = DetectCpuIsa();
  if (const char* wanted = std::getenv("SPECDEC_CPU_ISA"); wanted != nullptr && *wanted != '\0') {
    bool ok = false;
    CpuIsa requested = ParseIsa(wanted, &ok);
    if (!ok) {
      SPECDEC_LOG(Warning) << "SPECDEC_CPU_ISA=" << wanted
                           << " is not one of generic, avx2, avx512; using " << CpuIsaName(isa);
    } else if (requested > isa) {
      SPECDEC_LOG(Warning) << "SPECDEC_CPU_ISA=" << wanted << " is not supported by this CPU; using "
                           << CpuIsaName(isa);
    } else {
      isa = requested;
    }
  }
  SPECDEC_LOG(Info) << "CPU kernels: " << CpuIsaName(isa) << " (CPU has: " << CpuFeatureSummary()
                    << ")";
  return isa;
}

}  // namespace

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kGeneric:
      return "generic";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

CpuIsa DetectCpuIsa() {
  __builtin_cpu_init();
  if (HasAvx512()) return CpuIsa::kAvx512;
  if (HasAvx2()) return CpuIsa::kAvx2;
  return CpuIsa::kGeneric;
}

std::vector<CpuIsa> SupportedCpuIsas() {
  std::vector<CpuIsa> isas;
  const CpuIsa best = DetectCpuIsa();
  for (CpuIsa isa : {CpuIsa::kGeneric, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    if (isa <= best) isas.push_back(isa);
  }
  return isas;
}

bool CpuHasAvx512Bf16() {
  __builtin_cpu_init();
  const char* off = std::getenv("SPECDEC_CPU_BF16");
  return __builtin_cpu_supports("avx512bf16") && !(off != nullptr && std::strcmp(off, "0") == 0);
}

bool UsesBf16DotInstruction(CpuIsa isa) { return isa == CpuIsa::kAvx512 && CpuHasAvx512Bf16(); }

CpuIsa ActiveCpuIsa() {
  static const CpuIsa isa = ChooseIsa();
  return isa;
}

std::string CpuFeatureSummary() {
  __builtin_cpu_init();
  std::string out;
  auto add = [&out](bool has, const char* name) {
    if (!has) return;
    if (!out.empty()) out += ' ';
    out += name;
  };
  add(__builtin_cpu_supports("avx2"), "avx2");
  add(__builtin_cpu_supports("fma"), "fma");
  add(__builtin_cpu_supports("avx512f"), "avx512f");
  add(__builtin_cpu_supports("avx512bw"), "avx512bw");
  add(__builtin_cpu_supports("avx512vl"), "avx512vl");
  add(__builtin_cpu_supports("avx512vnni"), "avx512_vnni");
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
  add(__builtin_cpu_supports("avx512bf16"), "avx512_bf16");
#endif
  return out.empty() ? "baseline x86-64" : out;
}

}  // namespace specdec
