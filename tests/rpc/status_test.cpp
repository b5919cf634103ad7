#include "tandem/rpc/status.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace tandem::rpc {
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

TEST(FromGrpcStatus, KeepsCodeAndMessageWithTheContext) {
  const auto plain = from_grpc_status(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no token"));
  EXPECT_EQ(plain.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(plain.message(), "no token");
  const auto framed =
      from_grpc_status(grpc::Status(grpc::StatusCode::UNAVAILABLE, "refused"), "health of x:1");
  EXPECT_EQ(framed.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(framed.message(), "health of x:1: refused");
  EXPECT_TRUE(from_grpc_status(grpc::Status::OK, "ignored").ok());
  // A round trip keeps every canonical code.
  for (int code = 1; code <= 16; ++code) {
    const grpc::Status wire(static_cast<grpc::StatusCode>(code), "m");
    EXPECT_EQ(static_cast<int>(to_grpc_status(from_grpc_status(wire)).error_code()), code);
  }
}

TEST(CodeName, CanonicalNames) {
  EXPECT_EQ(code_name(grpc::StatusCode::OK), "OK");
  EXPECT_EQ(code_name(grpc::StatusCode::INVALID_ARGUMENT), "INVALID_ARGUMENT");
  EXPECT_EQ(code_name(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
  EXPECT_EQ(code_name(grpc::StatusCode::RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(code_name(static_cast<grpc::StatusCode>(99)), "UNKNOWN");
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
}  // namespace tandem::rpc
