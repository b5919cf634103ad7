#include "tandem/server/status.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace tandem::server {
namespace {

TEST(ToGrpcStatus, KeepsCodeAndMessage) {
  const auto status = to_grpc_status(absl::InvalidArgumentError("lr must be positive"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "lr must be positive");
  EXPECT_EQ(to_grpc_status(absl::NotFoundError("x")).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(to_grpc_status(absl::FailedPreconditionError("x")).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(to_grpc_status(absl::OkStatus()).ok());
}

absl::Status fails_early() {
  TANDEM_RETURN_IF_ERROR(absl::NotFoundError("first"));
  return absl::InternalError("not reached");
}

TEST(ReturnIfError, ReturnsTheFirstError) {
  const auto status = fails_early();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "first");
}

TEST(StatusFromExceptions, TurnsExceptionsIntoInternal) {
  const auto status =
      status_from_exceptions([]() -> absl::Status { throw std::runtime_error("boom"); });
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(status.message(), "boom");
  EXPECT_TRUE(status_from_exceptions([] { return absl::OkStatus(); }).ok());
}

}  // namespace
}  // namespace tandem::server
