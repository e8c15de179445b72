// Calibration (see calibrator.h).
#include "common/calibration/calibrator.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "nlohmann/json.hpp"

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int32_t FullArgmax(const float* row, int64_t cols) {
  return static_cast<int32_t>(std::max_element(row, row + cols) - row);
}

}  // namespace

std::vector<std::vector<int>> CandidateLayerSets(int num_layers) {
  std::vector<std::vector<int>> out;
  std::set<std::vector<int>> seen;
  auto add = [&](std::vector<int> layers) {
    std::sort(layers.begin(), layers.end());
    if (layers.empty() || !seen.insert(layers).second) return;
    out.push_back(std::move(layers));
  };
  std::vector<int> all(num_layers);
  for (int i = 0; i < num_layers; ++i) all[i] = i;
  add(all);
  for (int skip = 0; skip < num_layers; ++skip) {
    std::vector<int> layers;
    for (int i : all) {
      if (i != skip) layers.push_back(i);
    }
    add(layers);
  }
  // Keep the first `first` and the last `last` layers (the ends matter most).
  for (int kept = num_layers - 1; kept >= 2; --kept) {
    for (int first = 1; first < kept; ++first) {
      std::vector<int> layers;
      for (int i = 0; i < first; ++i) layers.push_back(i);
      for (int i = num_layers - (kept - first); i < num_layers; ++i) layers.push_back(i);
      add(layers);
    }
  }
  for (int a = 0; a < num_layers; ++a) {
    for (int b = a + 1; b < num_layers; ++b) {
      std::vector<int> layers;
      for (int i : all) {
        if (i != a && i != b) layers.push_back(i);
      }
      add(layers);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// AgreementMeter

absl::StatusOr<AgreementMeter> AgreementMeter::Create(const Model& model,
                                                      absl::Span<const int32_t> tokens,
                                                      int64_t window,
                                                      absl::Span<const int64_t> full_model_cuts) {
  if (tokens.size() < 2) return absl::InvalidArgumentError("agreement needs at least 2 tokens");
  if (window < 1) return absl::InvalidArgumentError("the agreement window must be positive");
  window = std::min<int64_t>(window, model.config().max_position_embeddings);
  AgreementMeter meter(model, std::vector<int32_t>(tokens.begin(), tokens.end()), window);
  std::vector<int64_t> cuts = {0};
  cuts.insert(cuts.end(), full_model_cuts.begin(), full_model_cuts.end());
  ASSIGN_OR_RETURN(auto reference, meter.Predict(*model.FullView(), cuts));
  meter.reference_ = reference[0];
  for (size_t i = 1; i < cuts.size(); ++i) {
    meter.full_model_cuts_.emplace_back(cuts[i], std::move(reference[i]));
  }
  return meter;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> AgreementMeter::Predict(
    const ModelView& view, absl::Span<const int64_t> cuts) const {
  const std::vector<int32_t>& rank = model_->vocab_rank();
  const int64_t vocab = view.vocab_cols();
  std::vector<int64_t> sizes(cuts.size());
  for (size_t i = 0; i < cuts.size(); ++i)
    sizes[i] = cuts[i] <= 0 || cuts[i] >= vocab ? vocab : cuts[i];
  // Cuts by ascending size, so that one pass down the frequency ranking serves them all.
  std::vector<size_t> order(cuts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sizes[a] < sizes[b]; });
  int64_t longest_cut = 0;  // the largest true subset
  for (int64_t size : sizes) {
    if (size < vocab) longest_cut = std::max(longest_cut, size);
  }
  std::vector<std::vector<int32_t>> out(cuts.size());
  for (size_t begin = 0; begin < tokens_.size(); begin += window_) {
    const size_t end = std::min(tokens_.size(), begin + static_cast<size_t>(window_));
    auto seq = view.NewSequence();
    ASSIGN_OR_RETURN(
        Logits logits,
        seq->Forward(absl::MakeConstSpan(tokens_).subspan(begin, end - begin), LogitsWanted::kAll));
    if (logits.vocab_ids) return absl::InternalError("agreement runs the full vocabulary head");
    for (int64_t r = 0; r < logits.rows; ++r) {
      const float* row = logits.row(r);
      size_t next = 0;
      float best = -std::numeric_limits<float>::infinity();
      int32_t best_id = rank[0];
      for (int64_t i = 0; i < longest_cut; ++i) {
        const int32_t id = rank[i];
        if (row[id] > best) {
          best = row[id];
          best_id = id;
        }
        for (; next < order.size() && sizes[order[next]] == i + 1; ++next) {
          out[order[next]].push_back(best_id);
        }
      }
      if (next < order.size()) {
        const int32_t full = FullArgmax(row, logits.cols);
        for (; next < order.size(); ++next) out[order[next]].push_back(full);
      }
    }
  }
  return out;
}

absl::StatusOr<std::vector<double>> AgreementMeter::Measure(const LayerPlan& plan,
                                                            absl::Span<const int64_t> cuts) const {
  LayerPlan layers_only = plan;
  layers_only.vocab_size = 0;
  const int num_layers = static_cast<int>(model_->config().num_hidden_layers);
  std::vector<std::vector<int32_t>> predictions;
  if (plan.masked_heads.empty() &&
      static_cast<int>(plan.LayersToRun(num_layers).size()) == num_layers) {
    for (int64_t cut : cuts) {
      auto kept = std::find_if(full_model_cuts_.begin(), full_model_cuts_.end(),
                               [&](const auto& entry) { return entry.first == cut; });
      if (cut <= 0 || cut >= model_->config().vocab_size) {
        predictions.push_back(reference_);
      } else if (kept != full_model_cuts_.end()) {
        predictions.push_back(kept->second);
      } else {
        predictions.clear();
        break;
      }
    }
  }
  if (predictions.size() != cuts.size()) {
    ASSIGN_OR_RETURN(auto view, model_->View(layers_only));
    ASSIGN_OR_RETURN(predictions, Predict(*view, cuts));
  }
  std::vector<double> out;
  for (const auto& p : predictions) {
    int64_t same = 0;
    for (size_t i = 0; i < p.size(); ++i) same += p[i] == reference_[i];
    out.push_back(static_cast<double>(same) / std::max<size_t>(1, p.size()));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Calibrate

namespace {

class Calibration {
 public:
  Calibration(const Model& model, absl::Span<const int32_t> tokens,
              const CalibrationOptions& options)
      : model_(model), tokens_(tokens), options_(options), start_(Clock::now()) {
    for (int64_t cut : options.vocab_cuts) {
      if (cut >= model.config().vocab_size) cut = 0;
      if (cut < 0) continue;
      if (std::find(cuts_.begin(), cuts_.end(), cut) == cuts_.end()) cuts_.push_back(cut);
    }
    if (cuts_.empty()) cuts_.push_back(0);
  }

  absl::StatusOr<CalibrationReport> Run() {
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(tokens_.size()), options_.max_tokens);
    if (n < 2) return absl::InvalidArgumentError("calibration needs a text of at least 2 tokens");
    auto tokens = tokens_.subspan(0, n);
    report_.tokens_used = n;
    full_ = model_.FullView();
    context_ = tokens.subspan(0, std::min<int64_t>(n, std::max<int64_t>(1, options_.cost_context)));
    ASSIGN_OR_RETURN(report_.verify,
                     MeasureVerifyCost(*full_, context_, options_.k_max, options_.cost_repeats));
    ASSIGN_OR_RETURN(AgreementMeter meter, AgreementMeter::Create(model_, tokens, options_.window, cuts_));
    meter_ = &meter;

    const int num_layers = static_cast<int>(model_.config().num_hidden_layers);
    const auto layer_sets = CandidateLayerSets(num_layers);
    for (size_t i = 0; i < layer_sets.size(); ++i) {
      // Head probing gets the last quarter of the budget.
      if (i > 0 && OverBudget(options_.probe_heads ? 0.75 : 1.0)) {
        report_.candidates_skipped += static_cast<int>((layer_sets.size() - i) * cuts_.size());
        break;
      }
      LayerPlan plan;
      if (static_cast<int>(layer_sets[i].size()) < num_layers) plan.layers = layer_sets[i];
      RETURN_IF_ERROR(Evaluate(plan, cuts_, Origin(layer_sets[i], num_layers)));
    }
    if (options_.probe_heads) RETURN_IF_ERROR(ProbeHeads(tokens));
    std::stable_sort(report_.table.begin(), report_.table.end(),
                     [](const PlanScore& a, const PlanScore& b) {
                       return a.expected_speedup > b.expected_speedup;
                     });
    PlanScore& best = report_.table.front();
    best.plan.note = absl::StrFormat(
        "specdec-calibrate: greedy agreement %.3f on %d tokens, cost ratio %.3f, K=%d, expected "
        "speedup %.2fx over plain decoding",
        best.agreement, n, best.cost_ratio, best.best_k, best.expected_speedup);
    report_.elapsed_s = SecondsSince(start_);
    return std::move(report_);
  }

 private:
  bool OverBudget(double fraction = 1.0) const {
    return SecondsSince(start_) > fraction * options_.budget_s;
  }

  static std::string Origin(const std::vector<int>& layers, int num_layers) {
    const int skipped = num_layers - static_cast<int>(layers.size());
    if (skipped == 0) return "vocab cut";
    if (skipped == 1) return "layer skip";
    // Contiguous kept prefix and suffix around one gap: a keep-first-and-last variant.
    int gaps = 0;
    for (size_t i = 1; i < layers.size(); ++i) gaps += layers[i] != layers[i - 1] + 1;
    if (gaps == 1 && layers.front() == 0 && layers.back() == num_layers - 1) {
      return skipped == 2 ? "pair skip (first+last)" : "first+last";
    }
    return "pair skip";
  }

  // Measures `plan` (layers and heads) crossed with `cuts`, adding one row per cut.
  absl::Status Evaluate(const LayerPlan& plan, const std::vector<int64_t>& cuts,
                        const std::string& origin) {
    ASSIGN_OR_RETURN(std::vector<double> agreement, meter_->Measure(plan, cuts));
    for (size_t c = 0; c < cuts.size(); ++c) {
      PlanScore row;
      row.plan = plan;
      row.plan.vocab_size = cuts[c];
      row.origin = origin;
      row.agreement = agreement[c];
      ASSIGN_OR_RETURN(auto view, model_.View(row.plan));
      ASSIGN_OR_RETURN(DraftCost cost,
                       MeasureDraftCost(*view, *full_, context_, options_.cost_repeats));
      row.draft_token_ms = cost.token_s * 1e3;
      row.cost_ratio = cost.ratio;
      DraftLengthChoice k =
          ChooseDraftLength(row.agreement, row.cost_ratio, report_.verify, options_.k_max);
      row.best_k = k.k;
      row.tokens_per_round = k.tokens_per_round;
      row.expected_speedup = k.speedup;
      SPECDEC_LOG(Debug) << "calibrate: " << row.plan.Summary() << " agreement " << row.agreement
                         << " cost " << row.cost_ratio << " speedup " << row.expected_speedup;
      report_.table.push_back(std::move(row));
    }
    return absl::OkStatus();
  }

  absl::Status ProbeHeads(absl::Span<const int32_t> tokens) {
    if (OverBudget()) return absl::OkStatus();
    auto probe = tokens.subspan(
        0, std::min<int64_t>(tokens.size(), std::max<int64_t>(2, options_.probe_tokens)));
    ASSIGN_OR_RETURN(AttentionStats stats, RecordAttention(*full_, probe));
    const ModelConfig& c = model_.config();
    std::map<std::pair<int, int>, double> ablation;
    if (options_.head_ablation && c.num_attention_heads > 1) {
      const int64_t full_cut = 0;
      for (int layer = 0; layer < c.num_hidden_layers && !OverBudget(); ++layer) {
        for (int head = 0; head < c.num_attention_heads && !OverBudget(); ++head) {
          LayerPlan plan;
          plan.masked_heads[layer] = {head};
          ASSIGN_OR_RETURN(auto agreement, meter_->Measure(plan, {&full_cut, 1}));
          ablation[{layer, head}] = agreement[0];
        }
      }
    }
    report_.heads = ClassifyHeads(stats, ablation, options_.head_options);

    // Head-masked variants of the best few layer sets so far (with their vocabulary cut).
    std::vector<PlanScore> ranked = report_.table;
    std::stable_sort(ranked.begin(), ranked.end(), [](const PlanScore& a, const PlanScore& b) {
      return a.expected_speedup > b.expected_speedup;
    });
    std::set<std::vector<int>> tried;
    int variants = 0;
    for (const PlanScore& base : ranked) {
      if (variants >= 3 || OverBudget()) break;
      if (!tried.insert(base.plan.LayersToRun(static_cast<int>(c.num_hidden_layers))).second)
        continue;
      ++variants;
      for (const auto& [masks, origin] : HeadMasks(base.plan)) {
        if (OverBudget()) break;
        LayerPlan plan = base.plan;
        plan.masked_heads = masks;
        RETURN_IF_ERROR(Evaluate(plan, {base.plan.vocab_size}, origin));
      }
    }
    return absl::OkStatus();
  }

  // Head masks to try on top of `plan`: every dead head of its layers, and (as a control that
  // says whether masking pays at all) the least important head of each layer by ablation.
  std::vector<std::pair<std::map<int, std::vector<int>>, std::string>> HeadMasks(
      const LayerPlan& plan) const {
    const int heads = static_cast<int>(model_.config().num_attention_heads);
    std::set<int> kept;
    for (int l : plan.LayersToRun(static_cast<int>(model_.config().num_hidden_layers)))
      kept.insert(l);
    std::map<int, std::vector<int>> dead, least;
    std::map<int, double> least_agreement;
    for (const HeadReport& h : report_.heads) {
      if (!kept.count(h.layer)) continue;
      if (h.kind == HeadKind::kDead) dead[h.layer].push_back(h.head);
      if (h.ablation_agreement >= 0 &&
          (!least_agreement.count(h.layer) || h.ablation_agreement > least_agreement[h.layer])) {
        least_agreement[h.layer] = h.ablation_agreement;
        least[h.layer] = {h.head};
      }
    }
    // A layer must keep one head; drop the masks of a layer that would lose all.
    for (auto it = dead.begin(); it != dead.end();) {
      it = static_cast<int>(it->second.size()) >= heads ? dead.erase(it) : std::next(it);
    }
    std::vector<std::pair<std::map<int, std::vector<int>>, std::string>> out;
    if (!dead.empty()) out.push_back({dead, "heads: dead masked"});
    if (!least.empty() && heads > 1 && least != dead) {
      out.push_back({least, "heads: least important per layer masked"});
    }
    return out;
  }

  const Model& model_;
  absl::Span<const int32_t> tokens_;
  const CalibrationOptions& options_;
  Clock::time_point start_;
  std::vector<int64_t> cuts_;
  std::shared_ptr<const ModelView> full_;
  absl::Span<const int32_t> context_;
  const AgreementMeter* meter_ = nullptr;
  CalibrationReport report_;
};

}  // namespace

absl::StatusOr<CalibrationReport> Calibrate(const Model& model, absl::Span<const int32_t> tokens,
                                            const CalibrationOptions& options) {
  Calibration calibration(model, tokens, options);
  return calibration.Run();
}

// ---------------------------------------------------------------------------------------------
// Report

std::string CalibrationReport::FormatTables() const {
  std::string out = absl::StrFormat(
      "Full model: %.2f ms per token; verifying K draft tokens (K+1 positions) costs, in tokens:",
      verify.token_s * 1e3);
  for (size_t k = 0; k + 1 < verify.relative.size(); ++k) {
    absl::StrAppendFormat(&out, " K=%d %.2f", static_cast<int>(k), verify.relative[k]);
  }
  absl::StrAppendFormat(
      &out, "\nAgreement on %d tokens; %d candidates, %d skipped for the budget, %.1f s.\n\n",
      tokens_used, static_cast<int>(table.size()), candidates_skipped, elapsed_s);
  out +=
      "| # | plan | origin | agreement | draft ms/token | cost ratio | best K | tokens/round | "
      "expected speedup |\n|---:|---|---|---:|---:|---:|---:|---:|---:|\n";
  for (size_t i = 0; i < table.size(); ++i) {
    const PlanScore& r = table[i];
    absl::StrAppendFormat(&out, "| %d | %s | %s | %.3f | %.3f | %.3f | %d | %.2f | %.2fx |\n",
                          static_cast<int>(i + 1), r.plan.Summary(), r.origin, r.agreement,
                          r.draft_token_ms, r.cost_ratio, r.best_k, r.tokens_per_round,
                          r.expected_speedup);
  }
  if (!heads.empty()) out += "\nHeads of the full model:\n\n" + FormatHeadTable(heads);
  return out;
}

std::string CalibrationReport::ToJson() const {
  nlohmann::ordered_json j;
  if (!table.empty()) {
    j["plan"] = nlohmann::ordered_json::parse(best().plan.ToJson());
    j["chosen_k"] = best().best_k;
    j["expected_speedup"] = best().expected_speedup;
  }
  j["tokens_used"] = tokens_used;
  j["full_token_ms"] = verify.token_s * 1e3;
  j["verify_relative"] = verify.relative;
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const PlanScore& r : table) {
    nlohmann::ordered_json row;
    row["summary"] = r.plan.Summary();
    row["origin"] = r.origin;
    row["layers"] = r.plan.layers;
    nlohmann::ordered_json masked = nlohmann::ordered_json::object();
    for (const auto& [layer, hs] : r.plan.masked_heads) masked[std::to_string(layer)] = hs;
    row["masked_heads"] = masked;
    row["vocab_size"] = r.plan.vocab_size;
    row["agreement"] = r.agreement;
    row["draft_token_ms"] = r.draft_token_ms;
    row["cost_ratio"] = r.cost_ratio;
    row["best_k"] = r.best_k;
    row["tokens_per_round"] = r.tokens_per_round;
    row["expected_speedup"] = r.expected_speedup;
    rows.push_back(row);
  }
  j["table"] = rows;
  nlohmann::ordered_json hs = nlohmann::ordered_json::array();
  for (const HeadReport& h : heads) {
    hs.push_back({{"layer", h.layer},
                  {"head", h.head},
                  {"kind", HeadKindName(h.kind)},
                  {"entropy_ratio", h.entropy_ratio},
                  {"top_offset", h.top_offset},
                  {"top_offset_mass", h.top_offset_mass},
                  {"sink_mass", h.sink_mass},
                  {"ablation_agreement", h.ablation_agreement}});
  }
  j["heads"] = hs;
  return j.dump(2);
}

}  // namespace specdec
