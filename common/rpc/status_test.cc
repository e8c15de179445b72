// ToGrpcStatus / FromGrpcStatus keep codes and messages.
#include "common/rpc/status.h"

#include "gtest/gtest.h"

namespace specdec {
namespace {

TEST(StatusTest, OkMapsToOk) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(StatusTest, EveryCodeKeepsItsMeaning) {
  const std::pair<absl::Status, grpc::StatusCode> cases[] = {
      {absl::InvalidArgumentError("bad"), grpc::StatusCode::INVALID_ARGUMENT},
      {absl::ResourceExhaustedError("full"), grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::UnavailableError("down"), grpc::StatusCode::UNAVAILABLE},
      {absl::DeadlineExceededError("late"), grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::CancelledError("gone"), grpc::StatusCode::CANCELLED},
      {absl::NotFoundError("none"), grpc::StatusCode::NOT_FOUND},
      {absl::FailedPreconditionError("not yet"), grpc::StatusCode::FAILED_PRECONDITION},
      {absl::InternalError("bug"), grpc::StatusCode::INTERNAL},
  };
  for (const auto& [in, code] : cases) {
    grpc::Status out = ToGrpcStatus(in);
    EXPECT_EQ(out.error_code(), code) << in;
    EXPECT_EQ(out.error_message(), std::string(in.message()));
    EXPECT_EQ(FromGrpcStatus(out), in);
  }
}

}  // namespace
}  // namespace specdec
