// The subcommands every `tandem` binary has: the clients of a running Tandem
// deployment (submit, status, watch, cancel, rank, health). They need no
// LibTorch, so the `tandem` front binary (client/front.h) runs them without
// loading it; the other subcommands run in `tandem-engine`.
#pragma once

#include <functional>

namespace CLI {  // NOLINT(readability-identifier-naming): CLI11's namespace
class App;
}  // namespace CLI

namespace tandem::client {

/// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

/// Each subcommand registers itself on the app and sets the action to run
/// after parsing; the action returns the exit code.
using Action = std::function<int()>;

/// submit, status, watch, cancel, rank: clients of the tandem.v1.Tandem service.
void add_client_commands(CLI::App& app, Action& action);
/// health: a grpc.health.v1 check of any Tandem process.
void add_health_command(CLI::App& app, Action& action);

}  // namespace tandem::client
