// The draft service (see draft_service.h): its plan, stats and startup. A session stream is a
// reactor whose requests run in order on the service's worker pool (draft_stream.cc;
// docs/pipeline.md, "Threading").
#include "services/draft/draft_service.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/model/layer_plan.h"
#include "common/rpc/server.h"
#include "services/common/compute_threads.h"
#include "services/common/service_info.h"
#include "services/common/session_spans.h"
#include "services/draft/plan_search_worker.h"

namespace specdec {

DraftServiceImpl::DraftServiceImpl(std::shared_ptr<Model> model,
                                   std::shared_ptr<const ModelView> view, int32_t max_support,
                                   int max_sessions, int session_threads)
    : model_(std::move(model)),
      plan_{view, 0, view->plan().Summary()},
      max_support_(max_support),
      registry_("draft", max_sessions),
      workers_(session_threads) {}

void DraftServiceImpl::SetPlan(std::shared_ptr<const ModelView> view) {
  absl::MutexLock lock(&plan_mu_);
  if (view == plan_.view) return;
  plan_.summary = view->plan().Summary();
  plan_.view = std::move(view);
  ++plan_.id;
  SPECDEC_LOG(Info) << "draft: plan " << plan_.id << ": " << plan_.summary;
}

DraftPlan DraftServiceImpl::plan() const {
  absl::MutexLock lock(&plan_mu_);
  return plan_;
}

void DraftServiceImpl::set_debug_plan_switch(int every, std::shared_ptr<const ModelView> other) {
  debug_switch_every_ = every;
  debug_other_ = std::move(other);
}

void DraftServiceImpl::MaybeDebugSwitch() {
  if (debug_switch_every_ <= 0 || debug_other_ == nullptr) return;
  if (++proposals_ % debug_switch_every_ != 0) return;
  std::shared_ptr<const ModelView> next;
  {
    absl::MutexLock lock(&plan_mu_);
    next = debug_other_;
    debug_other_ = plan_.view;
  }
  SetPlan(std::move(next));
}

v1::GetStatsResponse DraftServiceImpl::Stats() const {
  v1::GetStatsResponse stats = registry_.Stats();
  AddBatchStats(batcher_.get(), &stats);
  const DraftPlan current = plan();
  stats.set_draft_plan_id(current.id);
  stats.set_draft_plan(current.summary);
  stats.set_plan_switches(current.id);
  if (extra_stats_) extra_stats_(&stats);
  return stats;
}

grpc::Status DraftServiceImpl::GetStats(grpc::ServerContext*, const v1::GetStatsRequest*,
                                        v1::GetStatsResponse* response) {
  *response = Stats();
  return grpc::Status::OK;
}

grpc::Status DraftServiceImpl::GetInfo(grpc::ServerContext*, const v1::ServiceInfoRequest*,
                                       v1::ServiceInfoResponse* response) {
  *response = MakeServiceInfo(*model_, *plan().view, "full", max_support_);
  return grpc::Status::OK;
}

grpc::Status DraftServiceImpl::EvictSession(grpc::ServerContext*,
                                            const v1::EvictSessionRequest* request,
                                            v1::EvictSessionResponse* response) {
  response->set_evicted(registry_.Evict(request->session_id()));
  return grpc::Status::OK;
}

absl::StatusOr<PlanSearchWorkerOptions> PlanSearchOptionsFromConfig(
    const DraftServerConfig& config) {
  PlanSearchWorkerOptions options;
  if (!(config.plan_search_duty > 0 && config.plan_search_duty <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--plan_search_duty must be in (0, 1], got ", config.plan_search_duty));
  }
  if (config.plan_search_layer_sets < 1 || config.plan_search_sessions < 1 ||
      config.plan_search_tokens < 2 || config.plan_search_margin < 0 ||
      config.plan_search_dwell_s < 0) {
    return absl::InvalidArgumentError(
        "--plan_search_layer_sets and --plan_search_sessions must be >= 1, "
        "--plan_search_tokens >= 2, --plan_search_margin and --plan_search_dwell_s >= 0");
  }
  options.duty = config.plan_search_duty;
  options.search.max_layer_sets = config.plan_search_layer_sets;
  options.search.vocab_cuts.clear();
  for (absl::string_view part : absl::StrSplit(config.plan_search_vocab_cuts, ',')) {
    int64_t cut = 0;
    if (!absl::SimpleAtoi(part, &cut) || cut < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--plan_search_vocab_cuts: \"", config.plan_search_vocab_cuts, "\" is not a list of sizes"));
    }
    options.search.vocab_cuts.push_back(cut);
  }
  options.rule.margin = config.plan_search_margin;
  options.rule.min_dwell = absl::Seconds(config.plan_search_dwell_s);
  return options;
}

absl::Status RunDraftServer(const DraftServerConfig& config) {
  BlockShutdownSignals();
  if (config.model_dir.empty()) return absl::InvalidArgumentError("--model_dir is required");
  if (config.draft_top_k < 0) return absl::InvalidArgumentError("--draft_top_k must be >= 0");
  if (config.debug_plan_switch_every < 0) {
    return absl::InvalidArgumentError("--debug_plan_switch_every must be >= 0");
  }
  RETURN_IF_ERROR(SetUpModelServiceProcess(config, "draft"));
  ASSIGN_OR_RETURN(LayerPlan plan,
                   LayerPlanFromFlags(config.draft_layers, config.draft_plan, config.draft_vocab));
  SPECDEC_LOG(Info) << "draft: loading " << config.model_dir << " on " << config.device;
  ASSIGN_OR_RETURN(std::shared_ptr<Model> model,
                   Model::Load(config.model_dir, LoadOptions{config.device, config.dtype}));
  RETURN_IF_ERROR(plan.Validate(model->config()));
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelView> view, model->View(plan));
  SPECDEC_LOG(Info) << "draft: model " << model->config().Summary() << ", plan "
                    << (plan.IsFull() ? std::string("full") : plan.Summary()) << ", device "
                    << model->device() << ", q support " << config.draft_top_k;
  DraftServiceImpl service(model, view, config.draft_top_k, config.max_sessions,
                           config.session_threads);
  service.set_batcher(MakeBatcher(config, model->device()));
  if (config.debug_plan_switch_every > 0) {
    ASSIGN_OR_RETURN(LayerPlan other, LayerPlanFromFlags(config.debug_switch_layers, "",
                                                         config.debug_switch_vocab));
    RETURN_IF_ERROR(other.Validate(model->config()));
    ASSIGN_OR_RETURN(std::shared_ptr<const ModelView> other_view, model->View(other));
    SPECDEC_LOG(Warning) << "draft: --debug_plan_switch_every=" << config.debug_plan_switch_every
                         << " (test only: the plan flips to " << other.Summary() << " and back)";
    service.set_debug_plan_switch(config.debug_plan_switch_every, std::move(other_view));
  }
  std::unique_ptr<CommittedText> committed_text;
  std::unique_ptr<PlanSearchWorker> search;
  if (config.plan_search == "on") {
    ASSIGN_OR_RETURN(PlanSearchWorkerOptions options, PlanSearchOptionsFromConfig(config));
    committed_text =
        std::make_unique<CommittedText>(config.plan_search_sessions, config.plan_search_tokens);
    service.set_committed_text(committed_text.get());
    search = std::make_unique<PlanSearchWorker>(
        model, plan, committed_text.get(), std::move(options),
        [&service](std::shared_ptr<const ModelView> next) { service.SetPlan(std::move(next)); });
    service.set_extra_stats(
        [worker = search.get()](v1::GetStatsResponse* stats) { worker->AddStats(stats); });
    search->Start();
  } else if (config.plan_search != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("--plan_search must be off or on, got \"", config.plan_search, "\""));
  }
  if (config.debug_delay_ms > 0) {
    SPECDEC_LOG(Warning) << "draft: --debug_delay_ms=" << config.debug_delay_ms
                         << " (test only: every proposed token is delayed)";
    service.set_debug_delay_ms(config.debug_delay_ms);
  }
  std::unique_ptr<ModelServiceMetrics> metrics;
  if (!config.metrics_listen.empty()) {
    ASSIGN_OR_RETURN(
        metrics, ModelServiceMetrics::Serve(config.metrics_listen, "draft", "full",
                                            [&service] { return SnapshotOf(service.Stats()); }));
    service.set_metrics(metrics.get());
  }
  const std::unique_ptr<Tracer> tracer = MakeServiceTracer(
      config.otlp_endpoint, "specdec-draft", MakeServiceInfo(*model, *view, "", 0).model_name());
  service.set_tracer(tracer.get());
  ServerOptions options;
  options.listen = config.listen;
  options.name = "draft";
  options.health_service_names = {"specdec.v1.Draft"};
  options.shutdown_grace_ms = config.shutdown_grace_ms;
  absl::Status served = ServeUntilSignal(options, {&service});
  search.reset();  // before the service it switches
  return served;
}

}  // namespace specdec
