// Conversions between the wire messages and the library types they carry.
#ifndef SPECDEC_SERVICES_COMMON_PROTO_CONVERT_H_
#define SPECDEC_SERVICES_COMMON_PROTO_CONVERT_H_

#include <string>

#include "common/sampling/sampling.h"
#include "specdec/v1/session.pb.h"

namespace specdec {

// Most draft tokens one round may carry (draft proposals, verifier drafts, request K).
inline constexpr int kMaxDraftTokensPerRound = 64;

SamplingParams FromProto(const v1::SessionSampling& proto);
v1::SessionSampling ToProto(const SamplingParams& params);
// Always sparse on the wire (a dense distribution lists its non-zero entries).
void ToProto(const TokenDistribution& dist, v1::SparseDistribution* proto);
TokenDistribution FromProto(const v1::SparseDistribution& proto);

// The project version string reported by GetInfo.
const char* SpecdecVersion();

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_PROTO_CONVERT_H_
