// Calibration of the shrunken self: try candidate draft plans (layer skips x vocabulary cuts x
// head masks) on a text, measure each one's greedy agreement with the full model and its cost
// on this machine, and rank them by the expected speedup of speculative decoding.
#ifndef SPECDEC_COMMON_CALIBRATION_CALIBRATOR_H_
#define SPECDEC_COMMON_CALIBRATION_CALIBRATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/calibration/cost_model.h"
#include "common/calibration/head_probe.h"
#include "common/model/layer_plan.h"
#include "common/model/model.h"

namespace specdec {

struct CalibrationOptions {
  // Wall-clock budget for the whole calibration. The full model's own vocabulary cuts are
  // always measured; further layer sets stop at 75% of the budget when heads are probed (the
  // rest is for probing and head-masked variants), else at 100%.
  double budget_s = 120;
  int k_max = 8;
  // Tokens of the text used for agreement (teacher forcing), in windows of `window` tokens.
  int64_t max_tokens = 512;
  int64_t window = 256;
  // LM head cuts to cross every layer set with (0 = the full vocabulary); cuts not below the
  // model's vocabulary are dropped.
  std::vector<int64_t> vocab_cuts = {0, 8192, 4096, 2048};
  // Cost measurement: context length and timed repeats per plan (medians are used).
  int64_t cost_context = 64;
  int cost_repeats = 15;
  // Head probing: attention statistics over the first `probe_tokens` tokens, plus a one-head
  // ablation per head (agreement with that head masked) when `head_ablation`.
  bool probe_heads = true;
  bool head_ablation = true;
  int64_t probe_tokens = 128;
  HeadProbeOptions head_options;
};

// One candidate plan, measured.
struct PlanScore {
  LayerPlan plan;
  std::string origin;         // "vocab", "layer skip", "first+last", "pair skip", "heads: ..."
  double agreement = 0;       // greedy agreement with the full model (teacher forcing)
  double draft_token_ms = 0;  // median ms per draft token
  double cost_ratio = 0;      // draft token / full model token, measured side by side
  int best_k = 1;
  double tokens_per_round = 0;  // expected, at best_k
  double expected_speedup = 0;  // over plain decoding, at best_k
};

struct CalibrationReport {
  std::vector<PlanScore> table;   // sorted by expected speedup, best first
  VerifyCost verify;              // the full model's verification cost profile
  std::vector<HeadReport> heads;  // empty when head probing did not run
  int64_t tokens_used = 0;
  double elapsed_s = 0;
  int candidates_skipped = 0;  // left out when the budget ran out

  const PlanScore& best() const { return table.front(); }
  // Markdown: the cost profile, the plan table and the head table.
  std::string FormatTables() const;
  // {"plan": {LayerPlan JSON, with a note}, "chosen_k", "expected_speedup", "table": [...],
  //  "verify_relative": [...], "heads": [...]}. ParseLayerPlanJson reads the "plan" object.
  std::string ToJson() const;
};

// Layer sets to try for a model with `num_layers` layers, most promising first and without
// repeats: every layer; every single skip; keep-first-and-last variants; every pair of skips.
std::vector<std::vector<int>> CandidateLayerSets(int num_layers);

// Greedy agreement of several vocabulary cuts of one layers/heads configuration with the full
// model's argmax over `tokens`. A cut's head scores a subset of the same rows, so its argmax is
// the full head's argmax restricted to the first `cut` ids of the frequency ranking: one forward
// per window serves every cut.
class AgreementMeter {
 public:
  // `full_model_cuts`: cuts whose predictions with every layer are kept from the reference
  // forward itself (the full model's own logits), so that Measure answers them without a forward.
  static absl::StatusOr<AgreementMeter> Create(const Model& model, absl::Span<const int32_t> tokens,
                                               int64_t window,
                                               absl::Span<const int64_t> full_model_cuts = {});
  // Agreement per entry of `cuts` (0: the full vocabulary) for `plan`'s layers and masked heads
  // (its vocab_size is ignored). Every layer without masked heads, at cuts given to Create: no
  // forward (the reference run already has those logits).
  absl::StatusOr<std::vector<double>> Measure(const LayerPlan& plan,
                                              absl::Span<const int64_t> cuts) const;
  int64_t positions() const { return static_cast<int64_t>(reference_.size()); }

 private:
  AgreementMeter(const Model& model, std::vector<int32_t> tokens, int64_t window)
      : model_(&model), tokens_(std::move(tokens)), window_(window) {}
  // Argmax token per position for each cut (cuts.size() vectors).
  absl::StatusOr<std::vector<std::vector<int32_t>>> Predict(const ModelView& view,
                                                            absl::Span<const int64_t> cuts) const;

  const Model* model_;
  std::vector<int32_t> tokens_;
  int64_t window_;
  std::vector<int32_t> reference_;  // the full model's argmax per position
  std::vector<std::pair<int64_t, std::vector<int32_t>>> full_model_cuts_;  // cut -> argmax
};

// Runs the calibration on `tokens` (the tokenized calibration text).
absl::StatusOr<CalibrationReport> Calibrate(const Model& model, absl::Span<const int32_t> tokens,
                                            const CalibrationOptions& options);

}  // namespace specdec

#endif  // SPECDEC_COMMON_CALIBRATION_CALIBRATOR_H_
