// Head probing (see head_probe.h).
#include "common/calibration/head_probe.h"

#include "absl/strings/str_format.h"
#include "common/base/status_macros.h"

namespace specdec {

const char* HeadKindName(HeadKind kind) {
  switch (kind) {
    case HeadKind::kContent:
      return "content";
    case HeadKind::kPositional:
      return "positional";
    case HeadKind::kDead:
      return "dead";
  }
  return "?";
}

absl::StatusOr<AttentionStats> RecordAttention(const ModelView& full,
                                               absl::Span<const int32_t> tokens) {
  if (tokens.empty()) return absl::InvalidArgumentError("head probing needs tokens");
  AttentionStats stats;
  auto seq = full.NewSequence();
  seq->RecordAttention(&stats);
  auto logits = seq->Forward(tokens, LogitsWanted::kLast);
  seq->RecordAttention(nullptr);
  RETURN_IF_ERROR(logits.status());
  return stats;
}

std::vector<HeadReport> ClassifyHeads(const AttentionStats& stats,
                                      const std::map<std::pair<int, int>, double>& ablation,
                                      const HeadProbeOptions& options) {
  std::vector<HeadReport> out;
  for (size_t layer = 0; layer < stats.layers.size(); ++layer) {
    for (size_t head = 0; head < stats.layers[layer].size(); ++head) {
      const HeadAttentionStats& s = stats.layers[layer][head];
      if (s.rows == 0) continue;
      HeadReport r;
      r.layer = static_cast<int>(layer);
      r.head = static_cast<int>(head);
      // Row 0 sees one key (entropy 0 either way), so the sums already weigh it out.
      r.entropy_ratio = s.uniform_entropy_sum > 0 ? s.entropy_sum / s.uniform_entropy_sum : 0;
      for (int d = 0; d < HeadAttentionStats::kOffsets; ++d) {
        const double mass = s.offset_mass_sum[d] / s.rows;
        if (mass > r.top_offset_mass) {
          r.top_offset_mass = mass;
          r.top_offset = d;
        }
      }
      r.sink_mass = s.first_token_mass_sum / s.rows;
      if (auto it = ablation.find({r.layer, r.head}); it != ablation.end()) {
        r.ablation_agreement = it->second;
      }
      const bool negligible =
          r.ablation_agreement >= 0 && r.ablation_agreement >= options.negligible_agreement;
      if (r.entropy_ratio > options.dead_entropy_ratio || negligible) {
        r.kind = HeadKind::kDead;
      } else if (r.top_offset_mass >= options.positional_mass) {
        r.kind = HeadKind::kPositional;
      } else {
        r.kind = HeadKind::kContent;
      }
      out.push_back(r);
    }
  }
  return out;
}

std::string FormatHeadTable(const std::vector<HeadReport>& heads) {
  std::string out =
      "| layer | head | kind | entropy / uniform | top offset | mass there | mass on token 0 | "
      "agreement when masked |\n|---:|---:|---|---:|---:|---:|---:|---:|\n";
  for (const HeadReport& h : heads) {
    absl::StrAppendFormat(&out, "| %d | %d | %s | %.2f | %d | %.2f | %.2f | %s |\n", h.layer,
                          h.head, HeadKindName(h.kind), h.entropy_ratio, h.top_offset,
                          h.top_offset_mass, h.sink_mass,
                          h.ablation_agreement < 0 ? std::string("-")
                                                   : absl::StrFormat("%.3f", h.ablation_agreement));
  }
  return out;
}

}  // namespace specdec
