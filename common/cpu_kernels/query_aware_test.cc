// Query-aware attention (query_aware.h) against a double-precision reference of its definition:
// per query and head, the top `keep` pages below the position by the Quest bound (ties: the
// lower page), plus the partial page; it reads no row of a page it did not choose.
#include "common/cpu_kernels/query_aware.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "common/cpu_kernels/ops.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

constexpr int64_t kHeadDim = 16, kBlock = 4;

// One sequence's cache: rows [slots][heads * head_dim] (head stride = head_dim), its queries and
// the per-head page summaries.
struct Case {
  int64_t heads, slots;
  std::vector<float> keys, values, q;
  std::vector<std::vector<float>> summaries;  // [head] -> [pages][2 * head_dim]

  Case(int64_t heads_, int64_t slots_, int64_t n, unsigned seed) : heads(heads_), slots(slots_) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    keys.resize(slots * heads * kHeadDim);
    values.resize(keys.size());
    q.resize(n * heads * kHeadDim);
    for (float& x : keys) x = normal(rng);
    for (float& x : values) x = normal(rng);
    for (float& x : q) x = 2.0f * normal(rng);
    summaries.resize(heads);
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t page = 0; page < slots / kBlock; ++page) {
        std::vector<float> lo(kHeadDim, std::numeric_limits<float>::infinity());
        std::vector<float> hi(kHeadDim, -std::numeric_limits<float>::infinity());
        for (int64_t s = page * kBlock; s < (page + 1) * kBlock; ++s) {
          for (int64_t d = 0; d < kHeadDim; ++d) {
            lo[d] = std::min(lo[d], Key(s, h)[d]);
            hi[d] = std::max(hi[d], Key(s, h)[d]);
          }
        }
        summaries[h].insert(summaries[h].end(), lo.begin(), lo.end());
        summaries[h].insert(summaries[h].end(), hi.begin(), hi.end());
      }
    }
  }
  const float* Key(int64_t s, int64_t h) const { return keys.data() + (s * heads + h) * kHeadDim; }
  const float* Value(int64_t s, int64_t h) const { return values.data() + (s * heads + h) * kHeadDim; }
  const float* Query(int64_t i, int64_t h) const { return q.data() + (i * heads + h) * kHeadDim; }
};

// The slots a query at `position` attends to under the definition, computed in double.
std::vector<int64_t> ReferenceSlots(const Case& c, const float* q, int64_t h, int64_t position, int64_t keep) {
  const int64_t eligible = position / kBlock;
  std::vector<int64_t> pages(eligible);
  for (int64_t j = 0; j < eligible; ++j) pages[j] = j;
  if (eligible > keep) {
    std::vector<double> bound(eligible, 0.0);
    for (int64_t j = 0; j < eligible; ++j) {
      const float* lo = c.summaries[h].data() + j * 2 * kHeadDim;
      for (int64_t d = 0; d < kHeadDim; ++d) {
        bound[j] += std::max(double{q[d]} * lo[d], double{q[d]} * lo[kHeadDim + d]);
      }
    }
    std::stable_sort(pages.begin(), pages.end(), [&](int64_t a, int64_t b) { return bound[a] > bound[b]; });
    pages.resize(keep);
    std::sort(pages.begin(), pages.end());
  }
  std::vector<int64_t> slots;
  for (int64_t j : pages) {
    for (int64_t s = j * kBlock; s < (j + 1) * kBlock; ++s) slots.push_back(s);
  }
  for (int64_t s = eligible * kBlock; s <= position; ++s) slots.push_back(s);
  return slots;
}

std::vector<double> ReferenceAttention(const Case& c, const float* q, int64_t h, const std::vector<int64_t>& slots) {
  std::vector<double> logit(slots.size()), out(kHeadDim, 0.0);
  double top = -std::numeric_limits<double>::infinity(), z = 0;
  for (size_t t = 0; t < slots.size(); ++t) {
    double dot = 0;
    for (int64_t d = 0; d < kHeadDim; ++d) dot += double{q[d]} * c.Key(slots[t], h)[d];
    logit[t] = dot / std::sqrt(double{kHeadDim});
    top = std::max(top, logit[t]);
  }
  for (double& l : logit) z += (l = std::exp(l - top));
  for (size_t t = 0; t < slots.size(); ++t) {
    for (int64_t d = 0; d < kHeadDim; ++d) out[d] += logit[t] / z * c.Value(slots[t], h)[d];
  }
  return out;
}

TEST(QueryAwareTest, SelectPagesBreaksTiesByTheLowerPage) {
  std::vector<int32_t> order, chosen;
  const std::vector<float> equal(10, 1.0f);
  EXPECT_EQ(SelectPages(equal.data(), 40, 4, 3, &order, &chosen), 10);
  EXPECT_EQ(chosen, (std::vector<int32_t>{0, 1, 2}));
  const std::vector<float> bounds = {0, 5, 1, 5, 9, 1, 5};
  EXPECT_EQ(SelectPages(bounds.data(), 29, 4, 3, &order, &chosen), 7);  // pages 0-6 lie below 29
  EXPECT_EQ(chosen, (std::vector<int32_t>{1, 3, 4}));
  // Position 27: pages 0-5 (the page of 24-27 is not whole below 27); no more than `keep`: all.
  EXPECT_EQ(SelectPages(bounds.data(), 27, 4, 6, &order, &chosen), 6);
  EXPECT_EQ(chosen, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
}

// Prefill, decode and speculative chunks, starting anywhere in a page, with fewer and more
// eligible pages than `keep`: every output matches the reference, and the bytes read are those
// of the rows the definition names plus the summaries scored.
TEST(QueryAwareTest, MatchesTheDefinition) {
  const int64_t heads = 3;
  struct Chunk { int64_t first, n, keep; };
  for (const Chunk& chunk : {Chunk{0, 23, 2}, Chunk{30, 1, 3}, Chunk{31, 1, 3}, Chunk{32, 1, 3},
                             Chunk{45, 9, 4}, Chunk{13, 5, 100}, Chunk{50, 1, 1}}) {
    SCOPED_TRACE(testing::Message() << "first " << chunk.first << " n " << chunk.n << " keep " << chunk.keep);
    const int64_t slots = chunk.first + chunk.n;
    Case c(heads, slots, chunk.n, static_cast<unsigned>(slots));
    std::vector<const float*> key_rows(slots), value_rows(slots), summaries(heads);
    for (int64_t s = 0; s < slots; ++s) key_rows[s] = c.Key(s, 0), value_rows[s] = c.Value(s, 0);
    for (int64_t h = 0; h < heads; ++h) summaries[h] = c.summaries[h].data();
    std::vector<float> out(chunk.n * heads * kHeadDim);
    QueryAwareScratch scratch;
    int64_t bytes = 0;
    QueryAwareAttention(c.q.data(), heads * kHeadDim, kHeadDim, chunk.n, chunk.first, key_rows.data(),
                        value_rows.data(), kHeadDim, summaries.data(), kBlock, chunk.keep, heads, kHeadDim,
                        out.data(), heads * kHeadDim, &scratch, &bytes);
    int64_t expected_bytes = 0;
    for (int64_t i = 0; i < chunk.n; ++i) {
      const int64_t position = chunk.first + i;
      for (int64_t h = 0; h < heads; ++h) {
        const std::vector<int64_t> slots_read = ReferenceSlots(c, c.Query(i, h), h, position, chunk.keep);
        const std::vector<double> want = ReferenceAttention(c, c.Query(i, h), h, slots_read);
        for (int64_t d = 0; d < kHeadDim; ++d) {
          ASSERT_NEAR(out[(i * heads + h) * kHeadDim + d], want[d], 1e-5) << "row " << i << " head " << h;
        }
        const int64_t eligible = position / kBlock;
        expected_bytes += 4 * (2 * kHeadDim * static_cast<int64_t>(slots_read.size()) +
                               (eligible > chunk.keep ? 2 * kHeadDim * eligible : 0));
      }
    }
    EXPECT_EQ(bytes, expected_bytes);
  }
}

// A decode step dereferences no row of a page it did not choose: those rows are NaN here, and
// the output is still the reference's.
TEST(QueryAwareTest, ReadsNoRowOfAnUnchosenPage) {
  const int64_t slots = 62, position = 61, keep = 3;
  Case c(1, slots, 1, 7);
  const std::vector<int64_t> chosen = ReferenceSlots(c, c.Query(0, 0), 0, position, keep);
  ASSERT_EQ(chosen.size(), static_cast<size_t>(keep * kBlock + position % kBlock + 1));
  const std::vector<float> poison(kHeadDim, std::numeric_limits<float>::quiet_NaN());
  std::vector<const float*> key_rows(slots, poison.data()), value_rows(slots, poison.data());
  for (int64_t s : chosen) key_rows[s] = c.Key(s, 0), value_rows[s] = c.Value(s, 0);
  const float* summaries[] = {c.summaries[0].data()};
  std::vector<float> out(kHeadDim);
  QueryAwareScratch scratch;
  QueryAwareAttention(c.q.data(), kHeadDim, kHeadDim, 1, position, key_rows.data(), value_rows.data(),
                      kHeadDim, summaries, kBlock, keep, 1, kHeadDim, out.data(), kHeadDim, &scratch, nullptr);
  const std::vector<double> want = ReferenceAttention(c, c.Query(0, 0), 0, chosen);
  for (int64_t d = 0; d < kHeadDim; ++d) EXPECT_NEAR(out[d], want[d], 1e-5);
}

// With no more eligible pages than `keep`, a query reads every row up to its position exactly as
// the full cache's kernel does: the same floats bit for bit.
TEST(QueryAwareTest, FewPagesIsCausalAttentionBitForBit) {
  const int64_t heads = 2, n = 5, first = 11;
  Case c(heads, first + n, n, 3);
  std::vector<const float*> key_rows, value_rows, summaries = {c.summaries[0].data(), c.summaries[1].data()};
  for (int64_t s = 0; s < first + n; ++s) key_rows.push_back(c.Key(s, 0)), value_rows.push_back(c.Value(s, 0));
  std::vector<float> a(n * heads * kHeadDim), b(a.size()), scratch_rows(first + n);
  QueryAwareScratch scratch;
  QueryAwareAttention(c.q.data(), heads * kHeadDim, kHeadDim, n, first, key_rows.data(), value_rows.data(),
                      kHeadDim, summaries.data(), kBlock, 4, heads, kHeadDim, a.data(), heads * kHeadDim,
                      &scratch, nullptr);
  CausalAttention(c.q.data(), heads * kHeadDim, kHeadDim, key_rows.data(), value_rows.data(), kHeadDim, n,
                  first, heads, kHeadDim, b.data(), heads * kHeadDim, scratch_rows.data(), nullptr);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace specdec
