// IsReplicaFailure: transport failures count against a replica, back-pressure and per-request
// errors do not.
#include "services/gateway/replica_failure.h"

#include "gtest/gtest.h"

namespace specdec {
namespace {

TEST(ReplicaFailureTest, OnlyTransportFailuresCount) {
  EXPECT_TRUE(IsReplicaFailure(absl::UnavailableError("down")));
  EXPECT_TRUE(IsReplicaFailure(absl::DeadlineExceededError("no answer")));
  EXPECT_TRUE(IsReplicaFailure(absl::CancelledError("draining")));
}

TEST(ReplicaFailureTest, BackPressureAndRequestErrorsGoToTheClient) {
  EXPECT_FALSE(IsReplicaFailure(absl::ResourceExhaustedError("KV pool full")));
  EXPECT_FALSE(IsReplicaFailure(absl::InternalError("bug")));
  EXPECT_FALSE(IsReplicaFailure(absl::UnknownError("?")));
  EXPECT_FALSE(IsReplicaFailure(absl::InvalidArgumentError("bad")));
  EXPECT_FALSE(IsReplicaFailure(absl::AbortedError("conflict")));
  EXPECT_FALSE(IsReplicaFailure(absl::FailedPreconditionError("closed")));
  EXPECT_FALSE(IsReplicaFailure(absl::OkStatus()));
}

}  // namespace
}  // namespace specdec
