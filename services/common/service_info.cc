// GetInfo answers (see service_info.h).
#include "services/common/service_info.h"

#include <sched.h>

#include <algorithm>
#include <filesystem>

#include "services/common/proto_convert.h"

namespace specdec {

v1::ServiceInfoResponse MakeServiceInfo(const Model& model, const ModelView& view,
                                        const std::string& kv_policy, int32_t max_support) {
  v1::ServiceInfoResponse info;
  std::filesystem::path dir(model.model_dir());
  if (!dir.has_filename()) dir = dir.parent_path();
  info.set_model_name(dir.filename().string());
  info.set_model_config(model.config().Summary());
  info.set_plan(view.plan().IsFull() ? "full" : view.plan().Summary());
  info.set_device(model.device());
  info.set_kv_policy(kv_policy);
  info.set_vocab_size(static_cast<int32_t>(model.config().vocab_size));
  info.set_max_position_embeddings(static_cast<int32_t>(model.config().max_position_embeddings));
  info.set_eos_token_id(static_cast<int32_t>(model.config().eos_token_id));
  info.set_max_support(max_support);
  info.set_version(SpecdecVersion());
  return info;
}

ModelServiceSnapshot SnapshotOf(const v1::GetStatsResponse& stats) {
  ModelServiceSnapshot s;
  s.active_sessions = stats.active_sessions();
  s.cache_bytes = stats.cache_bytes();
  s.sessions_opened = stats.sessions_opened();
  s.sessions_released = stats.sessions_released();
  s.sessions_abandoned = stats.sessions_abandoned();
  s.sessions_evicted = stats.sessions_evicted();
  s.sessions_refused = stats.sessions_refused();
  s.tokens_processed = stats.tokens_processed();
  s.kv_pool_blocks_total = stats.kv_pool_blocks_total();
  s.kv_pool_blocks_used = stats.kv_pool_blocks_used();
  s.kv_pool_blocks_free = stats.kv_pool_blocks_free();
  s.kv_pool_blocks_peak = stats.kv_pool_blocks_peak();
  s.kv_pool_block_tokens = stats.kv_pool_block_tokens();
  s.draft_plan_id = stats.draft_plan_id();
  s.draft_plan = stats.draft_plan();
  s.plan_switches = stats.plan_switches();
  s.plan_search_evaluations = stats.plan_search_evaluations();
  s.plan_search_busy_fraction = stats.plan_search_busy_fraction();
  return s;
}

std::unique_ptr<ForwardBatcher> MakeBatcher(const ModelServiceOptions& options,
                                            const std::string& device) {
  if (options.max_batch_tokens <= 0) return nullptr;
  ForwardBatcher::Options batching;
  batching.max_rows = options.max_batch_tokens;
  batching.max_wait = absl::Microseconds(std::max(0, options.batch_wait_us));
  batching.max_passes = options.batch_passes;
  if (batching.max_passes <= 0) {
    // A CPU pass uses --threads cores (0 means one here: the services' default on small
    // machines); more passes at once keep the other usable cores busy. A GPU runs one at a time.
    cpu_set_t usable;
    const int cores = sched_getaffinity(0, sizeof(usable), &usable) == 0 ? CPU_COUNT(&usable) : 1;
    batching.max_passes = device.rfind("cuda", 0) == 0
                              ? 1
                              : std::max(1, cores / std::max(1, options.threads));
  }
  return std::make_unique<ForwardBatcher>(batching);
}

void AddBatchStats(const ForwardBatcher* batcher, v1::GetStatsResponse* stats) {
  if (batcher == nullptr) return;
  const ForwardBatcher::Stats batching = batcher->stats();
  stats->set_batched_passes(batching.passes);
  stats->set_batched_calls(batching.calls);
  stats->set_largest_batch(batching.largest);
}

}  // namespace specdec
