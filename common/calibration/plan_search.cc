// Online plan search (see plan_search.h).
#include "common/calibration/plan_search.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"

namespace specdec {

// ---------------------------------------------------------------------------------------------
// CommittedText

CommittedText::CommittedText(int max_sessions, int64_t tokens_per_session)
    : max_sessions_(std::max(1, max_sessions)),
      tokens_per_session_(std::max<int64_t>(2, tokens_per_session)) {}

void CommittedText::Update(const std::string& session, int64_t start_position,
                           absl::Span<const int32_t> tokens) {
  absl::MutexLock lock(&mu_);
  Text& text = texts_[session];
  text.touched = ++updates_;
  const int64_t old_end = text.end;
  if (start_position < text.end) {
    const int64_t drop = text.end - start_position;
    if (drop >= static_cast<int64_t>(text.tokens.size())) {
      text.tokens.clear();
    } else {
      text.tokens.erase(text.tokens.end() - drop, text.tokens.end());
    }
  } else if (start_position > text.end) {
    text.tokens.clear();  // a gap: what we hold does not continue into these tokens
  }
  text.tokens.insert(text.tokens.end(), tokens.begin(), tokens.end());
  text.end = start_position + static_cast<int64_t>(tokens.size());
  while (static_cast<int64_t>(text.tokens.size()) > tokens_per_session_) text.tokens.pop_front();
  tokens_added_ += std::max<int64_t>(0, text.end - std::max<int64_t>(old_end, start_position));
  while (static_cast<int>(texts_.size()) > max_sessions_) {
    auto oldest = texts_.begin();
    for (auto it = texts_.begin(); it != texts_.end(); ++it) {
      if (it->second.touched < oldest->second.touched) oldest = it;
    }
    texts_.erase(oldest);
  }
}

std::vector<std::vector<int32_t>> CommittedText::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<const Text*> order;
  for (const auto& [id, text] : texts_) order.push_back(&text);
  std::sort(order.begin(), order.end(),
            [](const Text* a, const Text* b) { return a->touched > b->touched; });
  std::vector<std::vector<int32_t>> out;
  for (const Text* text : order) {
    if (text->tokens.size() >= 2) out.emplace_back(text->tokens.begin(), text->tokens.end());
  }
  return out;
}

int64_t CommittedText::tokens_added() const {
  absl::MutexLock lock(&mu_);
  return tokens_added_;
}

// ---------------------------------------------------------------------------------------------
// DutyCycle

DutyCycle::DutyCycle(double fraction, absl::Time start)
    : fraction_(std::clamp(fraction, 1e-4, 1.0)), start_(start) {}

absl::Time DutyCycle::Worked(absl::Time begin, absl::Time end) {
  const absl::Duration busy = std::max(absl::ZeroDuration(), end - begin);
  busy_ += busy;
  return end + busy * ((1.0 - fraction_) / fraction_);
}

double DutyCycle::BusyFraction(absl::Time now) const {
  const double elapsed = absl::ToDoubleSeconds(now - start_);
  return elapsed > 0 ? absl::ToDoubleSeconds(busy_) / elapsed : 0.0;
}

// ---------------------------------------------------------------------------------------------
// PlanDecider

PlanDecider::PlanDecider(PlanSwitchRule rule, int current, absl::Time now)
    : rule_(rule), current_(current), last_switch_(now) {}

std::optional<int> PlanDecider::Observe(absl::Span<const double> speedups, absl::Time now) {
  if (current_ < 0 || current_ >= static_cast<int>(speedups.size()) || speedups[current_] <= 0) {
    streak_ = 0;  // the current plan is not scored: nothing to compare against
    return std::nullopt;
  }
  int best = current_;
  for (int i = 0; i < static_cast<int>(speedups.size()); ++i) {
    if (speedups[i] > speedups[best]) best = i;
  }
  if (best == current_ || speedups[best] < speedups[current_] * (1.0 + rule_.margin)) {
    streak_ = 0;
    return std::nullopt;
  }
  ++streak_;
  if (streak_ < rule_.consecutive || now - last_switch_ < rule_.min_dwell) return std::nullopt;
  current_ = best;
  last_switch_ = now;
  streak_ = 0;
  ++switches_;
  return best;
}

// ---------------------------------------------------------------------------------------------
// PlanSearch

PlanSearch::PlanSearch(std::shared_ptr<const Model> model, const LayerPlan& start,
                       PlanSearchOptions options)
    : model_(std::move(model)), options_(std::move(options)) {
  const ModelConfig& config = model_->config();
  const int num_layers = static_cast<int>(config.num_hidden_layers);
  std::vector<int64_t> cuts;
  for (int64_t cut : options_.vocab_cuts) {
    if (cut < 0) continue;
    if (cut >= config.vocab_size) cut = 0;
    if (std::find(cuts.begin(), cuts.end(), cut) == cuts.end()) cuts.push_back(cut);
  }
  if (cuts.empty()) cuts.push_back(0);
  cuts_ = cuts;
  std::vector<std::string> seen;
  auto add = [&](LayerPlan plan) {
    if (static_cast<int>(plan.layers.size()) == num_layers) plan.layers.clear();
    plan.note.clear();
    const std::string key = plan.Summary();
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) return;
    seen.push_back(key);
    candidates_.push_back(std::move(plan));
  };
  add(start);
  const auto layer_sets = CandidateLayerSets(num_layers);
  for (size_t i = 0; i < layer_sets.size() && static_cast<int>(i) < options_.max_layer_sets; ++i) {
    for (int64_t cut : cuts) {
      LayerPlan plan;
      plan.layers = layer_sets[i];
      plan.vocab_size = cut;
      add(std::move(plan));
    }
  }
  scores_.resize(candidates_.size());
  // Candidates that differ only in their cut share one forward per evaluation.
  for (int c = 0; c < static_cast<int>(candidates_.size()); ++c) {
    LayerPlan layers = candidates_[c];
    layers.vocab_size = 0;
    auto group = std::find_if(groups_.begin(), groups_.end(), [&](const Group& g) {
      return g.layers.Summary() == layers.Summary();
    });
    if (group == groups_.end()) {
      groups_.push_back(Group{layers, {}, {}});
      group = groups_.end() - 1;
    }
    group->members.push_back(c);
    group->cuts.push_back(candidates_[c].vocab_size);
  }
  // A fixed context for cost measurement: the most frequent ids (costs do not depend on text).
  const std::vector<int32_t>& rank = model_->vocab_rank();
  for (int64_t i = 0; i < options_.cost_context; ++i) {
    cost_context_.push_back(rank[static_cast<size_t>(i) % rank.size()]);
  }
}

int PlanSearch::NextUnmeasuredCost() const {
  for (int c = 0; c < static_cast<int>(scores_.size()); ++c) {
    if (scores_[c].cost_ratio <= 0) return c;
  }
  return -1;
}

absl::Status PlanSearch::MeasureVerify() {
  ASSIGN_OR_RETURN(verify_, MeasureVerifyCost(*model_->FullView(), cost_context_, options_.k_max,
                                              options_.cost_repeats));
  return absl::OkStatus();
}

absl::Status PlanSearch::MeasureCost(int candidate) {
  if (candidate < 0 || candidate >= static_cast<int>(candidates_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("no candidate ", candidate));
  }
  ASSIGN_OR_RETURN(auto view, model_->View(candidates_[candidate]));
  ASSIGN_OR_RETURN(DraftCost cost, MeasureDraftCost(*view, *model_->FullView(), cost_context_,
                                                    options_.cost_repeats));
  scores_[candidate].cost_ratio = std::max(cost.ratio, 1e-6);
  return absl::OkStatus();
}

absl::Status PlanSearch::BeginEvaluation(std::vector<std::vector<int32_t>> texts) {
  meters_.clear();
  texts_.clear();
  for (CandidateScore& score : scores_) score.agreement = -1;
  for (std::vector<int32_t>& text : texts) {
    if (text.size() >= 2) texts_.push_back(std::move(text));
  }
  if (texts_.empty()) return absl::FailedPreconditionError("no committed text to evaluate on");
  return absl::OkStatus();
}

absl::Status PlanSearch::AddReference(int i) {
  if (i < 0 || i >= num_texts()) return absl::InvalidArgumentError(absl::StrCat("no text ", i));
  // The full model's own cuts come from the reference forward: every layer costs no forward.
  ASSIGN_OR_RETURN(AgreementMeter meter,
                   AgreementMeter::Create(*model_, texts_[i], options_.window, cuts_));
  meters_.push_back(std::move(meter));
  return absl::OkStatus();
}

absl::Status PlanSearch::MeasureGroup(int g) {
  if (g < 0 || g >= num_groups()) return absl::InvalidArgumentError(absl::StrCat("no group ", g));
  if (meters_.empty()) return absl::FailedPreconditionError("no reference run yet");
  const Group& group = groups_[g];
  // A group none of whose candidates has a cost yet cannot be scored: skip its forward.
  if (std::none_of(group.members.begin(), group.members.end(),
                   [&](int c) { return scores_[c].cost_ratio > 0; })) {
    return absl::OkStatus();
  }
  std::vector<double> agreed(group.cuts.size(), 0.0);
  int64_t positions = 0;
  for (const AgreementMeter& meter : meters_) {
    ASSIGN_OR_RETURN(std::vector<double> agreement, meter.Measure(group.layers, group.cuts));
    for (size_t i = 0; i < agreed.size(); ++i) agreed[i] += agreement[i] * meter.positions();
    positions += meter.positions();
  }
  for (size_t i = 0; i < group.members.size(); ++i) {
    scores_[group.members[i]].agreement = agreed[i] / std::max<int64_t>(1, positions);
  }
  return absl::OkStatus();
}

std::vector<double> PlanSearch::Score() {
  std::vector<double> out(scores_.size(), 0.0);
  if (!verify_measured()) return out;
  for (size_t c = 0; c < scores_.size(); ++c) {
    CandidateScore& score = scores_[c];
    if (score.cost_ratio <= 0 || score.agreement < 0) continue;
    const DraftLengthChoice choice =
        ChooseDraftLength(score.agreement, score.cost_ratio, verify_, options_.k_max);
    score.best_k = choice.k;
    score.expected_speedup = choice.speedup;
    out[c] = choice.speedup;
  }
  return out;
}

}  // namespace specdec
