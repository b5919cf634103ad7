// `tandem health`: asks a Tandem process for its grpc.health.v1 status; exit
// 0 when SERVING (usable as a container health check).
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "tandem/client/command.h"
#include "tandem/client/health_client.h"

namespace tandem::client {
namespace {

struct HealthFlags {
  std::string target = "127.0.0.1:50051";
  std::string service;
  double timeout_s = 2.0;
};

int run_health(const HealthFlags& flags) {
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(flags.timeout_s * 1000));
  auto answer = check_health(flags.target, flags.service, timeout);
  if (!answer.ok()) {
    std::cerr << "tandem health: " << answer.status().message() << "\n";
    return kExitFailure;
  }
  std::cout << to_string(*answer) << "\n";
  return *answer == ServingStatus::kServing ? kExitOk : kExitFailure;
}

}  // namespace

void add_health_command(CLI::App& app, Action& action) {
  auto flags = std::make_shared<HealthFlags>();
  auto* command = app.add_subcommand("health", "Check a Tandem process's gRPC health status");
  command->add_option("--target", flags->target, "host:port of the process")->capture_default_str();
  command->add_option("--service", flags->service, "service name (empty: the whole server)");
  command->add_option("--timeout", flags->timeout_s, "seconds to wait for the answer")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->callback([flags, &action] { action = [flags] { return run_health(*flags); }; });
}

}  // namespace tandem::client
