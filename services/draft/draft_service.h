// specdec-draft: the draft service. Loads a checkpoint and a LayerPlan ("shrunken self"), keeps
// one KV cache per session, and streams proposals token by token, each with the sparse q it was
// drawn from (see proto/specdec/v1/draft.proto and docs/pipeline.md).
#ifndef SPECDEC_SERVICES_DRAFT_DRAFT_SERVICE_H_
#define SPECDEC_SERVICES_DRAFT_DRAFT_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/batching/forward_batcher.h"
#include "common/calibration/plan_search.h"
#include "common/metrics/model_service_metrics.h"
#include "common/model/model.h"
#include "common/speculative/acceptance.h"
#include "common/tracing/tracer.h"
#include "services/common/model_service_options.h"
#include "services/common/session_registry.h"
#include "services/common/session_runner.h"
#include "services/draft/plan_search_worker.h"
#include "specdec/v1/draft.grpc.pb.h"

namespace specdec {

struct DraftServerConfig : ModelServiceOptions {
  std::string listen = "0.0.0.0:50052";
  std::string draft_layers;  // "0,1,4,5"; empty: every layer
  std::string draft_plan;    // LayerPlan JSON; overrides draft_layers
  int64_t draft_vocab = 0;   // > 0: score only the N most frequent ids
  // Most tokens in a proposal's q (0: the whole distribution).
  int32_t draft_top_k = kDefaultDraftSupport;
  // Online plan search (docs/shrunken_self.md, "Re-planning while serving"): "off" or "on".
  std::string plan_search = "off";
  double plan_search_duty = 0.05;         // most of the time the search may be busy
  int plan_search_layer_sets = 3;         // first N of CandidateLayerSets
  std::string plan_search_vocab_cuts = "0,8192,4096,2048";
  double plan_search_margin = 0.05;       // a challenger's least relative gain
  double plan_search_dwell_s = 5;         // least time between switches
  int plan_search_sessions = 4;           // sessions in the committed-text sample
  int64_t plan_search_tokens = 128;       // last tokens of each
  // Test only: every N proposals the draft switches between its plan and the debug plan
  // (--debug_switch_layers, --debug_switch_vocab), to exercise switches mid-stream.
  int debug_plan_switch_every = 0;
  std::string debug_switch_layers;
  int64_t debug_switch_vocab = 0;
};

// The plan the draft proposes with, swapped whole when it changes.
struct DraftPlan {
  std::shared_ptr<const ModelView> view;
  int64_t id = 0;       // 0: the starting plan; +1 at every switch
  std::string summary;  // LayerPlan::Summary()
};

// Session streams on gRPC's callback API (services/common/session_reactor.h): their requests run
// on `session_threads` worker threads, however many streams are open. The unary calls stay
// synchronous.
class DraftServiceImpl final : public v1::Draft::WithCallbackMethod_Session<v1::Draft::Service> {
 public:
  // At most `max_sessions` session streams at once (0: no limit).
  DraftServiceImpl(std::shared_ptr<Model> model, std::shared_ptr<const ModelView> view,
                   int32_t max_support, int max_sessions = 0,
                   int session_threads = kDefaultSessionThreads);

  grpc::ServerBidiReactor<v1::DraftRequest, v1::DraftResponse>* Session(
      grpc::CallbackServerContext* context) override;
  grpc::Status GetStats(grpc::ServerContext* context, const v1::GetStatsRequest* request,
                        v1::GetStatsResponse* response) override;
  grpc::Status GetInfo(grpc::ServerContext* context, const v1::ServiceInfoRequest* request,
                       v1::ServiceInfoResponse* response) override;
  grpc::Status EvictSession(grpc::ServerContext* context, const v1::EvictSessionRequest* request,
                            v1::EvictSessionResponse* response) override;

  v1::GetStatsResponse Stats() const;
  // The plan rounds start on from now on: each session moves to it at the start of its next
  // proposal (re-running its committed tokens on the new view), never within a round.
  void SetPlan(std::shared_ptr<const ModelView> view);
  DraftPlan plan() const;
  // Every session's committed tokens go to `text` (outlives the service; null: kept nowhere).
  void set_committed_text(CommittedText* text) { committed_text_ = text; }
  // Adds the plan search's counters to GetStats (null: none).
  void set_extra_stats(std::function<void(v1::GetStatsResponse*)> extra) {
    extra_stats_ = std::move(extra);
  }
  // Test only (--debug_plan_switch_every): every `every` proposals, switch between the plan in
  // use and `other`.
  void set_debug_plan_switch(int every, std::shared_ptr<const ModelView> other);
  // Sessions' forward passes run batched through `batcher` (null: each on its own).
  void set_batcher(std::unique_ptr<ForwardBatcher> batcher) { batcher_ = std::move(batcher); }
  // Step latencies go to `metrics` (outlives the service); null: not measured.
  void set_metrics(ModelServiceMetrics* metrics) { metrics_ = metrics; }
  // Spans of streams that carry a traceparent go to `tracer` (outlives the service); null: off.
  void set_tracer(Tracer* tracer) { tracer_ = tracer; }
  // Test only (--debug_delay_ms): sleep this long before each proposed token.
  void set_debug_delay_ms(int ms) { debug_delay_ms_ = ms; }

 private:
  class Stream;  // one session stream's handler (draft_service.cc)

  ModelServiceMetrics* metrics_ = nullptr;
  Tracer* tracer_ = nullptr;
  int debug_delay_ms_ = 0;
  // Test only: counts proposals and flips the plan every debug_switch_every_ of them.
  void MaybeDebugSwitch();

  std::shared_ptr<Model> model_;
  mutable absl::Mutex plan_mu_;
  DraftPlan plan_ ABSL_GUARDED_BY(plan_mu_);
  CommittedText* committed_text_ = nullptr;
  std::function<void(v1::GetStatsResponse*)> extra_stats_;
  int debug_switch_every_ = 0;
  std::shared_ptr<const ModelView> debug_other_ ABSL_GUARDED_BY(plan_mu_);
  std::atomic<int64_t> proposals_{0};
  int32_t max_support_;
  SessionRegistry registry_;
  std::unique_ptr<ForwardBatcher> batcher_;
  // Last: destroyed (joined) first, while what its tasks use still exists.
  SessionRunner workers_;
};

// The plan search's options from the --plan_search_* flags; INVALID_ARGUMENT for bad values.
absl::StatusOr<PlanSearchWorkerOptions> PlanSearchOptionsFromConfig(const DraftServerConfig& config);

// Loads the model and plan, serves until SIGTERM/SIGINT.
absl::Status RunDraftServer(const DraftServerConfig& config);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_DRAFT_DRAFT_SERVICE_H_
