// GetInfo answers (see service_info.h).
#include "services/common/service_info.h"

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
  s.tokens_processed = stats.tokens_processed();
  return s;
}

}  // namespace specdec
