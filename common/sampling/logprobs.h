// Log-probabilities of tokens under a model: the log-softmax of a logits row at temperature 1,
// untouched by the sampling parameters. This is what OpenAI's `logprobs` report (how likely the
// model finds a token, not how likely the sampler was to pick it), what `specdec-score` prints,
// and what lm-evaluation-harness sums into a loglikelihood.
#ifndef SPECDEC_COMMON_SAMPLING_LOGPROBS_H_
#define SPECDEC_COMMON_SAMPLING_LOGPROBS_H_

#include <cstdint>
#include <vector>

namespace specdec {

// The most alternatives a caller may ask for per position (OpenAI's legacy API allowed 5;
// vLLM and the chat API allow 20).
inline constexpr int kMaxTopLogprobs = 20;

struct TopLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};

// One row of logits ([cols] floats; `vocab_ids` (nullable) maps column -> token id) seen as a
// distribution. The normaliser is computed once, so each lookup is cheap.
class RowLogprobs {
 public:
  RowLogprobs(const float* row, int64_t cols, const int32_t* vocab_ids);

  // log p(token); -inf when the row does not score `token` (outside a vocabulary subset).
  float Of(int32_t token) const;
  // The `n` most likely tokens, most likely first (ties: the smaller id first).
  std::vector<TopLogprob> Top(int n) const;
  // log sum exp of the row, in double.
  double log_normalizer() const { return log_normalizer_; }

 private:
  const float* row_;
  int64_t cols_;
  const int32_t* vocab_ids_;
  double log_normalizer_;
};

// log sum_i exp(row[i]), stable (max-shifted) and summed in double.
double LogSumExp(const float* row, int64_t cols);

}  // namespace specdec

#endif  // SPECDEC_COMMON_SAMPLING_LOGPROBS_H_
