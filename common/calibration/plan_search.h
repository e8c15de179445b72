// Online plan search: the draft re-plans its shrunken self while it serves (docs/shrunken_self.md,
// "Re-planning while serving"). The pieces, each testable on its own:
//   CommittedText  the recent committed tokens of the sessions the draft serves (a bounded sample);
//   DutyCycle      the search's busy-time accounting: how long to sleep after each piece of work
//                  so that it stays within its share of the machine;
//   PlanDecider    the switch rule, with hysteresis (a margin, consecutive wins, a dwell time);
//   PlanSearch     the candidates and their scores: measured cost (MeasureDraftCost) and
//                  teacher-forced agreement on the committed text (AgreementMeter), turned into
//                  an expected speedup by the same cost model specdec-calibrate uses.
// The draft service's worker (services/draft/plan_search_worker.h) runs them in a loop.
#ifndef SPECDEC_COMMON_CALIBRATION_PLAN_SEARCH_H_
#define SPECDEC_COMMON_CALIBRATION_PLAN_SEARCH_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/calibration/calibrator.h"
#include "common/calibration/cost_model.h"
#include "common/model/layer_plan.h"
#include "common/model/model.h"

namespace specdec {

// The last `tokens_per_session` committed tokens of the `max_sessions` sessions updated most
// recently. Thread-safe. The sample follows the traffic: an old session's text leaves it as
// newer sessions arrive.
class CommittedText {
 public:
  CommittedText(int max_sessions, int64_t tokens_per_session);
  // `tokens` stand at positions [start_position, start_position + n) of `session`: whatever the
  // sample held at or after start_position is dropped first (a rolled-back guess).
  void Update(const std::string& session, int64_t start_position,
              absl::Span<const int32_t> tokens);
  // Each held session's tokens, most recently updated first.
  std::vector<std::vector<int32_t>> Snapshot() const;
  // New positions added since start (the search re-evaluates only after new text arrived);
  // tokens sent again over ones already held do not count.
  int64_t tokens_added() const;
  int64_t tokens_per_session() const { return tokens_per_session_; }

 private:
  struct Text {
    int64_t end = 0;  // position after the last token held
    std::deque<int32_t> tokens;
    int64_t touched = 0;  // update counter when last updated
  };
  const int max_sessions_;
  const int64_t tokens_per_session_;
  mutable absl::Mutex mu_;
  std::map<std::string, Text> texts_ ABSL_GUARDED_BY(mu_);
  int64_t updates_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t tokens_added_ ABSL_GUARDED_BY(mu_) = 0;
};

// Busy-time accounting for work that may use at most `fraction` of the time. After each piece
// of work taking `busy`, the worker sleeps busy * (1 - fraction) / fraction, so every stretch of
// work plus its sleep is within the fraction, whatever the pieces' sizes. Times are passed in
// (tests use a fake clock).
class DutyCycle {
 public:
  DutyCycle(double fraction, absl::Time start);
  // Records a piece of work [begin, end); returns when the next piece may start.
  absl::Time Worked(absl::Time begin, absl::Time end);
  // Measured busy time / time since start.
  double BusyFraction(absl::Time now) const;
  absl::Duration busy() const { return busy_; }
  double fraction() const { return fraction_; }

 private:
  double fraction_;
  absl::Time start_;
  absl::Duration busy_ = absl::ZeroDuration();
};

// When to switch plans. The best candidate must beat the current plan's expected speedup by
// `margin` (relative) in `consecutive` evaluations in a row, and at least `min_dwell` must have
// passed since the last switch: a plan is not dropped on one noisy sample. The switch goes to the
// latest evaluation's best. The winners need not be the same candidate each time: near-equal
// challengers (neighbouring vocabulary cuts) often trade places, and that the current plan keeps
// losing is what matters.
struct PlanSwitchRule {
  double margin = 0.05;
  int consecutive = 2;
  absl::Duration min_dwell = absl::Seconds(5);
};

class PlanDecider {
 public:
  PlanDecider(PlanSwitchRule rule, int current, absl::Time now);
  // `speedups[i]`: candidate i's expected speedup in this evaluation (<= 0: not scored). Returns
  // the candidate to switch to (then current), or nullopt to stay.
  std::optional<int> Observe(absl::Span<const double> speedups, absl::Time now);
  int current() const { return current_; }
  int64_t switches() const { return switches_; }

 private:
  PlanSwitchRule rule_;
  int current_;
  absl::Time last_switch_;
  int streak_ = 0;  // evaluations in a row the current plan lost by the margin
  int64_t switches_ = 0;
};

struct PlanSearchOptions {
  // Layer sets: the first `max_layer_sets` of CandidateLayerSets (all layers first), crossed
  // with `vocab_cuts` (0: the full vocabulary). Kept small: every layer set costs one forward
  // over the sample per evaluation.
  int max_layer_sets = 3;
  std::vector<int64_t> vocab_cuts = {0, 8192, 4096, 2048};
  int k_max = 8;
  // Agreement windows (teacher forcing) over each session's text.
  int64_t window = 256;
  // Cost measurement: context length and timed repeats per candidate.
  int64_t cost_context = 64;
  int cost_repeats = 5;
};

// A candidate's latest scores.
struct CandidateScore {
  double cost_ratio = 0;   // 0: not measured yet
  double agreement = -1;   // < 0: not measured yet
  int best_k = 1;
  double expected_speedup = 0;
};

// The candidates and their measurement, in pieces small enough for a duty cycle. Not
// thread-safe (one worker).
class PlanSearch {
 public:
  // Candidate 0 is `start` (the plan the service starts with), then the grid without repeats.
  PlanSearch(std::shared_ptr<const Model> model, const LayerPlan& start, PlanSearchOptions options);

  const std::vector<LayerPlan>& candidates() const { return candidates_; }
  const std::vector<CandidateScore>& scores() const { return scores_; }
  bool verify_measured() const { return !verify_.relative.empty(); }
  // The next candidate whose cost is not measured yet; -1 when all are.
  int NextUnmeasuredCost() const;

  // Pieces of work.
  absl::Status MeasureVerify();
  absl::Status MeasureCost(int candidate);
  // Starts an evaluation over `texts` (those of fewer than 2 tokens are left out); then
  // AddReference(i) runs the full model over text i (the reference), one piece per text.
  absl::Status BeginEvaluation(std::vector<std::vector<int32_t>> texts);
  int num_texts() const { return static_cast<int>(texts_.size()); }
  absl::Status AddReference(int i);
  // Layer-and-heads configurations to measure in this evaluation (each serves several cuts).
  int num_groups() const { return static_cast<int>(groups_.size()); }
  // Measures group `g`'s candidates' agreement on the evaluation's texts (nothing when none of
  // them has a measured cost: it could not be scored).
  absl::Status MeasureGroup(int g);
  // Fills every candidate's best K and expected speedup from its cost and agreement, and returns
  // the speedups (0 for candidates not fully measured).
  std::vector<double> Score();

 private:
  struct Group {
    LayerPlan layers;               // vocab_size 0
    std::vector<int> members;       // candidates
    std::vector<int64_t> cuts;      // members' cuts
  };
  std::shared_ptr<const Model> model_;
  PlanSearchOptions options_;
  std::vector<LayerPlan> candidates_;
  std::vector<CandidateScore> scores_;
  std::vector<Group> groups_;
  std::vector<int64_t> cuts_;  // distinct vocabulary cuts of the grid
  std::vector<int32_t> cost_context_;
  VerifyCost verify_;
  std::vector<std::vector<int32_t>> texts_;  // of the evaluation
  std::vector<AgreementMeter> meters_;       // one per text added
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_CALIBRATION_PLAN_SEARCH_H_
