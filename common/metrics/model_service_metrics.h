// The metrics of a model service (draft or verifier): sessions, tokens run, KV cache bytes with
// the cache policy as a label and the paged cache's block pool (read from the service's own
// counters on every scrape), and the latency of each model step (prefill, propose, verify) as
// histograms.
#ifndef SPECDEC_COMMON_METRICS_MODEL_SERVICE_METRICS_H_
#define SPECDEC_COMMON_METRICS_MODEL_SERVICE_METRICS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/metrics/metrics_server.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace specdec {

// The service's counters at one moment (SessionRegistry::Stats() on the services).
struct ModelServiceSnapshot {
  int64_t active_sessions = 0;
  int64_t cache_bytes = 0;
  int64_t sessions_opened = 0;
  int64_t sessions_released = 0;
  int64_t sessions_abandoned = 0;
  int64_t sessions_evicted = 0;
  int64_t sessions_refused = 0;  // over --max_sessions
  int64_t tokens_processed = 0;
  // The paged KV cache's shared block pool; total 0: no pool (contiguous caches, the draft).
  int64_t kv_pool_blocks_total = 0;
  int64_t kv_pool_blocks_used = 0;
  int64_t kv_pool_blocks_free = 0;
  int64_t kv_pool_blocks_peak = 0;
  int64_t kv_pool_block_tokens = 0;
  // The draft only: the plan in use (its number and summary), switches since start, and the
  // online plan search's evaluations and measured busy fraction (docs/shrunken_self.md).
  int64_t draft_plan_id = 0;
  std::string draft_plan;
  int64_t plan_switches = 0;
  int64_t plan_search_evaluations = 0;
  double plan_search_busy_fraction = 0;
};

enum class ModelStep { kPrefill, kPropose, kVerify };

class ModelServiceMetrics {
 public:
  // Own registry and /metrics endpoint on `listen` (--metrics_listen); see the constructor.
  static absl::StatusOr<std::unique_ptr<ModelServiceMetrics>> Serve(
      const std::string& listen, const std::string& service, const std::string& kv_policy,
      std::function<ModelServiceSnapshot()> snapshot);

  // `service`: "draft" or "verifier"; `kv_policy`: the label of the KV cache metrics.
  // `snapshot` is called on every scrape, from the exposer's thread.
  ModelServiceMetrics(prometheus::Registry& registry, const std::string& service,
                      const std::string& kv_policy, std::function<ModelServiceSnapshot()> snapshot);

  // Register with MetricsServer::RegisterCollectable: the snapshot-based metrics.
  std::shared_ptr<prometheus::Collectable> collectable() const { return collectable_; }

  // One model step of `tokens` input tokens that took `seconds` (thread-safe).
  void ObserveStep(ModelStep step, double seconds, int64_t tokens);

 private:
  prometheus::Histogram* step_seconds_[3];
  prometheus::Counter* step_tokens_[3];
  std::shared_ptr<prometheus::Collectable> collectable_;
  // Set by Serve(): the registry and endpoint this object reports to.
  std::shared_ptr<prometheus::Registry> owned_registry_;
  std::unique_ptr<MetricsServer> server_;
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_METRICS_MODEL_SERVICE_METRICS_H_
