// The one mapping between absl::Status (everything inside the project) and grpc::Status (the
// wire). Codes map one to one; nothing is collapsed into INTERNAL.
#ifndef SPECDEC_COMMON_RPC_STATUS_H_
#define SPECDEC_COMMON_RPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace specdec {

// absl::Status -> grpc::Status, same code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);
// grpc::Status -> absl::Status, same code and message (for errors passed through a client).
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace specdec

#endif  // SPECDEC_COMMON_RPC_STATUS_H_
