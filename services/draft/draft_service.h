// specdec-draft: the draft service. Loads a checkpoint and a LayerPlan ("shrunken self"), keeps
// one KV cache per session, and streams proposals token by token, each with the sparse q it was
// drawn from (see proto/specdec/v1/draft.proto and docs/pipeline.md).
#ifndef SPECDEC_SERVICES_DRAFT_DRAFT_SERVICE_H_
#define SPECDEC_SERVICES_DRAFT_DRAFT_SERVICE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/batching/forward_batcher.h"
#include "common/metrics/model_service_metrics.h"
#include "common/tracing/tracer.h"
#include "common/model/model.h"
#include "common/speculative/acceptance.h"
#include "services/common/model_service_options.h"
#include "services/common/session_registry.h"
#include "specdec/v1/draft.grpc.pb.h"

namespace specdec {

struct DraftServerConfig : ModelServiceOptions {
  std::string listen = "0.0.0.0:50052";
  std::string draft_layers;  // "0,1,4,5"; empty: every layer
  std::string draft_plan;    // LayerPlan JSON; overrides draft_layers
  int64_t draft_vocab = 0;   // > 0: score only the N most frequent ids
  // Most tokens in a proposal's q (0: the whole distribution).
  int32_t draft_top_k = kDefaultDraftSupport;
};

class DraftServiceImpl final : public v1::Draft::Service {
 public:
  // At most `max_sessions` session streams at once (0: no limit).
  DraftServiceImpl(std::shared_ptr<Model> model, std::shared_ptr<const ModelView> view,
                   int32_t max_support, int max_sessions = 0);

  grpc::Status Session(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::DraftResponse, v1::DraftRequest>* stream) override;
  grpc::Status GetStats(grpc::ServerContext* context, const v1::GetStatsRequest* request,
                        v1::GetStatsResponse* response) override;
  grpc::Status GetInfo(grpc::ServerContext* context, const v1::ServiceInfoRequest* request,
                       v1::ServiceInfoResponse* response) override;
  grpc::Status EvictSession(grpc::ServerContext* context, const v1::EvictSessionRequest* request,
                            v1::EvictSessionResponse* response) override;

  v1::GetStatsResponse Stats() const;
  // Sessions' forward passes run batched through `batcher` (null: each on its own).
  void set_batcher(std::unique_ptr<ForwardBatcher> batcher) { batcher_ = std::move(batcher); }
  // Step latencies go to `metrics` (outlives the service); null: not measured.
  void set_metrics(ModelServiceMetrics* metrics) { metrics_ = metrics; }
  // Spans of streams that carry a traceparent go to `tracer` (outlives the service); null: off.
  void set_tracer(Tracer* tracer) { tracer_ = tracer; }
  // Test only (--debug_delay_ms): sleep this long before each proposed token.
  void set_debug_delay_ms(int ms) { debug_delay_ms_ = ms; }

 private:
  ModelServiceMetrics* metrics_ = nullptr;
  Tracer* tracer_ = nullptr;
  int debug_delay_ms_ = 0;
  std::shared_ptr<Model> model_;
  std::shared_ptr<const ModelView> view_;
  int32_t max_support_;
  SessionRegistry registry_;
  std::unique_ptr<ForwardBatcher> batcher_;
};

// Loads the model and plan, serves until SIGTERM/SIGINT.
absl::Status RunDraftServer(const DraftServerConfig& config);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_DRAFT_DRAFT_SERVICE_H_
