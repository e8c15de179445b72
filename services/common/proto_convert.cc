// Wire <-> library conversions (see proto_convert.h).
#include "services/common/proto_convert.h"


namespace specdec {

SamplingParams FromProto(const v1::SessionSampling& proto) {
  SamplingParams params;
  params.temperature = proto.temperature();
  params.top_k = proto.top_k();
  params.top_p = proto.top_p();
  params.seed = proto.seed();
  params.coupling = proto.shared_noise() ? Coupling::kSharedNoise : Coupling::kRejection;
  return params;
}

v1::SessionSampling ToProto(const SamplingParams& params) {
  v1::SessionSampling proto;
  proto.set_temperature(params.temperature);
  proto.set_top_k(params.top_k);
  proto.set_top_p(params.top_p);
  proto.set_seed(params.seed);
  proto.set_shared_noise(params.coupling == Coupling::kSharedNoise);
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

const char* SpecdecVersion() { return "0.1.0"; }

}  // namespace specdec
