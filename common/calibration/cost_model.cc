// Cost measurement and the expected-speedup formula (see cost_model.h).
#include "common/calibration/cost_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common/base/status_macros.h"
#include "common/sampling/sampling.h"

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;

// One timed step as decoding pays it: a forward at a fixed position, the argmax of every row
// returned, then a rollback so that every repeat sees the same context length.
absl::StatusOr<double> TimeStep(Sequence& seq, absl::Span<const int32_t> tokens,
                                LogitsWanted wanted) {
  const int64_t length = seq.length();
  const auto start = Clock::now();
  ASSIGN_OR_RETURN(Logits logits, seq.Forward(tokens, wanted));
  for (int64_t r = 0; r < logits.rows; ++r) {
    volatile int32_t token = ArgmaxToken(logits.row(r), logits.cols,
                                         logits.vocab_ids ? logits.vocab_ids->data() : nullptr);
    (void)token;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  RETURN_IF_ERROR(seq.Truncate(length));
  return seconds;
}

absl::StatusOr<std::unique_ptr<Sequence>> Prefilled(const ModelView& view,
                                                    absl::Span<const int32_t> context) {
  auto seq = view.NewSequence();
  if (!context.empty()) RETURN_IF_ERROR(seq->Forward(context, LogitsWanted::kLast).status());
  return seq;
}

}  // namespace

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double VerifyCost::ForDraftTokens(int k) const {
  if (k < 0) return 0;
  if (static_cast<size_t>(k) < relative.size()) return relative[k];
  // Past what was measured: extrapolate linearly from the last two points.
  if (relative.size() < 2) return 1.0 + k;
  const double last = relative.back(), slope = relative.back() - relative[relative.size() - 2];
  return last + slope * (k + 1 - static_cast<double>(relative.size()));
}

double ExpectedTokensPerRound(double acceptance, int k) {
  const double a = std::clamp(acceptance, 0.0, 1.0);
  if (a > 1.0 - 1e-12) return k + 1.0;
  return (1.0 - std::pow(a, k + 1)) / (1.0 - a);
}

double ExpectedSpeedup(double acceptance, double cost_ratio, const VerifyCost& verify, int k) {
  const double time = k * cost_ratio + verify.ForDraftTokens(k);
  return ExpectedTokensPerRound(acceptance, k) / std::max(time, 1e-12);
}

DraftLengthChoice ChooseDraftLength(double acceptance, double cost_ratio, const VerifyCost& verify,
                                    int k_max) {
  DraftLengthChoice best;
  best.speedup = -1;
  for (int k = 1; k <= std::max(1, k_max); ++k) {
    const double s = ExpectedSpeedup(acceptance, cost_ratio, verify, k);
    if (s > best.speedup + 1e-12) best = {k, ExpectedTokensPerRound(acceptance, k), s};
  }
  return best;
}

absl::StatusOr<VerifyCost> MeasureVerifyCost(const ModelView& full,
                                             absl::Span<const int32_t> context, int k_max,
                                             int repeats) {
  if (context.empty()) return absl::InvalidArgumentError("cost measurement needs a context");
  ASSIGN_OR_RETURN(auto seq, Prefilled(full, context));
  const int max_n = std::max(1, k_max + 1);
  std::vector<int32_t> chunk(max_n);
  for (int i = 0; i < max_n; ++i) chunk[i] = context[(i + 1) % context.size()];
  std::vector<double> one;                                 // seconds for one position
  std::vector<std::vector<double>> ratios(max_n);          // per repeat: t(n) / t(1) of that repeat
  for (int rep = -1; rep < std::max(1, repeats); ++rep) {  // rep -1 warms up
    double t1 = 0;
    for (int n = 1; n <= max_n; ++n) {
      ASSIGN_OR_RETURN(
          double s, TimeStep(*seq, absl::MakeConstSpan(chunk).subspan(0, n), LogitsWanted::kAll));
      if (n == 1) t1 = s;
      if (rep < 0) continue;
      if (n == 1) one.push_back(s);
      ratios[n - 1].push_back(s / std::max(t1, 1e-12));
    }
  }
  // Ratios within one repeat are taken seconds apart, so load drift mostly cancels.
  VerifyCost cost;
  cost.token_s = Median(one);
  for (int n = 1; n <= max_n; ++n) cost.relative.push_back(Median(ratios[n - 1]));
  // More positions never cost less: keep the profile monotone against noise.
  for (size_t i = 1; i < cost.relative.size(); ++i) {
    cost.relative[i] = std::max(cost.relative[i], cost.relative[i - 1]);
  }
  return cost;
}

absl::StatusOr<DraftCost> MeasureDraftCost(const ModelView& draft, const ModelView& full,
                                           absl::Span<const int32_t> context, int repeats) {
  if (context.empty()) return absl::InvalidArgumentError("cost measurement needs a context");
  ASSIGN_OR_RETURN(auto draft_seq, Prefilled(draft, context));
  ASSIGN_OR_RETURN(auto full_seq, Prefilled(full, context));
  const int32_t token = context.back();
  std::vector<double> draft_times, full_times, ratios;
  for (int rep = -1; rep < std::max(1, repeats); ++rep) {
    // Alternate which goes first so that neither always inherits the other's warm cache.
    double d, f;
    if (rep % 2) {
      ASSIGN_OR_RETURN(d, TimeStep(*draft_seq, {&token, 1}, LogitsWanted::kLast));
      ASSIGN_OR_RETURN(f, TimeStep(*full_seq, {&token, 1}, LogitsWanted::kLast));
    } else {
      ASSIGN_OR_RETURN(f, TimeStep(*full_seq, {&token, 1}, LogitsWanted::kLast));
      ASSIGN_OR_RETURN(d, TimeStep(*draft_seq, {&token, 1}, LogitsWanted::kLast));
    }
    if (rep < 0) continue;
    draft_times.push_back(d);
    full_times.push_back(f);
    ratios.push_back(d / std::max(f, 1e-12));
  }
  return DraftCost{Median(draft_times), Median(full_times), Median(ratios)};
}

}  // namespace specdec
