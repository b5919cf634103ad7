// Client side of grpc.health.v1.Health: `tandem health`, readiness waits in
// tests and the docker-compose health checks use it.
#pragma once

#include <chrono>
#include <string>

#include <absl/status/statusor.h>

namespace tandem::client {

/// The answer of one Check call.
enum class ServingStatus { kUnknown, kServing, kNotServing, kServiceUnknown };

const char* to_string(ServingStatus status);

/// Calls Health.Check on `target` ("host:port") for `service` ("" = the
/// whole server). A server that is down or slower than `timeout` gives
/// UNAVAILABLE / DEADLINE_EXCEEDED; an unknown service gives NOT_FOUND.
absl::StatusOr<ServingStatus> check_health(
    const std::string& target, const std::string& service = "",
    std::chrono::milliseconds timeout = std::chrono::seconds(2));

/// Polls check_health until it answers SERVING or `deadline` passes; returns
/// the last error otherwise.
absl::Status wait_until_serving(const std::string& target, std::chrono::milliseconds deadline,
                                const std::string& service = "");

}  // namespace tandem::client
