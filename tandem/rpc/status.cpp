#include "tandem/rpc/status.h"

#include <string>

namespace tandem::rpc {

grpc::Status to_grpc_status(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status from_grpc_status(const grpc::Status& status, const std::string& context) {
  if (status.ok()) return absl::OkStatus();
  const std::string message =
      context.empty() ? status.error_message() : context + ": " + status.error_message();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), message);
}

std::string code_name(grpc::StatusCode code) {
  // absl spells the canonical names; codes outside them are UNKNOWN, as in gRPC.
  const auto absl_code = static_cast<absl::StatusCode>(code);
  const std::string name = absl::StatusCodeToString(absl_code);
  return name.empty() ? "UNKNOWN" : name;
}

}  // namespace tandem::rpc
