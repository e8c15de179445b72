// The CPU engine's matrix product alone (not a pass/fail test): for one weight shape and each
// row count, the fastest of --repeats products, as milliseconds, GFLOPS and weight GB/s, beside
// the core's own multiply-add peak measured in the same run (a register-only loop of the ISA's
// fused multiply-adds). What it answers: whether a row count is bound by reading the weights
// (GB/s near the machine's bandwidth) or by arithmetic (GFLOPS near the peak), e.g. for the
// 9-position verification of docs/cpu_engine.md. One compute thread unless --threads.
//   matmul_bench --out 50304 --in 512 --rows 1,5,9,16   (the 70M LM head, streamed from memory)
//   matmul_bench --out 2048 --in 512 --copies 1         (4 MiB: from cache)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/cpu_kernels/cpu_isa.h"
#include "common/cpu_kernels/matmul.h"
#include "common/cpu_kernels/packed_matrix.h"
#include "common/cpu_kernels/parallel.h"

ABSL_FLAG(int64_t, out, 50304, "output features (rows of W)");
ABSL_FLAG(int64_t, in, 512, "input features");
ABSL_FLAG(std::string, rows, "1,2,3,4,5,6,7,8,9,12,16", "row counts to measure");
ABSL_FLAG(int, copies, 1,
          "copies of W walked in turn (more copies than the last-level cache holds keep every "
          "product reading memory)");
ABSL_FLAG(int, repeats, 15, "products per row count (the fastest is reported)");
ABSL_FLAG(int, threads, 1, "compute threads");
ABSL_FLAG(std::string, dtype, "f32", "weights: f32, bf16, int8 or bf16_dot");

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Fused multiply-adds per second of one core in registers: 10 independent chains, enough to
// cover the latency of two FMA pipes. Compiled for AVX2 + FMA and run only where the CPU has
// them (every machine this project targets does; the baseline ISA reports 0).
__attribute__((target("avx2,fma"))) double FmaPeakGflops() {
  __m256 acc[10];
  for (int i = 0; i < 10; ++i) acc[i] = _mm256_set1_ps(0.001f * static_cast<float>(i));
  const __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(0.0001f);
  const int64_t steps = 50'000'000;
  const auto start = Clock::now();
  for (int64_t k = 0; k < steps; ++k) {
#pragma GCC unroll 10  // unrolled, the chains stay in registers
    for (int i = 0; i < 10; ++i) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
  }
  const double seconds = Seconds(start);
  float sink = 0;
  for (int i = 0; i < 10; ++i) sink += acc[i][0];
  std::fprintf(stderr, "(peak loop checksum %g)\n", sink);  // keeps the loop
  return static_cast<double>(steps) * 10 * 16 / seconds / 1e9;
}

int Main() {
  SetComputeThreads(absl::GetFlag(FLAGS_threads));
  const int64_t out = absl::GetFlag(FLAGS_out), in = absl::GetFlag(FLAGS_in);
  const int copies = std::max(1, absl::GetFlag(FLAGS_copies));
  std::vector<int> row_counts;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_rows), ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n < 1) {
      std::fprintf(stderr, "--rows: '%s' is not a row count >= 1\n", std::string(part).c_str());
      return 2;
    }
    row_counts.push_back(n);
  }
  const absl::StatusOr<WeightDtype> parsed = ParseWeightDtype(absl::GetFlag(FLAGS_dtype));
  if (!parsed.ok()) {
    std::fprintf(stderr, "--dtype: %s\n", std::string(parsed.status().message()).c_str());
    return 2;
  }
  const WeightDtype dtype = *parsed;
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  std::vector<float> w(static_cast<size_t>(out * in));
  for (float& v : w) v = normal(gen);
  std::vector<PackedMatrix> matrices;
  for (int c = 0; c < copies; ++c) {
    matrices.push_back(PackedMatrix::Pack(w.data(), out, in, nullptr, dtype, ActiveCpuIsa()));
  }
  const int max_rows = *std::max_element(row_counts.begin(), row_counts.end());
  std::vector<float> x(static_cast<size_t>(max_rows * in)), y(static_cast<size_t>(max_rows * out));
  for (float& v : x) v = normal(gen);

  const bool has_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const double peak = has_fma ? FmaPeakGflops() : 0.0;
  std::printf("W %lld x %lld %s (%.1f MB a copy, %d copies), %s kernels, %d thread(s)\n",
              static_cast<long long>(out), static_cast<long long>(in), WeightDtypeName(dtype),
              matrices[0].weight_bytes() / 1e6, copies, CpuIsaName(ActiveCpuIsa()),
              absl::GetFlag(FLAGS_threads));
  std::printf("one core's FMA peak (registers only, AVX2): %.1f GFLOPS\n\n", peak);
  std::printf("| rows | ms (fastest of %d) | relative to 1 row | GFLOPS | of the peak | weight GB/s |\n",
              absl::GetFlag(FLAGS_repeats));
  std::printf("|---:|---:|---:|---:|---:|---:|\n");
  double one_row = 0;
  for (const int rows : row_counts) {
    double best = 1e30;
    for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
      const auto start = Clock::now();
      for (const PackedMatrix& m : matrices) MatMul(m, x.data(), rows, in, y.data(), out);
      best = std::min(best, Seconds(start));
    }
    if (rows == 1) one_row = best;
    const double gflops = 2.0 * rows * out * in * copies / best / 1e9;
    const double bytes = static_cast<double>(matrices[0].weight_bytes()) * copies;
    const std::string relative = one_row > 0 ? absl::StrFormat("%.2f", best / one_row) : "-";
    const std::string of_peak = peak > 0 ? absl::StrFormat("%.0f%%", 100 * gflops / peak) : "-";
    std::printf("| %d | %.3f | %s | %.1f | %s | %.1f |\n", rows, best * 1e3, relative.c_str(),
                gflops, of_peak.c_str(), bytes / best / 1e9);
  }
  return 0;
}

}  // namespace
}  // namespace specdec

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return specdec::Main();
}
