// GetInfo answers of the draft and verifier processes.
#ifndef SPECDEC_SERVICES_COMMON_SERVICE_INFO_H_
#define SPECDEC_SERVICES_COMMON_SERVICE_INFO_H_

#include <cstdint>
#include <string>

#include "common/metrics/model_service_metrics.h"
#include "common/model/model.h"
#include "specdec/v1/session.pb.h"

namespace specdec {

// GetInfo of a draft or verifier process serving `view` of `model`.
v1::ServiceInfoResponse MakeServiceInfo(const Model& model, const ModelView& view,
                                        const std::string& kv_policy, int32_t max_support);

// GetStats counters as the metrics endpoint reports them.
ModelServiceSnapshot SnapshotOf(const v1::GetStatsResponse& stats);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_SERVICE_INFO_H_
