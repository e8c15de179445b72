// GetInfo answers of the draft and verifier processes.
#ifndef SPECDEC_SERVICES_COMMON_SERVICE_INFO_H_
#define SPECDEC_SERVICES_COMMON_SERVICE_INFO_H_

#include <cstdint>
#include <memory>
#include <string>

#include "common/batching/forward_batcher.h"
#include "services/common/model_service_options.h"
#include "common/metrics/model_service_metrics.h"
#include "common/model/model.h"
#include "specdec/v1/session.pb.h"

namespace specdec {

// GetInfo of a draft or verifier process serving `view` of `model`.
v1::ServiceInfoResponse MakeServiceInfo(const Model& model, const ModelView& view,
                                        const std::string& kv_policy, int32_t max_support);

// A batcher for the service's sessions per --max_batch_tokens / --batch_wait_us /
// --batch_passes (null: off); `device` is the model's ("cpu", "cuda:0").
std::unique_ptr<ForwardBatcher> MakeBatcher(const ModelServiceOptions& options,
                                            const std::string& device);
// Adds `batcher`'s counters (nullable) to GetStats.
void AddBatchStats(const ForwardBatcher* batcher, v1::GetStatsResponse* stats);

// GetStats counters as the metrics endpoint reports them.
ModelServiceSnapshot SnapshotOf(const v1::GetStatsResponse& stats);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_SERVICE_INFO_H_
