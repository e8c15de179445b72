// The draft's background plan search (--plan_search on): a thread that measures the candidate
// plans' cost, scores them on the sessions' recent committed text, and switches the service's
// plan when the switch rule says so, all within a duty cycle (common/calibration/plan_search.h;
// docs/shrunken_self.md, "Re-planning while serving").
#ifndef SPECDEC_SERVICES_DRAFT_PLAN_SEARCH_WORKER_H_
#define SPECDEC_SERVICES_DRAFT_PLAN_SEARCH_WORKER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/calibration/plan_search.h"
#include "common/model/model.h"
#include "specdec/v1/session.pb.h"

namespace specdec {

struct PlanSearchWorkerOptions {
  double duty = 0.05;  // most of the time the search may be busy
  PlanSearchOptions search;
  PlanSwitchRule rule;
  // An evaluation waits for this many newly committed tokens (a fresh sample).
  int64_t min_new_tokens = 64;
  // How often an idle worker looks for new text.
  absl::Duration idle_poll = absl::Milliseconds(100);
};

class PlanSearchWorker {
 public:
  // Makes `plan` the service's plan (a view over the same model); called from the worker.
  using SwitchFn = std::function<void(std::shared_ptr<const ModelView>)>;
  // `text` (outlives the worker) is the sample the service fills.
  PlanSearchWorker(std::shared_ptr<const Model> model, const LayerPlan& start,
                   const CommittedText* text, PlanSearchWorkerOptions options, SwitchFn switch_to);
  ~PlanSearchWorker();  // stops and joins

  void Start();
  // Evaluations and the measured busy fraction, into the service's GetStats.
  void AddStats(v1::GetStatsResponse* stats) const;

 private:
  void Run();
  // Runs one piece of work, accounts it, and sleeps out its share; false when stopping.
  bool Work(const std::function<absl::Status()>& piece, const char* what);
  bool SleepUntil(absl::Time until);

  const std::shared_ptr<const Model> model_;
  const CommittedText* text_;
  const PlanSearchWorkerOptions options_;
  const SwitchFn switch_to_;
  PlanSearch search_;
  absl::Notification stop_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  DutyCycle duty_ ABSL_GUARDED_BY(mu_);
  int64_t evaluations_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_DRAFT_PLAN_SEARCH_WORKER_H_
