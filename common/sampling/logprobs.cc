// Log-softmax lookups on a logits row (see logprobs.h).
#include "common/sampling/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace specdec {

double LogSumExp(const float* row, int64_t cols) {
  if (cols <= 0) return -std::numeric_limits<double>::infinity();
  const float max = *std::max_element(row, row + cols);
  if (!std::isfinite(max)) return max;
  double sum = 0;
  for (int64_t i = 0; i < cols; ++i) sum += std::exp(static_cast<double>(row[i]) - max);
  return max + std::log(sum);
}

RowLogprobs::RowLogprobs(const float* row, int64_t cols, const int32_t* vocab_ids)
    : row_(row), cols_(cols), vocab_ids_(vocab_ids), log_normalizer_(LogSumExp(row, cols)) {}

float RowLogprobs::Of(int32_t token) const {
  int64_t col = -1;
  if (vocab_ids_ == nullptr) {
    if (token >= 0 && token < cols_) col = token;
  } else {
    for (int64_t c = 0; c < cols_; ++c) {
      if (vocab_ids_[c] == token) {
        col = c;
        break;
      }
    }
  }
  if (col < 0) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(static_cast<double>(row_[col]) - log_normalizer_);
}

std::vector<TopLogprob> RowLogprobs::Top(int n) const {
  const int64_t k = std::min<int64_t>(std::max(n, 0), cols_);
  auto id = [this](int64_t col) {
    return vocab_ids_ != nullptr ? vocab_ids_[col] : static_cast<int32_t>(col);
  };
  // A running top-k: one pass over ~50k logits, k <= 20 kept sorted (no index array).
  std::vector<int64_t> best;
  best.reserve(static_cast<size_t>(k) + 1);
  auto better = [&](int64_t a, int64_t b) {
    return row_[a] > row_[b] || (row_[a] == row_[b] && id(a) < id(b));
  };
  for (int64_t c = 0; c < cols_ && k > 0; ++c) {
    if (static_cast<int64_t>(best.size()) == k && !better(c, best.back())) continue;
    best.insert(std::upper_bound(best.begin(), best.end(), c, better), c);
    if (static_cast<int64_t>(best.size()) > k) best.pop_back();
  }
  std::vector<TopLogprob> out;
  out.reserve(best.size());
  for (int64_t col : best) {
    out.push_back({id(col), static_cast<float>(static_cast<double>(row_[col]) - log_normalizer_)});
  }
  return out;
}

}  // namespace specdec
