// The verifier service (see verifier_service.h): its stats and startup. A session stream is a
// reactor whose requests run in order on the service's worker pool (verifier_stream.cc;
// docs/pipeline.md, "Threading").
#include "services/verifier/verifier_service.h"

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/kv_cache/kv_cache_config.h"
#include "common/rpc/server.h"
#include "services/common/compute_threads.h"
#include "services/common/service_info.h"
#include "services/common/session_spans.h"

namespace specdec {

// The policy GetInfo and the metrics report: the paged cache's config, or "contiguous".
std::string KvPolicyName(const ModelView& view) {
  return view.kv_cache_config() ? view.kv_cache_config()->ToString() : "contiguous";
}

VerifierServiceImpl::VerifierServiceImpl(std::shared_ptr<Model> model,
                                         std::shared_ptr<const ModelView> view, int max_sessions,
                                         int session_threads)
    : model_(std::move(model)),
      view_(std::move(view)),
      registry_("verifier", max_sessions),
      workers_(session_threads) {}

v1::GetStatsResponse VerifierServiceImpl::Stats() const {
  v1::GetStatsResponse stats = registry_.Stats();
  AddBatchStats(batcher_.get(), &stats);
  const KvPoolStats pool = view_->kv_pool_stats();
  stats.set_kv_pool_blocks_total(pool.total_blocks);
  stats.set_kv_pool_blocks_used(pool.used_blocks);
  stats.set_kv_pool_blocks_free(pool.free_blocks);
  stats.set_kv_pool_blocks_peak(pool.peak_used_blocks);
  stats.set_kv_pool_block_tokens(pool.block_tokens);
  return stats;
}

grpc::Status VerifierServiceImpl::GetStats(grpc::ServerContext*, const v1::GetStatsRequest*,
                                           v1::GetStatsResponse* response) {
  *response = Stats();
  return grpc::Status::OK;
}

grpc::Status VerifierServiceImpl::GetInfo(grpc::ServerContext*, const v1::ServiceInfoRequest*,
                                          v1::ServiceInfoResponse* response) {
  *response = MakeServiceInfo(*model_, *view_, KvPolicyName(*view_), 0);
  return grpc::Status::OK;
}

grpc::Status VerifierServiceImpl::EvictSession(grpc::ServerContext*,
                                               const v1::EvictSessionRequest* request,
                                               v1::EvictSessionResponse* response) {
  response->set_evicted(registry_.Evict(request->session_id()));
  return grpc::Status::OK;
}

absl::Status RunVerifierServer(const VerifierServerConfig& config) {
  BlockShutdownSignals();
  if (config.model_dir.empty()) return absl::InvalidArgumentError("--model_dir is required");
  RETURN_IF_ERROR(SetUpModelServiceProcess(config, "verifier"));
  SPECDEC_LOG(Info) << "verifier: loading " << config.model_dir << " on " << config.device;
  ASSIGN_OR_RETURN(std::shared_ptr<Model> model,
                   Model::Load(config.model_dir, LoadOptions{config.device, config.dtype}));
  ASSIGN_OR_RETURN(KvCacheConfig kv_cache, ParseKvCacheConfig(config.kv_policy));
  if (config.kv_pool_blocks > 0) kv_cache.pool_blocks = config.kv_pool_blocks;
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelView> view, model->View(LayerPlan{}, kv_cache));
  const KvPoolStats pool = view->kv_pool_stats();
  SPECDEC_LOG(Info) << "verifier: model " << model->config().Summary() << ", device "
                    << model->device() << ", kv policy " << kv_cache.ToString() << ", kv pool "
                    << pool.total_blocks << " blocks of " << pool.block_tokens << " tokens";
  VerifierServiceImpl service(model, view, config.max_sessions, config.session_threads);
  service.set_batcher(MakeBatcher(config, model->device()));
  if (config.debug_delay_ms > 0) {
    SPECDEC_LOG(Warning) << "verifier: --debug_delay_ms=" << config.debug_delay_ms
                         << " (test only: every verification is delayed)";
    service.set_debug_delay_ms(config.debug_delay_ms);
  }
  std::unique_ptr<ModelServiceMetrics> metrics;
  if (!config.metrics_listen.empty()) {
    ASSIGN_OR_RETURN(
        metrics, ModelServiceMetrics::Serve(config.metrics_listen, "verifier", KvPolicyName(*view),
                                            [&service] { return SnapshotOf(service.Stats()); }));
    service.set_metrics(metrics.get());
  }
  const std::unique_ptr<Tracer> tracer = MakeServiceTracer(
      config.otlp_endpoint, "specdec-verifier", MakeServiceInfo(*model, *view, "", 0).model_name());
  service.set_tracer(tracer.get());
  ServerOptions options;
  options.listen = config.listen;
  options.name = "verifier";
  options.health_service_names = {"specdec.v1.Verifier"};
  options.shutdown_grace_ms = config.shutdown_grace_ms;
  return ServeUntilSignal(options, {&service});
}

}  // namespace specdec
