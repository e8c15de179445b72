// The draft's background plan search (see plan_search_worker.h).
#include "services/draft/plan_search_worker.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/log.h"

namespace specdec {

PlanSearchWorker::PlanSearchWorker(std::shared_ptr<const Model> model, const LayerPlan& start,
                                   const CommittedText* text, PlanSearchWorkerOptions options,
                                   SwitchFn switch_to)
    : model_(std::move(model)),
      text_(text),
      options_(std::move(options)),
      switch_to_(std::move(switch_to)),
      search_(model_, start, options_.search),
      duty_(options_.duty, absl::Now()) {}

PlanSearchWorker::~PlanSearchWorker() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void PlanSearchWorker::Start() {
  {
    absl::MutexLock lock(&mu_);
    duty_ = DutyCycle(options_.duty, absl::Now());
  }
  thread_ = std::thread([this] { Run(); });
}

void PlanSearchWorker::AddStats(v1::GetStatsResponse* stats) const {
  absl::MutexLock lock(&mu_);
  stats->set_plan_search_evaluations(evaluations_);
  stats->set_plan_search_busy_fraction(duty_.BusyFraction(absl::Now()));
}

bool PlanSearchWorker::SleepUntil(absl::Time until) {
  return !stop_.WaitForNotificationWithTimeout(std::max(absl::ZeroDuration(), until - absl::Now()));
}

bool PlanSearchWorker::Work(const std::function<absl::Status()>& piece, const char* what) {
  if (stop_.HasBeenNotified()) return false;
  const absl::Time begin = absl::Now();
  const absl::Status status = piece();
  const absl::Time end = absl::Now();
  absl::Time next;
  {
    absl::MutexLock lock(&mu_);
    next = duty_.Worked(begin, end);
  }
  if (!status.ok()) SPECDEC_LOG(Warning) << "plan search: " << what << ": " << status;
  SPECDEC_LOG(Debug) << "plan search: " << what << " took " << absl::ToDoubleMilliseconds(end - begin)
                     << " ms, sleeping " << absl::ToDoubleMilliseconds(next - end) << " ms";
  return SleepUntil(next);
}

void PlanSearchWorker::Run() {
  const std::vector<LayerPlan>& candidates = search_.candidates();
  SPECDEC_LOG(Info) << "plan search: " << candidates.size() << " candidates, duty cycle "
                    << options_.duty;
  // The verification profile and the starting plan's cost first (nothing can be compared
  // without them); the other candidates' costs (which do not depend on the traffic, so each is
  // measured once) in between evaluations. A candidate without a cost is not a contender yet.
  if (!Work([&] { return search_.MeasureVerify(); }, "verify cost")) return;
  if (!Work([&] { return search_.MeasureCost(0); }, "draft cost")) return;
  PlanDecider decider(options_.rule, 0, absl::Now());
  int64_t evaluated_at = -options_.min_new_tokens;  // evaluate on the first text that arrives
  while (!stop_.HasBeenNotified()) {
    if (text_->tokens_added() < evaluated_at + options_.min_new_tokens) {
      const int unmeasured = search_.NextUnmeasuredCost();
      if (unmeasured >= 0) {
        absl::Status status;
        if (!Work([&] { return status = search_.MeasureCost(unmeasured); }, "draft cost")) return;
        if (!status.ok()) return;  // a candidate that cannot be measured: the search stops
      } else if (!SleepUntil(absl::Now() + options_.idle_poll)) {
        return;
      }
      continue;
    }
    evaluated_at = text_->tokens_added();
    std::vector<std::vector<int32_t>> texts = text_->Snapshot();
    absl::Status status;
    if (!search_.BeginEvaluation(std::move(texts)).ok()) continue;
    for (int i = 0; i < search_.num_texts() && status.ok(); ++i) {
      if (!Work([&] { return status = search_.AddReference(i); }, "reference")) return;
    }
    if (!status.ok()) continue;
    for (int g = 0; g < search_.num_groups() && status.ok(); ++g) {
      if (!Work([&] { return status = search_.MeasureGroup(g); }, "agreement")) return;
    }
    if (!status.ok()) continue;
    const std::vector<double> speedups = search_.Score();
    {
      absl::MutexLock lock(&mu_);
      ++evaluations_;
    }
    const int best = static_cast<int>(std::max_element(speedups.begin(), speedups.end()) -
                                      speedups.begin());
    const CandidateScore& now = search_.scores()[decider.current()];
    const CandidateScore& top = search_.scores()[best];
    SPECDEC_LOG(Debug) << absl::StrFormat(
        "plan search: current %s (agreement %.3f, cost %.3f, expected %.2fx), best %s "
        "(agreement %.3f, cost %.3f, expected %.2fx)",
        candidates[decider.current()].Summary(), now.agreement, now.cost_ratio,
        now.expected_speedup, candidates[best].Summary(), top.agreement, top.cost_ratio,
        top.expected_speedup);
    const int from = decider.current();
    const std::optional<int> to = decider.Observe(speedups, absl::Now());
    if (!to.has_value()) continue;
    SPECDEC_LOG(Info) << absl::StrFormat(
        "plan search: switching from %s (expected %.2fx) to %s (agreement %.3f, cost %.3f, "
        "expected %.2fx)",
        candidates[from].Summary(), speedups[from], candidates[*to].Summary(),
        search_.scores()[*to].agreement, search_.scores()[*to].cost_ratio, speedups[*to]);
    if (!Work(
            [&]() -> absl::Status {
              absl::StatusOr<std::shared_ptr<const ModelView>> view =
                  model_->View(candidates[*to]);
              if (!view.ok()) return view.status();
              switch_to_(*std::move(view));
              return absl::OkStatus();
            },
            "switch")) {
      return;
    }
  }
}

}  // namespace specdec
