// Conversions between the wire messages and the library types they carry.
#ifndef SPECDEC_SERVICES_COMMON_PROTO_CONVERT_H_
#define SPECDEC_SERVICES_COMMON_PROTO_CONVERT_H_

#include <string>

#include "common/model/model.h"
#include "common/sampling/sampling.h"
#include "specdec/v1/session.pb.h"

namespace specdec {

SamplingParams FromProto(const v1::SessionSampling& proto);
v1::SessionSampling ToProto(const SamplingParams& params);
// Always sparse on the wire (a dense distribution lists its non-zero entries).
void ToProto(const TokenDistribution& dist, v1::SparseDistribution* proto);
TokenDistribution FromProto(const v1::SparseDistribution& proto);

// GetInfo of a draft or verifier process serving `view` of `model`.
v1::ServiceInfoResponse MakeServiceInfo(const Model& model, const ModelView& view,
                                        const std::string& kv_policy, int32_t max_support);

// The project version string reported by GetInfo.
const char* SpecdecVersion();

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_PROTO_CONVERT_H_
