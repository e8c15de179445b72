// Wire <-> library conversions (see proto_convert.h).
#include "services/common/proto_convert.h"

#include <filesystem>

namespace specdec {

SamplingParams FromProto(const v1::SessionSampling& proto) {
  SamplingParams params;
  params.temperature = proto.temperature();
  params.top_k = proto.top_k();
  params.top_p = proto.top_p();
  params.seed = proto.seed();
  return params;
}

v1::SessionSampling ToProto(const SamplingParams& params) {
  v1::SessionSampling proto;
  proto.set_temperature(params.temperature);
  proto.set_top_k(params.top_k);
  proto.set_top_p(params.top_p);
  proto.set_seed(params.seed);
  return proto;
}

void ToProto(const TokenDistribution& dist, v1::SparseDistribution* proto) {
  proto->Clear();
  for (int64_t i = 0; i < dist.size(); ++i) {
    if (dist.dense() && dist.probs[i] <= 0.0f) continue;
    proto->add_ids(dist.IdAt(i));
    proto->add_probs(dist.probs[i]);
  }
}

TokenDistribution FromProto(const v1::SparseDistribution& proto) {
  TokenDistribution dist;
  dist.ids.assign(proto.ids().begin(), proto.ids().end());
  dist.probs.assign(proto.probs().begin(), proto.probs().end());
  return dist;
}

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

const char* SpecdecVersion() { return "0.1.0"; }

}  // namespace specdec
