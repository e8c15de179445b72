// Tests for token sampling: parameter validation, the counter-based uniform stream, the
// temperature / top-k / top-p pipeline (HF semantics) and the inverse-CDF draw.
#include "common/sampling/sampling.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

using ::testing::ElementsAre;

SamplingParams Params(float temperature, int32_t top_k = 0, float top_p = 1.0f, uint64_t seed = 0) {
  SamplingParams params;
  params.temperature = temperature;
  params.top_k = top_k;
  params.top_p = top_p;
  params.seed = seed;
  return params;
}

double Sum(const TokenDistribution& dist) {
  return std::accumulate(dist.probs.begin(), dist.probs.end(), 0.0);
}

// Logits whose softmax at temperature 1 is exactly `probs`.
std::vector<float> LogitsOf(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

TEST(SamplingParamsTest, ValidateAcceptsDefaultsAndRejectsNonsense) {
  EXPECT_TRUE(SamplingParams().Validate().ok());
  EXPECT_TRUE(Params(0.7f, 50, 0.9f).Validate().ok());
  EXPECT_TRUE(Params(1.0f, 0, 1.0f).Validate().ok());
  EXPECT_EQ(Params(-1.0f).Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Params(NAN).Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Params(INFINITY).Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Params(1.0f, -1).Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Params(1.0f, 0, 0.0f).Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Params(1.0f, 0, 1.5f).Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Params(1.0f, 0, NAN).Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Params(0.0f).greedy());
  EXPECT_FALSE(Params(0.5f).greedy());
}

TEST(TokenDistributionTest, ProbOfDenseAndSparse) {
  TokenDistribution dense{{}, {0.25f, 0.75f}};
  EXPECT_FLOAT_EQ(dense.ProbOf(1), 0.75f);
  EXPECT_EQ(dense.ProbOf(2), 0.0f);
  EXPECT_EQ(dense.ProbOf(-1), 0.0f);
  TokenDistribution sparse{{7, 3}, {0.6f, 0.4f}};
  EXPECT_FLOAT_EQ(sparse.ProbOf(3), 0.4f);
  EXPECT_EQ(sparse.ProbOf(0), 0.0f);
  EXPECT_EQ(sparse.IdAt(0), 7);
  EXPECT_EQ(dense.IdAt(1), 1);
}

TEST(UniformAtTest, IsAPureFunctionOfItsArguments) {
  EXPECT_EQ(UniformAt(42, 7, RandomPurpose::kDraft), UniformAt(42, 7, RandomPurpose::kDraft));
  EXPECT_NE(UniformAt(42, 7, RandomPurpose::kDraft), UniformAt(42, 7, RandomPurpose::kAccept));
  EXPECT_NE(UniformAt(42, 7, RandomPurpose::kDraft), UniformAt(42, 8, RandomPurpose::kDraft));
  EXPECT_NE(UniformAt(42, 7, RandomPurpose::kDraft), UniformAt(43, 7, RandomPurpose::kDraft));
}

TEST(UniformAtTest, IsUniformOnTheUnitInterval) {
  // 16 bins x 3 streams, 20000 draws each: chi-square with 15 dof, 1e-4 critical value ~ 44.3.
  constexpr int kBins = 16;
  constexpr int kDraws = 20000;
  for (RandomPurpose purpose :
       {RandomPurpose::kTarget, RandomPurpose::kDraft, RandomPurpose::kAccept}) {
    std::vector<int> counts(kBins, 0);
    double mean = 0.0;
    for (int i = 0; i < kDraws; ++i) {
      // Walk both seeds and positions, as the gateway does.
      const double u = UniformAt(static_cast<uint64_t>(i / 100), i % 100, purpose);
      ASSERT_GE(u, 0.0);
      ASSERT_LT(u, 1.0);
      ++counts[static_cast<int>(u * kBins)];
      mean += u;
    }
    const double expected = static_cast<double>(kDraws) / kBins;
    double chi2 = 0.0;
    for (int c : counts) chi2 += (c - expected) * (c - expected) / expected;
    EXPECT_LT(chi2, 44.3) << "purpose " << static_cast<int>(purpose);
    EXPECT_NEAR(mean / kDraws, 0.5, 0.01);
  }
}

TEST(UniformAtTest, StreamsAreUncorrelated) {
  // Sample correlation between purposes at the same (seed, position) should be ~0
  // (|r| < 4 / sqrt(n) is a ~6e-5 false alarm rate).
  constexpr int kDraws = 20000;
  double sxy = 0, sx = 0, sy = 0, sxx = 0, syy = 0;
  for (int i = 0; i < kDraws; ++i) {
    const double x = UniformAt(9, i, RandomPurpose::kDraft);
    const double y = UniformAt(9, i, RandomPurpose::kAccept);
    sx += x, sy += y, sxy += x * y, sxx += x * x, syy += y * y;
  }
  const double n = kDraws;
  const double r = (sxy - sx * sy / n) / std::sqrt((sxx - sx * sx / n) * (syy - sy * sy / n));
  EXPECT_LT(std::abs(r), 4.0 / std::sqrt(n));
}

TEST(ArgmaxTokenTest, FirstMaximumMappedThroughVocabIds) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(ArgmaxToken(logits.data(), 4, nullptr), 1);
  const std::vector<int32_t> ids = {10, 20, 30, 40};
  EXPECT_EQ(ArgmaxToken(logits.data(), 4, ids.data()), 20);
  const std::vector<float> with_nan = {NAN, 1.0f, 3.0f};
  EXPECT_EQ(ArgmaxToken(with_nan.data(), 3, nullptr), 2);
  EXPECT_EQ(ArgmaxToken(logits.data(), 0, nullptr), -1);
}

TEST(ToDistributionTest, GreedyIsOneHotOnTheArgmax) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f};
  TokenDistribution dist = ToDistribution(logits.data(), 3, nullptr, Params(0.0f));
  EXPECT_THAT(dist.ids, ElementsAre(1));
  EXPECT_THAT(dist.probs, ElementsAre(1.0f));
}

TEST(ToDistributionTest, SoftmaxWithTemperatureIsDense) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  for (float t : {0.5f, 1.0f, 2.0f}) {
    TokenDistribution dist = ToDistribution(logits.data(), 3, nullptr, Params(t));
    ASSERT_TRUE(dist.dense());
    ASSERT_EQ(dist.size(), 3);
    double z = 0;
    for (float l : logits) z += std::exp(l / t);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(dist.probs[i], std::exp(logits[i] / t) / z, 1e-6);
  }
}

TEST(ToDistributionTest, LargeLogitsDoNotOverflow) {
  const std::vector<float> logits = {1000.0f, 999.0f, -1000.0f, -INFINITY};
  TokenDistribution dist = ToDistribution(logits.data(), 4, nullptr, Params(1.0f));
  EXPECT_NEAR(dist.probs[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  EXPECT_EQ(dist.probs[3], 0.0f);
  EXPECT_NEAR(Sum(dist), 1.0, 1e-6);
}

TEST(ToDistributionTest, TopKKeepsTheKMostLikelyRenormalised) {
  const std::vector<float> logits = LogitsOf({0.1, 0.4, 0.2, 0.3});
  TokenDistribution dist = ToDistribution(logits.data(), 4, nullptr, Params(1.0f, 2));
  ASSERT_FALSE(dist.dense());
  EXPECT_THAT(dist.ids, ElementsAre(1, 3));
  EXPECT_NEAR(dist.probs[0], 0.4 / 0.7, 1e-6);
  EXPECT_NEAR(dist.probs[1], 0.3 / 0.7, 1e-6);
}

TEST(ToDistributionTest, TopKTiesBreakToTheLowerId) {
  const std::vector<float> logits = {1.0f, 2.0f, 2.0f, 2.0f};
  TokenDistribution dist = ToDistribution(logits.data(), 4, nullptr, Params(1.0f, 2));
  EXPECT_THAT(dist.ids, ElementsAre(1, 2));
}

TEST(ToDistributionTest, TopPFollowsHuggingFace) {
  // HF removes tokens whose ascending cumulative mass is <= 1 - top_p, i.e. keeps the smallest
  // descending prefix whose mass reaches top_p.
  const std::vector<float> logits = LogitsOf({0.2, 0.5, 0.3});
  EXPECT_THAT(ToDistribution(logits.data(), 3, nullptr, Params(1.0f, 0, 0.45f)).ids,
              ElementsAre(1));  // 0.5 >= 0.45
  EXPECT_THAT(ToDistribution(logits.data(), 3, nullptr, Params(1.0f, 0, 0.7f)).ids,
              ElementsAre(1, 2));  // 0.5 < 0.7 <= 0.8
  EXPECT_THAT(ToDistribution(logits.data(), 3, nullptr, Params(1.0f, 0, 0.01f)).ids,
              ElementsAre(1));  // always at least one token
  TokenDistribution dist = ToDistribution(logits.data(), 3, nullptr, Params(1.0f, 0, 0.81f));
  EXPECT_THAT(dist.ids, ElementsAre(1, 2, 0));
  EXPECT_NEAR(Sum(dist), 1.0, 1e-6);
}

TEST(ToDistributionTest, TopPIsMeasuredAfterTopK) {
  // After top-2 the distribution is {0.5/0.8, 0.3/0.8} = {0.625, 0.375}: top_p 0.6 keeps one.
  const std::vector<float> logits = LogitsOf({0.2, 0.5, 0.3});
  TokenDistribution dist = ToDistribution(logits.data(), 3, nullptr, Params(1.0f, 2, 0.6f));
  EXPECT_THAT(dist.ids, ElementsAre(1));
  dist = ToDistribution(logits.data(), 3, nullptr, Params(1.0f, 2, 0.7f));
  EXPECT_THAT(dist.ids, ElementsAre(1, 2));
  EXPECT_NEAR(dist.probs[0], 0.625, 1e-6);
}

TEST(ToDistributionTest, VocabIdsMakeTheResultSparseOverThoseIds) {
  const std::vector<float> logits = LogitsOf({0.25, 0.75});
  const std::vector<int32_t> ids = {100, 7};
  TokenDistribution dist = ToDistribution(logits.data(), 2, ids.data(), Params(1.0f));
  ASSERT_FALSE(dist.dense());
  EXPECT_NEAR(dist.ProbOf(7), 0.75, 1e-6);
  EXPECT_NEAR(dist.ProbOf(100), 0.25, 1e-6);
  EXPECT_EQ(dist.ProbOf(0), 0.0f);
}

TEST(ToDistributionTest, MaxSupportTruncatesAfterTopP) {
  const std::vector<float> logits = LogitsOf({0.1, 0.4, 0.2, 0.3});
  TokenDistribution dist = ToDistribution(logits.data(), 4, nullptr, Params(1.0f), 3);
  EXPECT_THAT(dist.ids, ElementsAre(1, 3, 2));
  EXPECT_NEAR(dist.probs[0], 0.4 / 0.9, 1e-6);
  EXPECT_NEAR(Sum(dist), 1.0, 1e-6);
}

TEST(ToDistributionTest, FiftyThousandColumnRowsAreFastAndCorrect) {
  constexpr int64_t kCols = 50304;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(kCols);
  for (float& l : logits) l = normal(rng);
  const auto start = std::chrono::steady_clock::now();
  constexpr int kIters = 20;
  for (int i = 0; i < kIters; ++i) {
    TokenDistribution dense = ToDistribution(logits.data(), kCols, nullptr, Params(0.8f));
    ASSERT_EQ(dense.size(), kCols);
    ASSERT_NEAR(Sum(dense), 1.0, 1e-4);
    TokenDistribution nucleus =
        ToDistribution(logits.data(), kCols, nullptr, Params(0.8f, 0, 0.9f));
    ASSERT_NEAR(Sum(nucleus), 1.0, 1e-4);
    // Every kept token outweighs every dropped one, and dropping the lightest kept token would
    // fall short of top_p (the nucleus is minimal). The support's order is not specified.
    std::vector<bool> kept(kCols, false);
    double kept_mass = 0, lightest = 1;
    for (int64_t j = 0; j < nucleus.size(); ++j) {
      kept[nucleus.ids[j]] = true;
      kept_mass += dense.probs[nucleus.ids[j]];
      lightest = std::min<double>(lightest, dense.probs[nucleus.ids[j]]);
    }
    for (int64_t c = 0; c < kCols; ++c) {
      if (!kept[c]) ASSERT_LE(dense.probs[c], lightest * (1 + 1e-5)) << "column " << c;
    }
    ASSERT_GE(kept_mass, 0.9 - 1e-4);
    ASSERT_LT(kept_mass - lightest, 0.9 + 1e-4);
    TokenDistribution topk = ToDistribution(logits.data(), kCols, nullptr, Params(0.8f, 50, 0.95f));
    ASSERT_LE(topk.size(), 50);
    ASSERT_EQ(topk.ids[0], ArgmaxToken(logits.data(), kCols, nullptr));
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
      kIters;
  // A loose bound (3 distributions per iteration) that still catches an accidental O(n^2).
  EXPECT_LT(ms, 200.0);
  std::printf("3 distributions over %lld columns: %.2f ms\n", static_cast<long long>(kCols), ms);
}

// The nucleus against a full sort in double, on rows from peaked to flat and on both paths
// (a few hundred candidates or thousands): the same tokens, unless the sort's own sums put the
// boundary within rounding of top_p.
TEST(ToDistributionTest, NucleusIsTheFullSortsPrefix) {
  constexpr int64_t kCols = 50304;
  std::mt19937 rng(3);
  std::vector<float> logits(kCols);
  int compared = 0;
  for (float spread : {0.5f, 1.5f, 3.0f, 6.0f}) {
    std::normal_distribution<float> normal(0.0f, spread);
    for (float& l : logits) l = normal(rng);
    for (float top_p : {0.5f, 0.9f, 0.95f, 0.99f, 0.999f}) {
      const TokenDistribution got = ToDistribution(logits.data(), kCols, nullptr, Params(0.8f, 0, top_p));
      std::vector<double> w(kCols);
      double z = 0;
      for (int64_t i = 0; i < kCols; ++i) z += w[i] = std::exp((logits[i] - logits[0]) / 0.8);
      std::vector<int32_t> order(kCols);
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return w[a] > w[b]; });
      std::set<int32_t> want;
      double mass = 0;
      bool too_close = false;  // float weights could end the nucleus a token apart
      for (int32_t id : order) {
        if (mass >= top_p * z) break;
        mass += w[id];
        want.insert(id);
        too_close |= std::abs(mass - top_p * z) < 1e-6 * z;
      }
      if (too_close) continue;
      ++compared;
      EXPECT_EQ(std::set<int32_t>(got.ids.begin(), got.ids.end()), want)
          << "spread " << spread << " top_p " << top_p << ": " << got.size() << " tokens against "
          << want.size();
    }
  }
  EXPECT_GE(compared, 12);
}

TEST(ToDistributionTest, NucleusMassIsMinimal) {
  constexpr int64_t kCols = 5000;
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(kCols);
  for (float& l : logits) l = normal(rng);
  TokenDistribution full = ToDistribution(logits.data(), kCols, nullptr, Params(1.0f));
  TokenDistribution nucleus = ToDistribution(logits.data(), kCols, nullptr, Params(1.0f, 0, 0.8f));
  double kept = 0.0;
  for (int64_t i = 0; i < nucleus.size(); ++i) kept += full.ProbOf(nucleus.ids[i]);
  EXPECT_GE(kept, 0.8 - 1e-5);
  EXPECT_LT(kept - full.ProbOf(nucleus.ids.back()), 0.8 + 1e-5);
}

TEST(SampleTokenTest, InverseCdf) {
  TokenDistribution dist{{}, {0.25f, 0.0f, 0.5f, 0.25f}};
  EXPECT_EQ(SampleToken(dist, 0.0), 0);
  EXPECT_EQ(SampleToken(dist, 0.2499), 0);
  EXPECT_EQ(SampleToken(dist, 0.25), 2);
  EXPECT_EQ(SampleToken(dist, 0.7499), 2);
  EXPECT_EQ(SampleToken(dist, 0.75), 3);
  EXPECT_EQ(SampleToken(TokenDistribution{{5, 9}, {0.5f, 0.5f}}, 0.9), 9);
}

TEST(SampleTokenTest, NeverReturnsAZeroProbabilityToken) {
  // Probabilities that sum to a little under 1 in float, with zero-mass tokens at the end.
  TokenDistribution dist{{}, {0.3333333f, 0.3333333f, 0.3333333f, 0.0f, 0.0f}};
  const double almost_one = std::nextafter(1.0, 0.0);
  EXPECT_EQ(SampleToken(dist, almost_one), 2);
  TokenDistribution leading_zero{{}, {0.0f, 1.0f}};
  EXPECT_EQ(SampleToken(leading_zero, 0.0), 1);
  EXPECT_EQ(SampleToken(TokenDistribution{}, 0.5), -1);
}

TEST(SampleTokenTest, FrequenciesMatchProbabilities) {
  TokenDistribution dist{{}, {0.1f, 0.6f, 0.3f}};
  std::vector<int> counts(3, 0);
  constexpr int kDraws = 30000;
  for (int i = 0; i < kDraws; ++i)
    ++counts[SampleToken(dist, UniformAt(5, i, RandomPurpose::kTarget))];
  double chi2 = 0.0;
  for (int t = 0; t < 3; ++t) {
    const double e = kDraws * dist.probs[t];
    chi2 += (counts[t] - e) * (counts[t] - e) / e;
  }
  EXPECT_LT(chi2, 18.4);  // 2 dof, false alarm 1e-4
}

TEST(ToDistributionTest, ScratchKeptPerThreadDoesNotLeakBetweenRows) {
  // One thread turns rows of other widths and parameters into distributions in turn (a draft's
  // 2,048-column head, the target's 50,304, a tiny one); each result must equal what a fresh
  // thread computes for the same row alone.
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 2.5f);
  struct Case {
    std::vector<float> row;
    SamplingParams params;
    int32_t max_support;
  };
  std::vector<Case> cases;
  for (int64_t cols : {50304, 2048, 300, 50304, 7}) {
    for (const SamplingParams& params :
         {Params(0.8f, 0, 0.95f), Params(1.0f, 40), Params(0.7f), Params(1.2f, 0, 0.5f)}) {
      std::vector<float> row(static_cast<size_t>(cols));
      for (float& l : row) l = normal(rng);
      cases.push_back({row, params, cols == 2048 ? 64 : 0});
    }
  }
  std::vector<TokenDistribution> in_turn;
  for (const Case& c : cases) {
    in_turn.push_back(ToDistribution(c.row.data(), static_cast<int64_t>(c.row.size()), nullptr,
                                     c.params, c.max_support));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    TokenDistribution alone;
    std::thread([&] {
      alone = ToDistribution(cases[i].row.data(), static_cast<int64_t>(cases[i].row.size()),
                             nullptr, cases[i].params, cases[i].max_support);
    }).join();
    EXPECT_EQ(in_turn[i].ids, alone.ids) << "case " << i;
    EXPECT_EQ(in_turn[i].probs, alone.probs) << "case " << i;
    EXPECT_NEAR(Sum(alone), 1.0, 1e-4) << "case " << i;
  }
}

TEST(RaceTokenTest, FrequenciesMatchProbabilities) {
  TokenDistribution dist{{}, {0.1f, 0.6f, 0.0f, 0.3f}};
  std::vector<int> counts(4, 0);
  constexpr int kDraws = 30000;
  for (int i = 0; i < kDraws; ++i) ++counts[RaceToken(dist, 5, i)];
  EXPECT_EQ(counts[2], 0);  // zero mass never wins
  double chi2 = 0.0;
  for (int t : {0, 1, 3}) {
    const double e = kDraws * dist.probs[t];
    chi2 += (counts[t] - e) * (counts[t] - e) / e;
  }
  EXPECT_LT(chi2, 18.4);  // 2 dof, false alarm 1e-4
}

TEST(RaceTokenTest, IndependentOfTheSupportsOrderAndLayout) {
  // The same distribution dense, sparse, and sparse in another order: the same token at every
  // position (the draft's sparse q and the target's dense p rely on this).
  const TokenDistribution dense{{}, {0.05f, 0.0f, 0.4f, 0.15f, 0.4f}};
  const TokenDistribution sparse{{4, 0, 3, 2}, {0.4f, 0.05f, 0.15f, 0.4f}};
  std::set<int32_t> seen;
  for (int64_t pos = 0; pos < 2000; ++pos) {
    const int32_t token = RaceToken(dense, 77, pos);
    ASSERT_EQ(RaceToken(sparse, 77, pos), token) << "position " << pos;
    seen.insert(token);
  }
  EXPECT_EQ(seen, (std::set<int32_t>{0, 2, 3, 4}));
  EXPECT_EQ(RaceToken(TokenDistribution{}, 1, 0), -1);
}

TEST(RaceTokenTest, NearbyDistributionsMostlyAgree) {
  // What makes shared noise worth having: p and a perturbed q drawn at the same position pick
  // the same token far more often than independent draws would (sum p*q ~ 0.26 here).
  const TokenDistribution p{{}, {0.3f, 0.25f, 0.2f, 0.15f, 0.1f}};
  const TokenDistribution q{{}, {0.25f, 0.3f, 0.2f, 0.1f, 0.15f}};
  int same = 0;
  constexpr int kDraws = 20000;
  for (int64_t pos = 0; pos < kDraws; ++pos) same += RaceToken(p, 3, pos) == RaceToken(q, 3, pos);
  // Total variation 0.1: an optimal coupling agrees 90% of the time; the race at least
  // (1 - tv) / (1 + tv) = 82%.
  EXPECT_GT(same, kDraws * 0.8);
  EXPECT_EQ(RaceToken(p, 3, 11), RaceToken(p, 3, 11));
}

TEST(DrawTokenTest, CouplingChoosesTheDraw) {
  const TokenDistribution dist{{}, {0.2f, 0.5f, 0.3f}};
  SamplingParams params = Params(1.0f, 0, 1.0f, 9);
  int differ = 0;
  for (int64_t pos = 0; pos < 200; ++pos) {
    // Rejection: inverse CDF on the purpose's stream; shared noise: the race, whatever purpose.
    params.coupling = Coupling::kRejection;
    const int32_t cdf = DrawToken(dist, params, pos, RandomPurpose::kDraft);
    ASSERT_EQ(cdf, SampleToken(dist, UniformAt(9, pos, RandomPurpose::kDraft)));
    params.coupling = Coupling::kSharedNoise;
    ASSERT_EQ(DrawToken(dist, params, pos, RandomPurpose::kDraft), RaceToken(dist, 9, pos));
    ASSERT_EQ(DrawToken(dist, params, pos, RandomPurpose::kTarget), RaceToken(dist, 9, pos));
    differ += cdf != RaceToken(dist, 9, pos);
  }
  EXPECT_GT(differ, 20);
  EXPECT_TRUE(Params(0.0f).greedy() && !Params(0.0f).shared_noise());
  EXPECT_TRUE(params.shared_noise());
}

TEST(CouplingTest, NamesRoundTripAndBadNamesSayWhatIsAccepted) {
  for (Coupling c : {Coupling::kRejection, Coupling::kSharedNoise}) {
    EXPECT_EQ(*ParseCoupling(CouplingName(c)), c);
  }
  const absl::StatusOr<Coupling> bad = ParseCoupling("gumbel");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("rejection or shared_noise"), std::string::npos);
}

TEST(PickTokenTest, GreedyAndSeededSampling) {
  const std::vector<float> logits = {0.0f, 0.1f, 0.2f};
  EXPECT_EQ(PickToken(logits.data(), 3, nullptr, Params(0.0f), 0, RandomPurpose::kTarget), 2);
  const SamplingParams params = Params(1.0f, 0, 1.0f, 1234);
  std::set<int32_t> seen;
  for (int64_t pos = 0; pos < 200; ++pos) {
    const int32_t a = PickToken(logits.data(), 3, nullptr, params, pos, RandomPurpose::kTarget);
    const int32_t b = PickToken(logits.data(), 3, nullptr, params, pos, RandomPurpose::kTarget);
    EXPECT_EQ(a, b);
    seen.insert(a);
  }
  EXPECT_EQ(seen.size(), 3u);
}

}  // namespace
}  // namespace specdec
