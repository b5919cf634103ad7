// Status values of the service code and the one conversion to grpc::Status.
//
// Service code returns absl::Status / absl::StatusOr and propagates them with
// TANDEM_RETURN_IF_ERROR; tensor code throws c10::Error, which is caught at
// the RPC or training-step boundary and turned into a status there.
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <grpcpp/support/status.h>

/// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define TANDEM_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status tandem_status_ = (expr);          \
    if (!tandem_status_.ok()) return tandem_status_; \
  } while (false)

namespace tandem::server {

/// The single mapping from our status values to gRPC's (codes are shared).
grpc::Status to_grpc_status(const absl::Status& status);

/// Runs `body`, turning an escaping exception into INTERNAL (c10::Error,
/// std::exception) with its message, so that no RPC handler ever throws.
template <typename Body>
absl::Status status_from_exceptions(Body&& body) {
  try {
    return body();
  } catch (const std::exception& error) {
    return absl::InternalError(error.what());
  } catch (...) {
    return absl::InternalError("unknown exception");
  }
}

}  // namespace tandem::server
