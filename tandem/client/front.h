// `tandem`, the front binary users run. It links no LibTorch: the client
// subcommands (submit, status, watch, cancel, rank, health; client/command.h)
// run in this process and start in milliseconds, and every other command line
// (train, server, worker, demo, --help, ...) is handed with execv, the same
// process and arguments, to `tandem-engine`, which has every subcommand.
#pragma once

#include <string>
#include <vector>

namespace tandem::client {

/// Where `tandem-engine` is for a front binary at `self`: $TANDEM_ENGINE when
/// set, else `tandem-engine` next to `self` (the build tree), else
/// `../libexec/tandem/tandem-engine` from `self`'s folder (an install). Empty
/// when none of them is an executable file; `looked_in` lists the candidates.
std::string find_engine(const std::string& self, std::vector<std::string>* looked_in = nullptr);

/// Runs the command line `args` (args[0] the program name): a client
/// subcommand here, anything else in the engine (does not return then).
/// Returns the exit code; 1 with a message naming the paths looked in when
/// the engine is missing.
int run_front(const std::vector<std::string>& args);

}  // namespace tandem::client
