// The replica-failure classification (see replica_failure.h).
#include "services/gateway/replica_failure.h"

namespace specdec {

bool IsReplicaFailure(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:
      return true;
    default:
      return false;
  }
}

}  // namespace specdec
