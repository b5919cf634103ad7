// The `tandem` command line: one binary, one subcommand per process role or
// client action (server, health, demo, ...).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace CLI {  // NOLINT(readability-identifier-naming): CLI11's namespace
class App;
}  // namespace CLI

namespace tandem::cli {

/// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

/// Version string printed by `tandem --version`.
const char* version();

/// Runs the command line `args` (args[0] is the program name) and returns the
/// process exit code: 0 on success, 1 when the command failed, 2 for a usage
/// error (unknown subcommand or option, bad value).
int run(const std::vector<std::string>& args);

/// Each subcommand registers itself on the app and sets the action to run
/// after parsing; the action returns the exit code.
using Action = std::function<int()>;
void add_server_command(CLI::App& app, Action& action);
void add_health_command(CLI::App& app, Action& action);
void add_demo_command(CLI::App& app, Action& action);
void add_cluster_command(CLI::App& app, Action& action);
void add_dataset_command(CLI::App& app, Action& action);
void add_train_command(CLI::App& app, Action& action);
void add_bench_command(CLI::App& app, Action& action);
void add_synth_command(CLI::App& app, Action& action);
void add_worker_command(CLI::App& app, Action& action);
/// submit, status, watch, cancel, rank: clients of the tandem.v1.Tandem service.
void add_client_commands(CLI::App& app, Action& action);

}  // namespace tandem::cli
