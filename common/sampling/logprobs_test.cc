// Tests for the log-softmax lookups behind OpenAI-style logprobs.
#include "common/sampling/logprobs.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace specdec {
namespace {

TEST(RowLogprobsTest, LogprobsAreTheLogSoftmax) {
  const std::vector<float> row = {std::log(0.5f), std::log(0.25f), std::log(0.125f),
                                  std::log(0.125f)};
  RowLogprobs logprobs(row.data(), 4, nullptr);
  EXPECT_NEAR(logprobs.log_normalizer(), 0.0, 1e-6);
  EXPECT_NEAR(logprobs.Of(0), std::log(0.5), 1e-6);
  EXPECT_NEAR(logprobs.Of(3), std::log(0.125), 1e-6);
  EXPECT_TRUE(std::isinf(logprobs.Of(4)));
  EXPECT_TRUE(std::isinf(logprobs.Of(-1)));
}

TEST(RowLogprobsTest, ShiftedLogitsGiveTheSameLogprobs) {
  const std::vector<float> row = {1000.0f, 999.0f, 998.0f};
  RowLogprobs logprobs(row.data(), 3, nullptr);
  const double z = std::log(1 + std::exp(-1.0) + std::exp(-2.0));
  EXPECT_NEAR(logprobs.Of(0), -z, 1e-5);
  EXPECT_NEAR(logprobs.Of(2), -2 - z, 1e-5);
}

TEST(RowLogprobsTest, TopIsSortedWithTiesBySmallerId) {
  const std::vector<float> row = {0.0f, 3.0f, 1.0f, 3.0f, 2.0f};
  RowLogprobs logprobs(row.data(), 5, nullptr);
  const std::vector<TopLogprob> top = logprobs.Top(3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].token, 1);
  EXPECT_EQ(top[1].token, 3);
  EXPECT_EQ(top[2].token, 4);
  EXPECT_FLOAT_EQ(top[0].logprob, logprobs.Of(1));
  EXPECT_FLOAT_EQ(top[2].logprob, logprobs.Of(4));
  EXPECT_TRUE(logprobs.Top(0).empty());
  EXPECT_EQ(logprobs.Top(10).size(), 5u);
}

TEST(RowLogprobsTest, VocabularySubsetMapsColumnsToIds) {
  const std::vector<float> row = {0.0f, 1.0f};
  const std::vector<int32_t> ids = {7, 42};
  RowLogprobs logprobs(row.data(), 2, ids.data());
  EXPECT_NEAR(logprobs.Of(42), 1.0 - std::log(1 + std::exp(1.0)), 1e-6);
  EXPECT_TRUE(std::isinf(logprobs.Of(0)));
  EXPECT_EQ(logprobs.Top(1)[0].token, 42);
}

}  // namespace
}  // namespace specdec
