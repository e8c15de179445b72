// Draft/verifier metrics (see model_service_metrics.h).
#include "common/metrics/model_service_metrics.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/metrics/metrics_server.h"
#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"

namespace specdec {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr const char* kStepNames[] = {"prefill", "propose", "verify"};

ClientMetric Sample(std::vector<ClientMetric::Label> labels, double value, MetricType type) {
  ClientMetric metric;
  std::sort(labels.begin(), labels.end());  // as prometheus-cpp's own families print them
  metric.label = std::move(labels);
  if (type == MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  return metric;
}

class SnapshotCollectable : public prometheus::Collectable {
 public:
  SnapshotCollectable(std::string service, std::string kv_policy,
                      std::function<ModelServiceSnapshot()> snapshot)
      : service_(std::move(service)),
        kv_policy_(std::move(kv_policy)),
        snapshot_(std::move(snapshot)) {}

  std::vector<MetricFamily> Collect() const override {
    const ModelServiceSnapshot s = snapshot_();
    const ClientMetric::Label service{"role", service_};
    std::vector<MetricFamily> out;
    auto family = [&](const char* name, const char* help, MetricType type,
                      std::vector<ClientMetric> metrics) {
      MetricFamily f;
      f.name = name;
      f.help = help;
      f.type = type;
      f.metric = std::move(metrics);
      out.push_back(std::move(f));
    };
    family("specdec_sessions_active", "Sessions holding a KV cache now", MetricType::Gauge,
           {Sample({service}, static_cast<double>(s.active_sessions), MetricType::Gauge)});
    family("specdec_sessions_opened_total", "Sessions opened since start", MetricType::Counter,
           {Sample({service}, static_cast<double>(s.sessions_opened), MetricType::Counter)});
    family("specdec_sessions_closed_total",
           "Sessions ended: released by the gateway, or abandoned (stream ended without a release)",
           MetricType::Counter,
           {Sample({service, {"reason", "released"}}, static_cast<double>(s.sessions_released),
                   MetricType::Counter),
            Sample({service, {"reason", "abandoned"}}, static_cast<double>(s.sessions_abandoned),
                   MetricType::Counter)});
    family("specdec_sessions_evicted_total", "Sessions whose cache was dropped by EvictSession",
           MetricType::Counter,
           {Sample({service}, static_cast<double>(s.sessions_evicted), MetricType::Counter)});
    family("specdec_sessions_refused_total",
           "Sessions refused with RESOURCE_EXHAUSTED because --max_sessions were open",
           MetricType::Counter,
           {Sample({service}, static_cast<double>(s.sessions_refused), MetricType::Counter)});
    family("specdec_tokens_processed_total", "Tokens run through the model (prefill and decode)",
           MetricType::Counter,
           {Sample({service}, static_cast<double>(s.tokens_processed), MetricType::Counter)});
    family("specdec_kv_cache_bytes", "Bytes held by all sessions' KV caches now", MetricType::Gauge,
           {Sample({service, {"kv_policy", kv_policy_}}, static_cast<double>(s.cache_bytes),
                   MetricType::Gauge)});
    family("specdec_kv_cache_bytes_per_session", "Mean KV cache bytes of the active sessions",
           MetricType::Gauge,
           {Sample(
               {service, {"kv_policy", kv_policy_}},
               s.active_sessions > 0 ? static_cast<double>(s.cache_bytes) / s.active_sessions : 0.0,
               MetricType::Gauge)});
    if (service_ == "draft") {
      family("specdec_draft_plan",
             "The draft plan in use: 1, labelled with its number (0: the starting plan) and summary",
             MetricType::Gauge,
             {Sample({service, {"plan_id", std::to_string(s.draft_plan_id)}, {"plan", s.draft_plan}},
                     1.0, MetricType::Gauge)});
      family("specdec_draft_plan_switches_total", "Draft plan switches since start",
             MetricType::Counter,
             {Sample({service}, static_cast<double>(s.plan_switches), MetricType::Counter)});
      family("specdec_plan_search_evaluations_total",
             "Evaluations of the candidate plans by the online plan search (--plan_search on)",
             MetricType::Counter,
             {Sample({service}, static_cast<double>(s.plan_search_evaluations),
                     MetricType::Counter)});
      family("specdec_plan_search_busy_fraction",
             "The plan search's measured busy time / time since it started (--plan_search_duty "
             "bounds it)",
             MetricType::Gauge, {Sample({service}, s.plan_search_busy_fraction, MetricType::Gauge)});
    }
    if (s.kv_pool_blocks_total > 0) {
      const ClientMetric::Label policy{"kv_policy", kv_policy_};
      family("specdec_kv_pool_blocks",
             "Blocks of the paged KV cache's shared pool: used by sessions, or free",
             MetricType::Gauge,
             {Sample({service, policy, {"state", "used"}},
                     static_cast<double>(s.kv_pool_blocks_used), MetricType::Gauge),
              Sample({service, policy, {"state", "free"}},
                     static_cast<double>(s.kv_pool_blocks_free), MetricType::Gauge)});
      family("specdec_kv_pool_blocks_total", "Blocks in the paged KV cache's shared pool",
             MetricType::Gauge,
             {Sample({service, policy}, static_cast<double>(s.kv_pool_blocks_total),
                     MetricType::Gauge)});
      family("specdec_kv_pool_blocks_peak", "Most pool blocks ever in use at once since start",
             MetricType::Gauge,
             {Sample({service, policy}, static_cast<double>(s.kv_pool_blocks_peak),
                     MetricType::Gauge)});
      family("specdec_kv_pool_block_tokens", "Token positions per KV pool block",
             MetricType::Gauge,
             {Sample({service, policy}, static_cast<double>(s.kv_pool_block_tokens),
                     MetricType::Gauge)});
    }
    return out;
  }

 private:
  std::string service_;
  std::string kv_policy_;
  std::function<ModelServiceSnapshot()> snapshot_;
};

}  // namespace

ModelServiceMetrics::ModelServiceMetrics(prometheus::Registry& registry, const std::string& service,
                                         const std::string& kv_policy,
                                         std::function<ModelServiceSnapshot()> snapshot) {
  auto& seconds = prometheus::BuildHistogram()
                      .Name("specdec_model_step_seconds")
                      .Help(
                          "Latency of one model step (prefill, propose: K draft tokens, "
                          "verify: one pass over the drafts)")
                      .Register(registry);
  auto& tokens = prometheus::BuildCounter()
                     .Name("specdec_model_step_tokens_total")
                     .Help("Input tokens run by model steps, by step")
                     .Register(registry);
  for (int i = 0; i < 3; ++i) {
    step_seconds_[i] = nullptr;
    step_tokens_[i] = nullptr;
    // The draft proposes, the verifier verifies; both prefill.
    if ((service == "draft" && i == static_cast<int>(ModelStep::kVerify)) ||
        (service == "verifier" && i == static_cast<int>(ModelStep::kPropose))) {
      continue;
    }
    step_seconds_[i] =
        &seconds.Add({{"role", service}, {"step", kStepNames[i]}}, LatencyBucketsSeconds());
    step_tokens_[i] = &tokens.Add({{"role", service}, {"step", kStepNames[i]}});
  }
  collectable_ = std::make_shared<SnapshotCollectable>(service, kv_policy, std::move(snapshot));
}

absl::StatusOr<std::unique_ptr<ModelServiceMetrics>> ModelServiceMetrics::Serve(
    const std::string& listen, const std::string& service, const std::string& kv_policy,
    std::function<ModelServiceSnapshot()> snapshot) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics =
      std::make_unique<ModelServiceMetrics>(*registry, service, kv_policy, std::move(snapshot));
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(listen, registry);
  if (!server.ok()) return server.status();
  metrics->owned_registry_ = std::move(registry);
  metrics->server_ = *std::move(server);
  metrics->server_->RegisterCollectable(metrics->collectable_);
  return metrics;
}

void ModelServiceMetrics::ObserveStep(ModelStep step, double seconds, int64_t tokens) {
  const int i = static_cast<int>(step);
  if (step_seconds_[i] == nullptr) return;
  step_seconds_[i]->Observe(seconds);
  step_tokens_[i]->Increment(static_cast<double>(tokens));
}

}  // namespace specdec
