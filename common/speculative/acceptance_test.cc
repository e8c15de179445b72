// Tests for the acceptance rule: the deterministic cases (greedy, p == q, disjoint supports,
// q(x) = 0, K = 0), the residual distribution, and a statistical losslessness test that runs
// the full draft -> verify -> accept procedure on a tiny synthetic bigram "model".
#include "common/speculative/acceptance.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <ostream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

using ::testing::ElementsAre;

SamplingParams Params(float temperature, uint64_t seed = 0, int32_t top_k = 0, float top_p = 1.0f) {
  SamplingParams params;
  params.temperature = temperature;
  params.seed = seed;
  params.top_k = top_k;
  params.top_p = top_p;
  return params;
}

// ---------------------------------------------------------------------------------------------
// VerifyAndAccept (in-process rounds) decides exactly what the split protocol decides.

TEST(VerifyAndAcceptTest, EqualsVerifyProposalsThenAcceptProposals) {
  constexpr int64_t kCols = 300;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  int rejections = 0, full_accepts = 0;
  for (int trial = 0; trial < 600; ++trial) {
    const int k = trial % 7;
    SamplingParams params = trial % 5 == 0 ? Params(0.0f) : Params(0.8f, trial, 0, 0.95f);
    if (trial % 5 == 1) params.coupling = Coupling::kSharedNoise;
    // Target rows, and draft rows close to them (so that some proposals are accepted).
    std::vector<float> target((k + 1) * kCols), draft(kCols);
    for (float& l : target) l = normal(rng);
    std::vector<DraftProposal> proposals;
    std::vector<TokenDistribution> dists;
    std::vector<int32_t> tokens;
    for (int i = 0; i < k; ++i) {
      for (int64_t c = 0; c < kCols; ++c) draft[c] = target[i * kCols + c] + 0.3f * normal(rng);
      TokenDistribution q = ToDistribution(draft.data(), kCols, nullptr, params, 64);
      proposals.push_back(DrawDraftToken(q, params, 100 + i));
      tokens.push_back(proposals.back().token);
      dists.push_back(std::move(q));
    }
    const RoundOutcome split = AcceptProposals(
        params, 100, proposals,
        VerifyProposals(target.data(), kCols, nullptr, params, 100, tokens, dists));
    const RoundOutcome joint = VerifyAndAccept(target.data(), kCols, nullptr, params, 100, proposals, dists);
    ASSERT_EQ(joint.num_accepted, split.num_accepted) << "trial " << trial;
    ASSERT_EQ(joint.next_token, split.next_token) << "trial " << trial;
    rejections += split.num_accepted < k;
    full_accepts += split.num_accepted == k && k > 0;
  }
  // Both branches were exercised.
  EXPECT_GT(rejections, 50);
  EXPECT_GT(full_accepts, 20);
}

// ---------------------------------------------------------------------------------------------
// Deterministic cases.

TEST(AcceptProposalsTest, GreedyAcceptsWhileDraftMatchesArgmax) {
  const std::vector<DraftProposal> proposals = {{4, 1.0f}, {5, 1.0f}, {6, 1.0f}};
  // Argmaxes 4, 5, 9: the third draft token is wrong, so emit 9 after two accepted.
  const std::vector<VerifiedPosition> verified = {{1, 4}, {1, 5}, {0, 9}, {0, 11}};
  RoundOutcome outcome = AcceptProposals(Params(0.0f), 10, proposals, verified);
  EXPECT_EQ(outcome.num_accepted, 2);
  EXPECT_EQ(outcome.next_token, 9);

  // All correct: all accepted plus the bonus argmax.
  const std::vector<VerifiedPosition> all_right = {{1, 4}, {1, 5}, {1, 6}, {0, 11}};
  outcome = AcceptProposals(Params(0.0f), 10, proposals, all_right);
  EXPECT_EQ(outcome.num_accepted, 3);
  EXPECT_EQ(outcome.next_token, 11);

  // First wrong: nothing accepted.
  const std::vector<VerifiedPosition> first_wrong = {{0, 3}, {1, 5}, {1, 6}, {0, 11}};
  outcome = AcceptProposals(Params(0.0f), 10, proposals, first_wrong);
  EXPECT_EQ(outcome.num_accepted, 0);
  EXPECT_EQ(outcome.next_token, 3);
}

TEST(AcceptProposalsTest, EqualTargetAndDraftProbabilitiesAlwaysAccept) {
  const std::vector<DraftProposal> proposals = {{1, 0.3f}, {2, 0.01f}, {3, 0.9f}};
  const std::vector<VerifiedPosition> verified = {{0.3f, 7}, {0.01f, 7}, {0.9f, 7}, {0.0f, 8}};
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    const RoundOutcome outcome = AcceptProposals(Params(1.0f, seed), 5, proposals, verified);
    ASSERT_EQ(outcome.num_accepted, 3) << "seed " << seed;
    ASSERT_EQ(outcome.next_token, 8);
  }
}

TEST(AcceptProposalsTest, TokensTheTargetCannotProduceAreAlwaysRejected) {
  const std::vector<DraftProposal> proposals = {{1, 0.9f}, {2, 0.5f}};
  const std::vector<VerifiedPosition> verified = {{0.0f, 7}, {0.5f, 7}, {0.0f, 8}};
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    const RoundOutcome outcome = AcceptProposals(Params(1.0f, seed), 5, proposals, verified);
    ASSERT_EQ(outcome.num_accepted, 0);
    ASSERT_EQ(outcome.next_token, 7);
  }
}

TEST(AcceptProposalsTest, AZeroDraftProbabilityIsRejected) {
  // The draft claims it could not have drawn this token: reject even though p(x) = 1.
  const std::vector<DraftProposal> proposals = {{1, 0.0f}};
  const std::vector<VerifiedPosition> verified = {{1.0f, 1}, {0.0f, 8}};
  for (uint64_t seed = 0; seed < 200; ++seed) {
    const RoundOutcome outcome = AcceptProposals(Params(1.0f, seed), 0, proposals, verified);
    ASSERT_EQ(outcome.num_accepted, 0);
    ASSERT_EQ(outcome.next_token, 1);
  }
  const std::vector<DraftProposal> nan_q = {{1, NAN}};
  EXPECT_EQ(AcceptProposals(Params(1.0f), 0, nan_q, verified).num_accepted, 0);
}

TEST(AcceptProposalsTest, AcceptanceFollowsTheRatio) {
  // p/q = 0.25: accepted for about a quarter of the seeds, and exactly when u < 0.25.
  const std::vector<DraftProposal> proposals = {{1, 0.8f}};
  const std::vector<VerifiedPosition> verified = {{0.2f, 3}, {0.0f, 8}};
  int accepted = 0;
  constexpr int kSeeds = 20000;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    const RoundOutcome outcome = AcceptProposals(Params(1.0f, seed), 42, proposals, verified);
    const bool expect = UniformAt(seed, 42, RandomPurpose::kAccept) * 0.8 < 0.2f;
    ASSERT_EQ(outcome.num_accepted == 1, expect);
    accepted += outcome.num_accepted;
  }
  EXPECT_NEAR(static_cast<double>(accepted) / kSeeds, 0.25, 0.015);
}

TEST(AcceptProposalsTest, NoDraftTokensGivesTheBonusToken) {
  const std::vector<VerifiedPosition> verified = {{0.0f, 13}};
  for (const SamplingParams& params : {Params(0.0f), Params(1.0f, 3)}) {
    const RoundOutcome outcome = AcceptProposals(params, 0, {}, verified);
    EXPECT_EQ(outcome.num_accepted, 0);
    EXPECT_EQ(outcome.next_token, 13);
  }
  EXPECT_EQ(AcceptProposals(Params(1.0f), 0, {}, {}).next_token, -1);
}

TEST(ValidateRoundTest, RejectsMalformedRounds) {
  const std::vector<DraftProposal> proposals = {{1, 0.5f}};
  EXPECT_TRUE(ValidateRound(proposals, std::vector<VerifiedPosition>{{0.5f, 1}, {0, 2}}).ok());
  EXPECT_FALSE(ValidateRound(proposals, std::vector<VerifiedPosition>{{0.5f, 1}}).ok());
  EXPECT_FALSE(ValidateRound(proposals, std::vector<VerifiedPosition>{{1.5f, 1}, {0, 2}}).ok());
  EXPECT_FALSE(ValidateRound(proposals, std::vector<VerifiedPosition>{{0.5f, -1}, {0, 2}}).ok());
  EXPECT_FALSE(ValidateRound(std::vector<DraftProposal>{{-1, 0.5f}},
                             std::vector<VerifiedPosition>{{0.5f, 1}, {0, 2}})
                   .ok());
  EXPECT_TRUE(ValidateRound({}, std::vector<VerifiedPosition>{{0.0f, 2}}).ok());
}

TEST(ResidualDistributionTest, NormalisedPositivePartOfTheDifference) {
  const TokenDistribution p{{}, {0.5f, 0.3f, 0.2f, 0.0f}};
  const TokenDistribution q{{1, 3}, {0.6f, 0.4f}};  // sparse
  TokenDistribution r = ResidualDistribution(p, q);
  ASSERT_TRUE(r.dense());
  // max(0, p - q) = {0.5, 0, 0.2, 0}, mass 0.7.
  EXPECT_NEAR(r.probs[0], 0.5 / 0.7, 1e-6);
  EXPECT_EQ(r.probs[1], 0.0f);
  EXPECT_NEAR(r.probs[2], 0.2 / 0.7, 1e-6);
  EXPECT_EQ(r.probs[3], 0.0f);

  const TokenDistribution sparse_p{{9, 4}, {0.6f, 0.4f}};
  const TokenDistribution dense_q{{}, {0.0f, 0.0f, 0.0f, 0.0f, 0.5f, 0.0f, 0.0f, 0.0f, 0.0f, 0.5f}};
  r = ResidualDistribution(sparse_p, dense_q);
  EXPECT_THAT(r.ids, ElementsAre(9));
  EXPECT_THAT(r.probs, ElementsAre(1.0f));
}

TEST(ResidualDistributionTest, EqualDistributionsGiveTheTarget) {
  const TokenDistribution p{{}, {0.25f, 0.75f}};
  const TokenDistribution r = ResidualDistribution(p, p);
  EXPECT_THAT(r.probs, ElementsAre(0.25f, 0.75f));
}

TEST(VerifyProposalsTest, GreedyReportsArgmaxes) {
  // [3, 4]: argmaxes 2, 0, 3.
  const std::vector<float> logits = {0, 1, 5, 2, 9, 1, 1, 1, 0, 0, 0, 4};
  const std::vector<int32_t> draft = {2, 1};
  const std::vector<VerifiedPosition> v =
      VerifyProposals(logits.data(), 4, nullptr, Params(0.0f), 7, draft, {});
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].fallback_token, 2);
  EXPECT_EQ(v[0].p_prob_of_draft, 1.0f);
  EXPECT_EQ(v[1].fallback_token, 0);
  EXPECT_EQ(v[1].p_prob_of_draft, 0.0f);
  EXPECT_EQ(v[2].fallback_token, 3);
  const RoundOutcome outcome =
      AcceptProposals(Params(0.0f), 7, std::vector<DraftProposal>{{2, 1.0f}, {1, 1.0f}}, v);
  EXPECT_EQ(outcome.num_accepted, 1);
  EXPECT_EQ(outcome.next_token, 0);
}

TEST(VerifyProposalsTest, WithoutDraftTokensTheBonusIsThePlainDecodingToken) {
  const std::vector<float> logits = {0.1f, 0.7f, -0.3f, 0.2f, 0.0f};
  const std::vector<int32_t> vocab = {10, 11, 12, 13, 14};
  for (uint64_t seed = 0; seed < 300; ++seed) {
    const SamplingParams params = Params(0.8f, seed, 4, 0.9f);
    const std::vector<VerifiedPosition> v =
        VerifyProposals(logits.data(), 5, vocab.data(), params, 21, {}, {});
    ASSERT_EQ(v.size(), 1u);
    ASSERT_EQ(v[0].fallback_token,
              PickToken(logits.data(), 5, vocab.data(), params, 21, RandomPurpose::kTarget));
  }
}

TEST(VerifyProposalsTest, ResidualSamplesAvoidTheDraftWhereItOverweights) {
  // p = {0.5, 0.5}, q = {1, 0}: the residual is all on token 1, and p(x = 0) = 0.5.
  const std::vector<float> logits = {0.0f, 0.0f, 0.0f, 0.0f};
  const TokenDistribution q{{0}, {1.0f}};
  for (uint64_t seed = 0; seed < 100; ++seed) {
    const std::vector<VerifiedPosition> v =
        VerifyProposals(logits.data(), 2, nullptr, Params(1.0f, seed), 0, std::vector<int32_t>{0},
                        std::vector<TokenDistribution>{q});
    ASSERT_EQ(v.size(), 2u);
    EXPECT_FLOAT_EQ(v[0].p_prob_of_draft, 0.5f);
    EXPECT_EQ(v[0].fallback_token, 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Statistical losslessness.
//
// A tiny "model": V = 6 tokens, the target's next-token logits depend on the previous token
// (a bigram table), and the draft has its own, deliberately different table and parameters.
// For each of kSeeds request seeds we generate the first kGenerated tokens with the full
// procedure (the draft samples x_i ~ q_i with UniformAt(seed, pos, kDraft), VerifyProposals,
// AcceptProposals, K varying 1..3 between rounds) and compare the histogram of the 6^3 = 216
// possible sequences with the exact target distribution p(t1|t0) p(t2|t1) p(t3|t2), enumerated.
//
// Test: Pearson chi-square, cells whose expected count is below 5 pooled into one cell,
// df = cells - 1. We fail when the statistic exceeds the upper 1e-4 quantile of chi-square(df)
// (Wilson-Hilferty approximation), i.e. a correct implementation would fail by chance with
// probability ~1e-4 -- and never in practice, because the seeds are fixed, so the test is
// deterministic. The same test must reject deliberately broken rules: their statistic has to
// exceed the threshold (by a wide margin; see the printed values).

constexpr int kVocab = 6;
constexpr int kGenerated = 3;
constexpr int kSeeds = 20000;
constexpr int32_t kStartToken = 0;

struct BigramModel {
  // logits[prev][next]
  std::vector<std::vector<float>> logits;
  const float* Row(int32_t prev) const { return logits[prev].data(); }
};

// Tables drawn from UniformAt rather than <random> so they are identical on every platform.
BigramModel MakeModel(uint64_t table_seed, float scale) {
  BigramModel model;
  model.logits.assign(kVocab, std::vector<float>(kVocab));
  for (int prev = 0; prev < kVocab; ++prev) {
    for (int next = 0; next < kVocab; ++next) {
      const double u = UniformAt(table_seed, prev * kVocab + next, RandomPurpose::kTarget);
      model.logits[prev][next] = static_cast<float>(scale * (u - 0.5));
    }
  }
  return model;
}

enum class Rule {
  kCorrect,        // the library: VerifyProposals + AcceptProposals
  kAcceptOnP,      // broken: accept when u < p(x), ignoring q
  kAlwaysAccept,   // broken: emit the draft tokens unconditionally
  kResampleFromP,  // broken: on rejection draw from p instead of norm(max(0, p - q))
};

struct Setup {
  const char* name;
  SamplingParams target_params;  // seed is overwritten per run
  SamplingParams draft_params;
  int32_t draft_max_support;
};

void PrintTo(const Setup& setup, std::ostream* os) { *os << setup.name; }

// The first kGenerated tokens for one request seed, encoded base kVocab.
int GenerateOnce(const BigramModel& target, const BigramModel& draft, const Setup& setup,
                 uint64_t seed, Rule rule) {
  SamplingParams target_params = setup.target_params;
  SamplingParams draft_params = setup.draft_params;
  target_params.seed = seed;
  draft_params.seed = seed;

  std::vector<int32_t> tokens = {kStartToken};  // the prompt
  int round = 0;
  while (static_cast<int>(tokens.size()) < 1 + kGenerated) {
    const int64_t first_position = static_cast<int64_t>(tokens.size());
    const int k = 1 + static_cast<int>((seed + round++) % 3);

    // Draft: K tokens, each with the q it was drawn from.
    std::vector<int32_t> draft_tokens;
    std::vector<TokenDistribution> draft_dists;
    std::vector<DraftProposal> proposals;
    int32_t prev = tokens.back();
    for (int i = 0; i < k; ++i) {
      TokenDistribution q =
          ToDistribution(draft.Row(prev), kVocab, nullptr, draft_params, setup.draft_max_support);
      const DraftProposal x = DrawDraftToken(q, draft_params, first_position + i);
      EXPECT_EQ(x.token, DrawToken(q, draft_params, first_position + i, RandomPurpose::kDraft));
      proposals.push_back(x);
      draft_tokens.push_back(x.token);
      draft_dists.push_back(std::move(q));
      prev = x.token;
    }

    // Verifier: one "forward pass" over K+1 positions.
    std::vector<float> logits;
    prev = tokens.back();
    for (int i = 0; i <= k; ++i) {
      logits.insert(logits.end(), target.Row(prev), target.Row(prev) + kVocab);
      if (i < k) prev = draft_tokens[i];
    }
    std::vector<VerifiedPosition> verified = VerifyProposals(
        logits.data(), kVocab, nullptr, target_params, first_position, draft_tokens, draft_dists);
    EXPECT_TRUE(ValidateRound(proposals, verified).ok());

    RoundOutcome outcome;
    switch (rule) {
      case Rule::kCorrect:
        outcome = AcceptProposals(target_params, first_position, proposals, verified);
        break;
      case Rule::kAcceptOnP:
      case Rule::kResampleFromP: {
        outcome = RoundOutcome{k, verified[k].fallback_token};
        for (int i = 0; i < k; ++i) {
          const double u = UniformAt(seed, first_position + i, RandomPurpose::kAccept);
          const double p = verified[i].p_prob_of_draft;
          const double q = proposals[i].q_prob;
          const bool accept = rule == Rule::kAcceptOnP ? u < p : (q > 0 && u * q < p);
          if (!accept) {
            int32_t next = verified[i].fallback_token;
            if (rule == Rule::kResampleFromP) {
              next = PickToken(&logits[i * kVocab], kVocab, nullptr, target_params,
                               first_position + i, RandomPurpose::kTarget);
            }
            outcome = RoundOutcome{i, next};
            break;
          }
        }
        break;
      }
      case Rule::kAlwaysAccept:
        outcome = RoundOutcome{k, verified[k].fallback_token};
        break;
    }
    tokens.insert(tokens.end(), draft_tokens.begin(), draft_tokens.begin() + outcome.num_accepted);
    tokens.push_back(outcome.next_token);
  }
  int code = 0;
  for (int i = 1; i <= kGenerated; ++i) code = code * kVocab + tokens[i];
  return code;
}

// Exact target probability of every kGenerated-token continuation of kStartToken.
std::vector<double> ExactTargetDistribution(const BigramModel& target, const SamplingParams& p) {
  std::vector<std::vector<double>> next(kVocab, std::vector<double>(kVocab, 0.0));
  for (int prev = 0; prev < kVocab; ++prev) {
    const TokenDistribution dist = ToDistribution(target.Row(prev), kVocab, nullptr, p);
    for (int64_t i = 0; i < dist.size(); ++i) next[prev][dist.IdAt(i)] = dist.probs[i];
  }
  int cells = 1;
  for (int i = 0; i < kGenerated; ++i) cells *= kVocab;
  std::vector<double> exact(cells, 0.0);
  for (int code = 0; code < cells; ++code) {
    double prob = 1.0;
    int32_t prev = kStartToken;
    int rest = code;
    int divisor = cells / kVocab;
    for (int i = 0; i < kGenerated; ++i, divisor /= kVocab) {
      const int32_t t = rest / divisor;
      rest %= divisor;
      prob *= next[prev][t];
      prev = t;
    }
    exact[code] = prob;
  }
  return exact;
}

struct ChiSquare {
  double statistic;
  int df;
  double threshold;  // upper 1e-4 quantile of chi-square(df)
};

ChiSquare ChiSquareTest(const std::vector<int>& counts, const std::vector<double>& exact,
                        int total) {
  double statistic = 0.0;
  int cells = 0;
  double pooled_expected = 0.0;
  double pooled_observed = 0.0;
  for (size_t c = 0; c < counts.size(); ++c) {
    const double expected = exact[c] * total;
    if (expected < 5.0) {  // includes the impossible continuations (expected 0)
      pooled_expected += expected;
      pooled_observed += counts[c];
      continue;
    }
    statistic += (counts[c] - expected) * (counts[c] - expected) / expected;
    ++cells;
  }
  if (pooled_expected > 0.0) {
    statistic +=
        (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) / pooled_expected;
    ++cells;
  } else if (pooled_observed > 0.0) {
    statistic = INFINITY;  // the procedure produced a continuation the target cannot
  }
  const int df = cells - 1;
  // Wilson-Hilferty: chi2_q(df) ~ df (1 - 2/(9 df) + z_q sqrt(2/(9 df)))^3; z_{1-1e-4} = 3.719.
  const double a = 2.0 / (9.0 * df);
  const double threshold = df * std::pow(1.0 - a + 3.719 * std::sqrt(a), 3);
  return ChiSquare{statistic, df, threshold};
}

ChiSquare RunChiSquare(const Setup& setup, Rule rule) {
  const BigramModel target = MakeModel(/*table_seed=*/1001, /*scale=*/3.0f);
  const BigramModel draft = MakeModel(/*table_seed=*/2002, /*scale=*/3.0f);
  const std::vector<double> exact = ExactTargetDistribution(target, setup.target_params);
  std::vector<int> counts(exact.size(), 0);
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    ++counts[GenerateOnce(target, draft, setup, seed, rule)];
  }
  return ChiSquareTest(counts, exact, kSeeds);
}

const Setup kSetups[] = {
    // Target truncated by top-k (a zero-probability token per row), draft sparse and hotter.
    {"topk_target_sparse_draft", Params(0.9f, 0, 5), Params(1.3f, 0, 4), 0},
    // Nucleus target, dense untruncated draft at another temperature.
    {"topp_target_dense_draft", Params(1.0f, 0, 0, 0.85f), Params(0.7f), 0},
    // Draft sent sparse via max_support, target plain softmax.
    {"plain_target_max_support_draft", Params(1.0f), Params(1.0f), 3},
};

class LosslessnessTest : public ::testing::TestWithParam<Setup> {};

TEST_P(LosslessnessTest, SpeculativeSamplesHaveTheTargetDistribution) {
  const ChiSquare chi = RunChiSquare(GetParam(), Rule::kCorrect);
  std::printf("%s correct: chi2 %.1f, df %d, threshold %.1f\n", GetParam().name, chi.statistic,
              chi.df, chi.threshold);
  EXPECT_LT(chi.statistic, chi.threshold);
}

TEST_P(LosslessnessTest, BrokenRulesFailTheSameTest) {
  const struct {
    Rule rule;
    const char* name;
  } broken[] = {{Rule::kAcceptOnP, "accept on u < p"},
                {Rule::kAlwaysAccept, "always accept the draft"},
                {Rule::kResampleFromP, "resample rejections from p"}};
  for (const auto& b : broken) {
    const ChiSquare chi = RunChiSquare(GetParam(), b.rule);
    std::printf("%s %s: chi2 %.1f, df %d, threshold %.1f\n", GetParam().name, b.name, chi.statistic,
                chi.df, chi.threshold);
    EXPECT_GT(chi.statistic, chi.threshold) << b.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Setups, LosslessnessTest, ::testing::ValuesIn(kSetups),
                         [](const ::testing::TestParamInfo<Setup>& param_info) {
                           return std::string(param_info.param.name);
                         });

TEST(GreedySpeculationTest, MatchesPlainGreedyDecodingWhateverTheDraft) {
  const BigramModel target = MakeModel(1001, 3.0f);
  // Plain greedy decoding with the target alone.
  std::vector<int32_t> plain = {kStartToken};
  for (int i = 0; i < 12; ++i)
    plain.push_back(ArgmaxToken(target.Row(plain.back()), kVocab, nullptr));

  for (uint64_t draft_seed : {2002u, 3003u, 4004u}) {
    const BigramModel draft = MakeModel(draft_seed, 3.0f);
    for (int k = 0; k <= 4; ++k) {
      std::vector<int32_t> tokens = {kStartToken};
      while (tokens.size() < plain.size()) {
        std::vector<int32_t> draft_tokens;
        std::vector<DraftProposal> proposals;
        int32_t prev = tokens.back();
        for (int i = 0; i < k; ++i) {
          prev = ArgmaxToken(draft.Row(prev), kVocab, nullptr);
          draft_tokens.push_back(prev);
          proposals.push_back({prev, 1.0f});
        }
        std::vector<float> logits;
        prev = tokens.back();
        for (int i = 0; i <= k; ++i) {
          logits.insert(logits.end(), target.Row(prev), target.Row(prev) + kVocab);
          if (i < k) prev = draft_tokens[i];
        }
        const int64_t pos = static_cast<int64_t>(tokens.size());
        const auto verified =
            VerifyProposals(logits.data(), kVocab, nullptr, Params(0.0f), pos, draft_tokens, {});
        const RoundOutcome outcome = AcceptProposals(Params(0.0f), pos, proposals, verified);
        tokens.insert(tokens.end(), draft_tokens.begin(),
                      draft_tokens.begin() + outcome.num_accepted);
        tokens.push_back(outcome.next_token);
      }
      tokens.resize(plain.size());
      EXPECT_EQ(tokens, plain) << "draft " << draft_seed << " K " << k;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Shared noise: speculative sampling that is plain sampling, token for token.

Setup SharedNoise(Setup setup) {
  setup.target_params.coupling = Coupling::kSharedNoise;
  setup.draft_params.coupling = Coupling::kSharedNoise;
  return setup;
}

// The first kGenerated tokens plain decoding draws for `seed` (positions 1 .. kGenerated).
int PlainOnce(const BigramModel& target, SamplingParams params, uint64_t seed) {
  params.seed = seed;
  int32_t prev = kStartToken;
  int code = 0;
  for (int i = 1; i <= kGenerated; ++i) {
    prev = PickToken(target.Row(prev), kVocab, nullptr, params, i, RandomPurpose::kTarget);
    code = code * kVocab + prev;
  }
  return code;
}

TEST(SharedNoiseTest, SpeculativeSamplingIsPlainSamplingTokenForToken) {
  const BigramModel target = MakeModel(1001, 3.0f);
  for (const specdec::Setup& base : kSetups) {
    const specdec::Setup setup = SharedNoise(base);
    for (uint64_t draft_seed : {2002u, 3003u}) {
      const BigramModel draft = MakeModel(draft_seed, 3.0f);
      int differ_from_rejection = 0;
      for (uint64_t seed = 0; seed < 2000; ++seed) {
        const int speculative = GenerateOnce(target, draft, setup, seed, Rule::kCorrect);
        ASSERT_EQ(speculative, PlainOnce(target, setup.target_params, seed))
            << setup.name << " draft " << draft_seed << " seed " << seed;
        differ_from_rejection += speculative != GenerateOnce(target, draft, base, seed, Rule::kCorrect);
      }
      // Rejection sampling gives other (equally distributed) tokens: the coupling is in effect.
      EXPECT_GT(differ_from_rejection, 200) << setup.name;
    }
  }
}

TEST(SharedNoiseTest, SpeculativeSamplesHaveTheTargetDistribution) {
  for (const specdec::Setup& base : kSetups) {
    const ChiSquare chi = RunChiSquare(SharedNoise(base), Rule::kCorrect);
    std::printf("%s shared noise: chi2 %.1f, df %d, threshold %.1f\n", base.name, chi.statistic,
                chi.df, chi.threshold);
    EXPECT_LT(chi.statistic, chi.threshold) << base.name;
  }
  // The same test tells a wrong distribution: the draft's tokens emitted unconditionally.
  const ChiSquare broken = RunChiSquare(SharedNoise(kSetups[0]), Rule::kAlwaysAccept);
  EXPECT_GT(broken.statistic, broken.threshold);
}

TEST(SharedNoiseTest, EqualDistributionsAlwaysAgree) {
  SamplingParams params = Params(1.0f, 5);
  params.coupling = Coupling::kSharedNoise;
  const std::vector<float> row = {0.1f, 1.0f, -0.5f, 0.7f, 0.0f, 0.3f};
  const TokenDistribution q = ToDistribution(row.data(), kVocab, nullptr, params);
  for (int64_t pos = 0; pos < 500; ++pos) {
    const DraftProposal x = DrawDraftToken(q, params, pos);
    const auto verified = VerifyProposals(row.data(), kVocab, nullptr, params, pos, {x.token}, {q});
    ASSERT_EQ(verified[0].fallback_token, x.token);
    EXPECT_FLOAT_EQ(verified[0].p_prob_of_draft, q.ProbOf(x.token));
    EXPECT_EQ(AcceptProposals(params, pos, {x}, verified).num_accepted, 1);
  }
}

}  // namespace
}  // namespace specdec
