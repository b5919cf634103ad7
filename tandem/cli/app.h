// The `tandem` command line as `tandem-engine` runs it: one subcommand per
// process role or client action (server, worker, train, demo, submit, ...).
// The `tandem` front binary (client/front.h) runs the client actions itself
// and hands every other command line to this one.
#pragma once

#include <string>
#include <vector>

#include "tandem/client/command.h"

namespace tandem::cli {

/// Exit codes and the action type are the client library's (client/command.h).
using client::Action;
using client::kExitFailure;
using client::kExitOk;
using client::kExitUsage;

/// Version string printed by `tandem --version`.
const char* version();

/// Runs the command line `args` (args[0] is the program name) and returns the
/// process exit code: 0 on success, 1 when the command failed, 2 for a usage
/// error (unknown subcommand or option, bad value).
int run(const std::vector<std::string>& args);

/// Each subcommand registers itself on the app and sets the action to run
/// after parsing; the action returns the exit code.
void add_server_command(CLI::App& app, Action& action);
void add_demo_command(CLI::App& app, Action& action);
void add_cluster_command(CLI::App& app, Action& action);
void add_dataset_command(CLI::App& app, Action& action);
void add_train_command(CLI::App& app, Action& action);
void add_bench_command(CLI::App& app, Action& action);
void add_synth_command(CLI::App& app, Action& action);
void add_worker_command(CLI::App& app, Action& action);

}  // namespace tandem::cli
