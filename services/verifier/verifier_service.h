// specdec-verifier: the verifier service. Loads the full model, keeps one KV cache per session,
// and answers each round with one forward pass over [new committed tokens, K draft tokens]:
// per position p_i(x_i) and the residual or bonus sample (proto/specdec/v1/verifier.proto).
#ifndef SPECDEC_SERVICES_VERIFIER_VERIFIER_SERVICE_H_
#define SPECDEC_SERVICES_VERIFIER_VERIFIER_SERVICE_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/batching/forward_batcher.h"
#include "common/metrics/model_service_metrics.h"
#include "common/model/model.h"
#include "common/tracing/tracer.h"
#include "services/common/model_service_options.h"
#include "services/common/session_registry.h"
#include "services/common/session_runner.h"
#include "specdec/v1/verifier.grpc.pb.h"

namespace specdec {

struct VerifierServerConfig : ModelServiceOptions {
  std::string listen = "0.0.0.0:50051";
  // KV cache policy (common/kv_cache/kv_cache_config.h), e.g. "full", "int8",
  // "int8+sink_window:sink=4,window=1020", "h2o:budget=256,recent=64".
  std::string kv_policy = "full";
  // Blocks in the shared KV pool (0: room for 8 sequences at the model's full length).
  int64_t kv_pool_blocks = 0;
};

// Session streams on gRPC's callback API (services/common/session_reactor.h): their requests run
// on `session_threads` worker threads, however many streams are open. The unary calls stay
// synchronous.
class VerifierServiceImpl final
    : public v1::Verifier::WithCallbackMethod_Session<v1::Verifier::Service> {
 public:
  // At most `max_sessions` session streams at once (0: no limit).
  VerifierServiceImpl(std::shared_ptr<Model> model, std::shared_ptr<const ModelView> view,
                      int max_sessions = 0, int session_threads = kDefaultSessionThreads);

  grpc::ServerBidiReactor<v1::VerifierRequest, v1::VerifierResponse>* Session(
      grpc::CallbackServerContext* context) override;
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
  void set_debug_delay_ms(int ms) { debug_delay_ms_ = ms; }

 private:
  class Stream;  // one session stream's handler (verifier_service.cc)

  ModelServiceMetrics* metrics_ = nullptr;
  Tracer* tracer_ = nullptr;
  int debug_delay_ms_ = 0;
  std::shared_ptr<Model> model_;
  std::shared_ptr<const ModelView> view_;
  SessionRegistry registry_;
  std::unique_ptr<ForwardBatcher> batcher_;
  // Last: destroyed (joined) first, while what its tasks use still exists.
  SessionRunner workers_;
};

// Loads the model, serves until SIGTERM/SIGINT.
absl::Status RunVerifierServer(const VerifierServerConfig& config);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_VERIFIER_VERIFIER_SERVICE_H_
