// Every kernel instance this CPU can run, against plain double-precision references, for every
// row count the engine serves (1-16 and a batched pass), odd shapes and every weight dtype.
#include <cmath>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "common/cpu_kernels/cpu_isa.h"
#include "common/cpu_kernels/isa_kernels.h"
#include "common/cpu_kernels/matmul.h"
#include "common/cpu_kernels/ops.h"
#include "common/cpu_kernels/packed_matrix.h"
#include "common/cpu_kernels/parallel.h"
#include "common/cpu_kernels/softmax.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

std::vector<float> RandomVector(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(gen);
  return v;
}

double ReferenceGelu(double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }

// y = x W^T + b with the packed (dequantised) weights, in double; bf16_dot rounds x to bf16 too.
std::vector<double> Reference(const PackedMatrix& w, const std::vector<float>& x, int64_t rows) {
  std::vector<double> y(static_cast<size_t>(rows * w.out()));
  const bool bf16_x = w.dtype() == WeightDtype::kBf16Dot;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < w.out(); ++o) {
      double s = w.bias()[o];
      for (int64_t k = 0; k < w.in(); ++k) {
        const float xv = x[r * w.in() + k];
        s += static_cast<double>(bf16_x ? Bf16ToFloat(FloatToBf16(xv)) : xv) * w.At(o, k);
      }
      y[r * w.out() + o] = s;
    }
  }
  return y;
}

using MatMulCase = std::tuple<CpuIsa, WeightDtype>;

class MatMulTest : public ::testing::TestWithParam<MatMulCase> {};

TEST_P(MatMulTest, EveryRowCountAndOddShapeMatchesTheReference) {
  const auto [isa, dtype] = GetParam();
  // in = 1100 crosses the matmul's k-blocks (16 KiB of panel) for every dtype, and 29 rows
  // make two groups of tiles.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1}, {7, 3}, {17, 33}, {40, 64}, {100, 130}, {33, 512}, {5, 1100}};
  for (const auto& [out, in] : shapes) {
    const std::vector<float> w = RandomVector(out * in, static_cast<uint32_t>(out * 131 + in));
    const std::vector<float> b = RandomVector(out, 7);
    const PackedMatrix packed = PackedMatrix::Pack(w.data(), out, in, b.data(), dtype, isa);
    for (int64_t rows : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 29}) {
      const std::vector<float> x = RandomVector(rows * in, static_cast<uint32_t>(rows));
      const std::vector<double> want = Reference(packed, x, rows);
      // Output with a row stride wider than out, to check strides are honoured.
      const int64_t y_stride = out + 3;
      std::vector<float> y(static_cast<size_t>(rows * y_stride), -7.0f);
      MatMul(packed, x.data(), rows, in, y.data(), y_stride);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t o = 0; o < out; ++o) {
          const double expected = want[r * out + o];
          ASSERT_NEAR(y[r * y_stride + o], expected, 1e-4 * (1.0 + std::sqrt(in)))
              << CpuIsaName(isa) << " " << WeightDtypeName(dtype) << " out=" << out
              << " in=" << in << " rows=" << rows << " at [" << r << "," << o << "]";
        }
        for (int64_t o = out; o < y_stride; ++o) ASSERT_EQ(y[r * y_stride + o], -7.0f) << "wrote past out";
      }
    }
  }
}

// What makes verification lossless: a row's outputs are bit for bit the same whatever rows it is
// computed with (the verifier's K+1 positions against plain decoding's one).
TEST_P(MatMulTest, ARowsResultDoesNotDependOnTheOtherRows) {
  const auto [isa, dtype] = GetParam();
  const int64_t out = 100, in = 333;
  const std::vector<float> w = RandomVector(out * in, 31);
  const PackedMatrix packed = PackedMatrix::Pack(w.data(), out, in, nullptr, dtype, isa);
  for (int64_t rows : {2, 3, 5, 9, 16, 40}) {
    const std::vector<float> x = RandomVector(rows * in, static_cast<uint32_t>(100 + rows));
    std::vector<float> together(static_cast<size_t>(rows * out)), alone(together.size());
    MatMul(packed, x.data(), rows, in, together.data(), out);
    for (int64_t r = 0; r < rows; ++r) MatMul(packed, x.data() + r * in, 1, in, alone.data() + r * out, out);
    ASSERT_EQ(together, alone) << CpuIsaName(isa) << " " << WeightDtypeName(dtype) << " rows=" << rows;
  }
}

TEST_P(MatMulTest, EpiloguesAccumulateAndActivate) {
  const auto [isa, dtype] = GetParam();
  const int64_t out = 37, in = 20, rows = 9;
  const std::vector<float> w = RandomVector(out * in, 3);
  const std::vector<float> b = RandomVector(out, 4);
  const PackedMatrix packed = PackedMatrix::Pack(w.data(), out, in, b.data(), dtype, isa);
  const std::vector<float> x = RandomVector(rows * in, 5);
  const std::vector<double> want = Reference(packed, x, rows);
  std::vector<float> acc(static_cast<size_t>(rows * out), 2.5f), gelu(acc.size()), relu(acc.size());
  MatMul(packed, x.data(), rows, in, acc.data(), out, Epilogue::kAccumulate);
  MatMul(packed, x.data(), rows, in, gelu.data(), out, Epilogue::kGelu);
  MatMul(packed, x.data(), rows, in, relu.data(), out, Epilogue::kRelu);
  for (size_t i = 0; i < acc.size(); ++i) {
    EXPECT_NEAR(acc[i], 2.5 + want[i], 1e-4);
    EXPECT_NEAR(gelu[i], ReferenceGelu(want[i]), 1e-4);
    EXPECT_NEAR(relu[i], std::max(0.0, want[i]), 1e-4);
  }
}

std::vector<MatMulCase> AllCases() {
  std::vector<MatMulCase> cases;
  for (CpuIsa isa : SupportedCpuIsas()) {
    for (WeightDtype dtype :
         {WeightDtype::kF32, WeightDtype::kBf16, WeightDtype::kInt8, WeightDtype::kBf16Dot}) {
      cases.emplace_back(isa, dtype);
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(SupportedIsas, MatMulTest, ::testing::ValuesIn(AllCases()),
                         [](const ::testing::TestParamInfo<MatMulCase>& info) {
                           return std::string(CpuIsaName(std::get<0>(info.param))) + "_" +
                                  WeightDtypeName(std::get<1>(info.param));
                         });

TEST(PackedMatrixTest, StoredWeightsStayWithinTheirDtypesPrecision) {
  const int64_t out = 19, in = 45;
  const std::vector<float> w = RandomVector(out * in, 11, 0.05f);
  for (CpuIsa isa : SupportedCpuIsas()) {
    const PackedMatrix f32 = PackedMatrix::Pack(w.data(), out, in, nullptr, WeightDtype::kF32, isa);
    const PackedMatrix bf16 = PackedMatrix::Pack(w.data(), out, in, nullptr, WeightDtype::kBf16, isa);
    const PackedMatrix int8 = PackedMatrix::Pack(w.data(), out, in, nullptr, WeightDtype::kInt8, isa);
    const PackedMatrix dot = PackedMatrix::Pack(w.data(), out, in, nullptr, WeightDtype::kBf16Dot, isa);
    // Half and a quarter of f32's bytes, up to the cache-line padding of each panel.
    EXPECT_LE(bf16.weight_bytes(), f32.weight_bytes() / 2 + 64 * bf16.panels());
    EXPECT_LE(int8.weight_bytes(), f32.weight_bytes() / 4 + 64 * int8.panels());
    // in = 45 is odd: the pairs add one zero k a panel row.
    EXPECT_LE(dot.weight_bytes(), bf16.weight_bytes() + 2 * dot.block() + 64 * dot.panels());
    for (int64_t o = 0; o < out; ++o) {
      float max_abs = 0;
      for (int64_t k = 0; k < in; ++k) max_abs = std::max(max_abs, std::fabs(w[o * in + k]));
      for (int64_t k = 0; k < in; ++k) {
        const float v = w[o * in + k];
        ASSERT_EQ(f32.At(o, k), v);
        ASSERT_NEAR(bf16.At(o, k), v, std::fabs(v) * (1.0f / 256));
        ASSERT_EQ(dot.At(o, k), bf16.At(o, k));  // the same values, stored in pairs of k
        ASSERT_NEAR(int8.At(o, k), v, max_abs / 127.0f / 2 * 1.0001f);
      }
    }
  }
}

TEST(PackedMatrixTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(3.140625f)), 3.140625f);  // exactly representable
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::nanf("")))));
  EXPECT_FALSE(ParseWeightDtype("f16").ok());
  EXPECT_EQ(*ParseWeightDtype("bf16"), WeightDtype::kBf16);
  EXPECT_EQ(*ParseWeightDtype("bf16_dot"), WeightDtype::kBf16Dot);
  EXPECT_EQ(WeightDtypeName(WeightDtype::kBf16Dot), std::string("bf16_dot"));
}

TEST(ParallelTest, TwoThreadsGiveBitIdenticalProducts) {
  const int64_t out = 4099, in = 256, rows = 5;
  const std::vector<float> w = RandomVector(out * in, 21);
  const std::vector<float> x = RandomVector(rows * in, 22);
  const PackedMatrix packed =
      PackedMatrix::Pack(w.data(), out, in, nullptr, WeightDtype::kF32, ActiveCpuIsa());
  std::vector<float> one(static_cast<size_t>(rows * out)), two(one.size());
  SetComputeThreads(1);
  MatMul(packed, x.data(), rows, in, one.data(), out);
  SetComputeThreads(2);
  for (int repeat = 0; repeat < 50; ++repeat) {
    std::fill(two.begin(), two.end(), 0.0f);
    MatMul(packed, x.data(), rows, in, two.data(), out);
    ASSERT_EQ(one, two) << "repeat " << repeat;
  }
  SetComputeThreads(1);
}

TEST(ParallelTest, CoversTheRangeExactlyOnce) {
  SetComputeThreads(2);
  std::vector<int> hits(1000, 0);
  ParallelFor(1000, 10, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) ++hits[i];
  });
  for (int h : hits) ASSERT_EQ(h, 1);
  SetComputeThreads(1);
}

TEST(SoftmaxTest, EveryIsaMatchesExpAndIgnoresNan) {
  std::vector<float> logits = RandomVector(1003, 51, 4.0f);  // odd length: the tail path too
  logits[5] = std::nanf("");
  logits[17] = -std::numeric_limits<float>::infinity();
  logits[900] = -1000.0f;  // far below: weight 0
  using Max = float (*)(const float*, int64_t);
  using Weights = double (*)(const float*, int64_t, float, float, float*);
  std::vector<std::tuple<CpuIsa, Max, Weights>> kernels = {
      {CpuIsa::kGeneric, isa_generic::MaxLogit, isa_generic::SoftmaxWeights},
      {CpuIsa::kAvx2, isa_avx2::MaxLogit, isa_avx2::SoftmaxWeights},
      {CpuIsa::kAvx512, isa_avx512::MaxLogit, isa_avx512::SoftmaxWeights}};
  float want_max = -1e30f;
  for (float l : logits) {
    if (l > want_max) want_max = l;
  }
  for (const auto& [isa, max_fn, weights_fn] : kernels) {
    if (isa > DetectCpuIsa()) continue;
    const float max = max_fn(logits.data(), static_cast<int64_t>(logits.size()));
    ASSERT_EQ(max, want_max) << CpuIsaName(isa);
    std::vector<float> w(logits.size());
    const double sum = weights_fn(logits.data(), static_cast<int64_t>(logits.size()), max, 1.25f, w.data());
    double want_sum = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double want = std::isnan(logits[i]) ? 0.0 : std::exp((logits[i] - max) * 1.25);
      want_sum += want;
      ASSERT_NEAR(w[i], want, 5e-6 * want + 1e-30) << CpuIsaName(isa) << " at " << i;
    }
    EXPECT_EQ(w[5], 0.0f);
    EXPECT_EQ(w[17], 0.0f);
    EXPECT_EQ(w[900], 0.0f);
    EXPECT_NEAR(sum, want_sum, 1e-5 * want_sum);
  }
  EXPECT_EQ(MaxLogit(logits.data(), 3), std::max({logits[0], logits[1], logits[2]}));
}

TEST(SoftmaxTest, EveryIsaFindsTheFirstMaximumAndTheCandidates) {
  using ArgMaxFn = int64_t (*)(const float*, int64_t);
  using AtLeastFn = int64_t (*)(const float*, int64_t, float, int32_t*);
  const std::vector<std::tuple<CpuIsa, ArgMaxFn, AtLeastFn>> kernels = {
      {CpuIsa::kGeneric, isa_generic::ArgMax, isa_generic::IndicesAtLeast},
      {CpuIsa::kAvx2, isa_avx2::ArgMax, isa_avx2::IndicesAtLeast},
      {CpuIsa::kAvx512, isa_avx512::ArgMax, isa_avx512::IndicesAtLeast}};
  // The scalar definitions.
  auto argmax = [](const std::vector<float>& x) {
    int64_t best = -1;
    for (size_t i = 0; i < x.size(); ++i) {
      if (std::isnan(x[i])) continue;
      if (best < 0 || x[i] > x[best]) best = static_cast<int64_t>(i);
    }
    return best < 0 ? int64_t{0} : best;
  };
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  std::vector<std::vector<float>> rows;
  for (int64_t n : {1, 7, 16, 33, 257, 1003}) {  // below, at and past vector and span widths
    rows.push_back(RandomVector(n, 60 + n, 3.0f));
  }
  rows.push_back({1.0f, 5.0f, 2.0f, 5.0f, 5.0f});                    // ties: the first
  rows.push_back({nan, nan, nan});                                    // no number at all
  rows.push_back({nan, -inf, -inf, nan});                             // nothing above -inf
  rows.push_back(std::vector<float>(40, 2.0f));                       // all equal
  std::vector<float> late(300, -1.0f);
  late[299] = 4.0f;  // the maximum in the scalar tail
  late[17] = nan;
  rows.push_back(late);
  std::vector<float> lanes(64, 0.0f);
  lanes[45] = 3.0f;  // equal maxima in different lanes: the lower index
  lanes[13] = 3.0f;
  rows.push_back(lanes);
  for (const auto& [isa, argmax_fn, at_least_fn] : kernels) {
    if (isa > DetectCpuIsa()) continue;
    for (size_t r = 0; r < rows.size(); ++r) {
      const std::vector<float>& x = rows[r];
      const int64_t n = static_cast<int64_t>(x.size());
      EXPECT_EQ(argmax_fn(x.data(), n), argmax(x)) << CpuIsaName(isa) << " row " << r;
      for (float floor : {-inf, -0.5f, 0.0f, 2.0f, 10.0f}) {
        std::vector<int32_t> want, got(x.size());
        for (int64_t i = 0; i < n; ++i) {
          if (x[i] >= floor) want.push_back(static_cast<int32_t>(i));
        }
        got.resize(static_cast<size_t>(at_least_fn(x.data(), n, floor, got.data())));
        EXPECT_EQ(got, want) << CpuIsaName(isa) << " row " << r << " floor " << floor;
      }
    }
  }
}

TEST(SoftmaxTest, EveryIsaSumsTheMassBelowAFloorAndCountsTheRest) {
  using MassFn = double (*)(const float*, int64_t, float, int64_t*);
  const std::vector<std::pair<CpuIsa, MassFn>> kernels = {{CpuIsa::kGeneric, isa_generic::MassBelow},
                                                          {CpuIsa::kAvx2, isa_avx2::MassBelow},
                                                          {CpuIsa::kAvx512, isa_avx512::MassBelow}};
  for (int64_t n : {1, 7, 16, 63, 64, 65, 1003, 50304}) {  // around the unrolled width, and a vocabulary
    std::vector<float> w = RandomVector(n, 90 + n, 1.0f);
    for (float& x : w) x = x * x;  // weights: >= 0
    for (float floor : {0.0f, 1e-3f, 0.25f, 2.0f}) {
      double want_mass = 0;
      int64_t want_count = 0;
      for (float x : w) {
        if (x >= floor) {
          ++want_count;
        } else {
          want_mass += x;
        }
      }
      for (const auto& [isa, mass_fn] : kernels) {
        if (isa > DetectCpuIsa()) continue;
        int64_t count = -1;
        const double mass = mass_fn(w.data(), n, floor, &count);
        EXPECT_EQ(count, want_count) << CpuIsaName(isa) << " n " << n << " floor " << floor;
        EXPECT_NEAR(mass, want_mass, 1e-6 * want_mass + 1e-30) << CpuIsaName(isa) << " n " << n;
      }
    }
  }
}

TEST(OpsTest, LayerNormMatchesTheDefinition) {
  const int64_t rows = 3, cols = 70;
  const std::vector<float> x = RandomVector(rows * cols, 31, 3.0f);
  const std::vector<float> w = RandomVector(cols, 32), b = RandomVector(cols, 33);
  std::vector<float> out(x.size());
  LayerNormRows(x.data(), rows, cols, w.data(), b.data(), 1e-5f, out.data());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < cols; ++c) mean += x[r * cols + c];
    mean /= cols;
    for (int64_t c = 0; c < cols; ++c) var += (x[r * cols + c] - mean) * (x[r * cols + c] - mean);
    var /= cols;
    for (int64_t c = 0; c < cols; ++c) {
      const double want = (x[r * cols + c] - mean) / std::sqrt(var + 1e-5) * w[c] + b[c];
      ASSERT_NEAR(out[r * cols + c], want, 1e-4);
    }
  }
}

TEST(OpsTest, RotaryRotatesPairsOfTheFirstDims) {
  // One head of 6 dims, rotary on the first 4: pairs (0, 2) and (1, 3) rotate; 4 and 5 stay.
  std::vector<float> v = {1, 2, 3, 4, 5, 6};
  const float c = std::cos(0.5f), s = std::sin(0.5f);
  const std::vector<float> cos = {c, 1, c, 1}, sin = {s, 0, s, 0};
  ApplyRotaryInPlace(v.data(), 1, 6, 4, cos.data(), sin.data());
  EXPECT_NEAR(v[0], 1 * c - 3 * s, 1e-6);
  EXPECT_NEAR(v[2], 3 * c + 1 * s, 1e-6);
  EXPECT_NEAR(v[1], 2, 1e-6);
  EXPECT_NEAR(v[3], 4, 1e-6);
  EXPECT_EQ(v[4], 5);
  EXPECT_EQ(v[5], 6);
}

TEST(OpsTest, CausalAttentionMatchesTheDefinitionOnEveryIsa) {
  using Attention = void (*)(const float*, int64_t, int64_t, const float* const*,
                             const float* const*, int64_t, int64_t, int64_t, int64_t, int64_t,
                             float*, int64_t, float*, float*);
  const std::vector<std::pair<CpuIsa, Attention>> kernels = {
      {CpuIsa::kGeneric, isa_generic::CausalAttention},
      {CpuIsa::kAvx2, isa_avx2::CausalAttention},
      {CpuIsa::kAvx512, isa_avx512::CausalAttention}};
  // head_dim 37: vector and scalar tails; the others are whole vectors on some ISA (their own
  // code path there). 4 new rows after 21 cached positions: visible counts 22-25, not all
  // multiples of the four keys a step takes.
  for (const int64_t hd : {37, 8, 16, 32, 64, 128}) {
    SCOPED_TRACE(hd);
    const int64_t heads = 3, past = 21, n = 4, total = past + n;
    const int64_t q_stride = heads * hd * 3, kv_stride = heads * hd + 2;
    const std::vector<float> q = RandomVector(n * q_stride, 41);
    const std::vector<float> k = RandomVector(total * kv_stride, 42), v = RandomVector(total * kv_stride, 43);
    std::vector<const float*> key_rows, value_rows;
    for (int64_t j = 0; j < total; ++j) {
      key_rows.push_back(k.data() + j * kv_stride);
      value_rows.push_back(v.data() + j * kv_stride);
    }
    for (const auto& [isa, attention] : kernels) {
      if (isa > DetectCpuIsa()) continue;
      std::vector<float> out(static_cast<size_t>(n * heads * hd)), scratch(total),
          probs(static_cast<size_t>(heads * n * total));
      attention(q.data(), q_stride, 3 * hd, key_rows.data(), value_rows.data(), hd, n, past, heads,
                hd, out.data(), heads * hd, scratch.data(), probs.data());
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t i = 0; i < n; ++i) {
          std::vector<double> p(total, 0.0);
          double max_s = -1e30, z = 0;
          for (int64_t j = 0; j <= past + i; ++j) {
            double s = 0;
            for (int64_t d = 0; d < hd; ++d) s += q[i * q_stride + h * 3 * hd + d] * k[j * kv_stride + h * hd + d];
            p[j] = s / std::sqrt(static_cast<double>(hd));
            max_s = std::max(max_s, p[j]);
          }
          for (int64_t j = 0; j <= past + i; ++j) z += (p[j] = std::exp(p[j] - max_s));
          for (int64_t j = 0; j < total; ++j) {
            const double pj = j <= past + i ? p[j] / z : 0.0;
            ASSERT_NEAR(probs[(h * n + i) * total + j], pj, 1e-5) << CpuIsaName(isa);
          }
          for (int64_t d = 0; d < hd; ++d) {
            double o = 0;
            for (int64_t j = 0; j <= past + i; ++j) o += p[j] / z * v[j * kv_stride + h * hd + d];
            ASSERT_NEAR(out[i * heads * hd + h * hd + d], o, 1e-5) << CpuIsaName(isa);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace specdec
