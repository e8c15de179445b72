// The wire form of the round planner's FinishReason (common/speculative/round_planner.h): the
// gateway's API speaks v1::FinishReason, every name comes from FinishReasonName.
#ifndef SPECDEC_SERVICES_GATEWAY_FINISH_REASON_H_
#define SPECDEC_SERVICES_GATEWAY_FINISH_REASON_H_

#include "common/speculative/round_planner.h"
#include "specdec/v1/gateway.pb.h"

namespace specdec {

inline v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kEos: return v1::FINISH_REASON_EOS;
    case FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case FinishReason::kContext: return v1::FINISH_REASON_CONTEXT;
    case FinishReason::kNone: break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

inline FinishReason FromProto(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_LENGTH: return FinishReason::kLength;
    case v1::FINISH_REASON_EOS: return FinishReason::kEos;
    case v1::FINISH_REASON_STOP: return FinishReason::kStop;
    case v1::FINISH_REASON_CONTEXT: return FinishReason::kContext;
    default: return FinishReason::kNone;
  }
}

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_FINISH_REASON_H_
