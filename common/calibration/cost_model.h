// The cost side of calibration: what a draft token and a verification pass cost on this machine
// (measured, never counted: the LM head can outweigh every layer), and the standard expected
// speedup of speculative decoding that turns agreement and cost into a choice of plan and K.
#ifndef SPECDEC_COMMON_CALIBRATION_COST_MODEL_H_
#define SPECDEC_COMMON_CALIBRATION_COST_MODEL_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/model/model.h"

namespace specdec {

// The full model's cost of one verification pass, measured after a fixed context.
struct VerifyCost {
  double token_s = 0;  // one position (what plain decoding pays per token)
  // relative[n - 1]: one forward over n positions (argmax of every row included) / token_s.
  // relative[0] == 1.
  std::vector<double> relative;
  // The cost of a round verifying k draft tokens (k + 1 positions), in units of token_s.
  double ForDraftTokens(int k) const;
};

// One draft view's cost per proposed token.
struct DraftCost {
  double token_s = 0;       // median seconds: one position, last-row logits, argmax
  double full_token_s = 0;  // the full model's median measured alongside
  double ratio = 0;         // median over adjacent (draft, full) pairs of draft / full
};

// Tokens one round emits when each of `k` draft tokens is accepted with probability
// `acceptance` independently: (1 - a^(k+1)) / (1 - a); k + 1 when a == 1.
double ExpectedTokensPerRound(double acceptance, int k);

// Expected speedup over plain decoding: tokens per round / (k * cost_ratio + verify(k + 1)),
// all costs in units of the full model's one-token cost.
double ExpectedSpeedup(double acceptance, double cost_ratio, const VerifyCost& verify, int k);

struct DraftLengthChoice {
  int k = 1;
  double tokens_per_round = 0;
  double speedup = 0;
};
// The k in [1, k_max] with the best expected speedup (smallest k on ties).
DraftLengthChoice ChooseDraftLength(double acceptance, double cost_ratio, const VerifyCost& verify,
                                    int k_max);

// Measures the full view's verification cost for 1 .. k_max + 1 positions after `context`
// (repeats interleaved over n, so slow drift in machine load hits every n alike).
absl::StatusOr<VerifyCost> MeasureVerifyCost(const ModelView& full,
                                             absl::Span<const int32_t> context, int k_max,
                                             int repeats);

// Measures `draft`'s cost per token against `full`'s, in adjacent pairs after `context`.
absl::StatusOr<DraftCost> MeasureDraftCost(const ModelView& draft, const ModelView& full,
                                           absl::Span<const int32_t> context, int repeats);

double Median(std::vector<double> values);

}  // namespace specdec

#endif  // SPECDEC_COMMON_CALIBRATION_COST_MODEL_H_
