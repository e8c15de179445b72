// Head probing: which attention heads of the full model matter. Attention statistics over the
// first tokens of a text (Sequence::RecordAttention) classify each head as positional (its mass
// sits on a fixed recent offset), dead (near-uniform, or masking it changes nothing) or content;
// calibration then tries draft plans that mask the dead ones.
#ifndef SPECDEC_COMMON_CALIBRATION_HEAD_PROBE_H_
#define SPECDEC_COMMON_CALIBRATION_HEAD_PROBE_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/model/model.h"

namespace specdec {

enum class HeadKind { kContent, kPositional, kDead };
const char* HeadKindName(HeadKind kind);

struct HeadProbeOptions {
  // Dead when the mean attention entropy is above this fraction of the uniform entropy.
  double dead_entropy_ratio = 0.9;
  // Dead when masking the head alone keeps this much greedy agreement with the full model.
  double negligible_agreement = 0.995;
  // Positional when at least this much mass (mean over rows) sits on one offset back.
  double positional_mass = 0.5;
};

struct HeadReport {
  int layer = 0;
  int head = 0;
  HeadKind kind = HeadKind::kContent;
  double entropy_ratio = 0;    // mean entropy / mean uniform entropy (rows with > 1 key)
  int top_offset = 0;          // the offset (0 = itself) holding the most mass
  double top_offset_mass = 0;  // mean mass on it
  double sink_mass = 0;        // mean mass on position 0
  // Greedy agreement with the full model when only this head is masked; < 0: not measured.
  double ablation_agreement = -1;
};

// Runs the full model over `tokens` with attention recording on.
absl::StatusOr<AttentionStats> RecordAttention(const ModelView& full,
                                               absl::Span<const int32_t> tokens);

// Classifies every head that `stats` holds. `ablation` maps (layer, head) to the agreement
// measured with that head masked (missing: not measured).
std::vector<HeadReport> ClassifyHeads(const AttentionStats& stats,
                                      const std::map<std::pair<int, int>, double>& ablation,
                                      const HeadProbeOptions& options);

// A markdown table of the reports.
std::string FormatHeadTable(const std::vector<HeadReport>& heads);

}  // namespace specdec

#endif  // SPECDEC_COMMON_CALIBRATION_HEAD_PROBE_H_
