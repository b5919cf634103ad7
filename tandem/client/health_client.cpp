#include "tandem/client/health_client.h"

#include <grpc/health/v1/health.grpc.pb.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <thread>

#include "tandem/rpc/channel.h"
#include "tandem/rpc/status.h"

namespace tandem::client {

const char* to_string(ServingStatus status) {
  switch (status) {
    case ServingStatus::kServing: return "SERVING";
    case ServingStatus::kNotServing: return "NOT_SERVING";
    case ServingStatus::kServiceUnknown: return "SERVICE_UNKNOWN";
    case ServingStatus::kUnknown: break;
  }
  return "UNKNOWN";
}

absl::StatusOr<ServingStatus> check_health(const std::string& target, const std::string& service,
                                           std::chrono::milliseconds timeout) {
  if (target.empty()) return absl::InvalidArgumentError("health check target is empty");
  // TLS when TANDEM_TLS_CA (and for mutual TLS TANDEM_TLS_CERT/KEY) is set:
  // a TLS listener's health service answers only over TLS. The health
  // service needs no token, so none is sent.
  rpc::ClientSecurity security = rpc::ClientSecurity::from_environment();
  security.token.clear();
  auto channel = rpc::make_channel(target, security);
  if (!channel.ok()) {
    return absl::Status(channel.status().code(), "health check of " + target + ": " +
                                                     std::string(channel.status().message()));
  }
  auto stub = grpc::health::v1::Health::NewStub(*channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return rpc::from_grpc_status(status, "health check of " + target);
  switch (response.status()) {
    case grpc::health::v1::HealthCheckResponse::SERVING: return ServingStatus::kServing;
    case grpc::health::v1::HealthCheckResponse::NOT_SERVING: return ServingStatus::kNotServing;
    case grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN:
      return ServingStatus::kServiceUnknown;
    default: return ServingStatus::kUnknown;
  }
}

absl::Status wait_until_serving(const std::string& target, std::chrono::milliseconds deadline,
                                const std::string& service) {
  const auto give_up = std::chrono::steady_clock::now() + deadline;
  absl::Status last = absl::DeadlineExceededError("no health check was made");
  while (std::chrono::steady_clock::now() < give_up) {
    auto answer = check_health(target, service, std::chrono::milliseconds(500));
    // A bad target or TLS file does not get better by waiting.
    if (answer.status().code() == absl::StatusCode::kInvalidArgument) return answer.status();
    if (answer.ok() && *answer == ServingStatus::kServing) return absl::OkStatus();
    last = answer.ok() ? absl::UnavailableError(target + " answers " + to_string(*answer))
                       : answer.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return last;
}

}  // namespace tandem::client
