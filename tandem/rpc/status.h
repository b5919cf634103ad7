// The one bridge between our status values (absl::Status) and gRPC's, shared
// by the server, the clustering service and the clients (issue 17).
//
// Service code returns absl::Status / absl::StatusOr and propagates them with
// TANDEM_RETURN_IF_ERROR; tensor code throws c10::Error, which is caught at
// the RPC or training-step boundary and turned into a status there.
#pragma once

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <grpcpp/support/status.h>

#include <string>

/// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define TANDEM_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status tandem_status_ = (expr);          \
    if (!tandem_status_.ok()) return tandem_status_; \
  } while (false)

namespace tandem::rpc {

/// Our status as gRPC's (the canonical codes are shared; the message kept).
grpc::Status to_grpc_status(const absl::Status& status);
/// gRPC's status as ours, the message prefixed with `context` and ": " when
/// `context` is not empty ("health check of host:port: ...").
absl::Status from_grpc_status(const grpc::Status& status, const std::string& context = "");
/// "INVALID_ARGUMENT", "UNAUTHENTICATED", ... (the canonical code names).
std::string code_name(grpc::StatusCode code);

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

}  // namespace tandem::rpc
