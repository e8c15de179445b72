// The libtorch path's attention maths (see attention.h).
#include "common/attention/attention.h"

#include <cmath>
#include <limits>

namespace specdec {
namespace {

// [x1, x2] -> [-x2, x1] on the last dimension.
torch::Tensor RotateHalf(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

}  // namespace

torch::Tensor ApplyRotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                          int64_t rot) {
  if (rot == 0) return x;
  torch::Tensor x_rot = x.slice(-1, 0, rot);
  torch::Tensor rotated = x_rot * cos + RotateHalf(x_rot) * sin;
  if (rot == x.size(-1)) return rotated;
  return torch::cat({rotated, x.slice(-1, rot)}, -1);
}

torch::Tensor CausalMask(int64_t n, int64_t total, const torch::Device& device) {
  return torch::ones({n, total}, torch::TensorOptions().dtype(torch::kBool).device(device))
      .triu(total - n + 1);
}

torch::Tensor AttentionScores(const torch::Tensor& q, const torch::Tensor& keys) {
  return torch::matmul(q, keys.transpose(1, 2)) * (1.0 / std::sqrt(static_cast<double>(q.size(-1))));
}

torch::Tensor CausalProbs(const torch::Tensor& scores) {
  const int64_t n = scores.size(-2), total = scores.size(-1);
  if (n == 1) return torch::softmax(scores, -1, torch::kFloat);  // one query sees every key
  return torch::softmax(
      scores.masked_fill(CausalMask(n, total, scores.device()), -std::numeric_limits<float>::infinity()),
      -1, torch::kFloat);
}

torch::Tensor AttendValues(const torch::Tensor& probs, const torch::Tensor& values) {
  return torch::matmul(probs.to(values.scalar_type()), values);
}

}  // namespace specdec
