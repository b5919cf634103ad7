// `tandem train SPEC --nproc N`: the local launcher (torchrun's role).
//
// Starts N ranks of `tandem train SPEC` as child processes on this host
// with torchrun's environment (MASTER_ADDR=127.0.0.1, MASTER_PORT, WORLD_SIZE,
// RANK, LOCAL_RANK), Gloo over loopback. Like torchrun's agent, the launcher
// serves the rendezvous TCPStore itself (TORCHELASTIC_USE_AGENT_STORE=True),
// a fresh one for every attempt. Rank 0's output is
// this process's; rank r > 0 writes to LOG_DIR/rank-r.log, and each rank's
// pid is in LOG_DIR/rank-r.pid while it runs. When a rank fails (non-zero
// exit, or killed by a signal), the others are stopped (SIGTERM, then
// SIGKILL after a grace period) and the whole group is started again, up to
// `max_restarts` times; the job resumes from its last checkpoint. SIGINT or
// SIGTERM to the launcher stops every rank. Children die with the launcher
// (PR_SET_PDEATHSIG), so no rank outlives it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace tandem::jobs {

struct LaunchOptions {
  /// Ranks to start (>= 1).
  int nproc = 1;
  /// Group restarts after a failed rank (torchrun: --max-restarts).
  int max_restarts = 3;
  /// Arguments after the executable for every rank ("train", SPEC, ...).
  std::vector<std::string> rank_args;
  /// Where rank-r.log and rank-r.pid go (created).
  std::filesystem::path log_dir;
  /// How long a stopped rank gets between SIGTERM and SIGKILL.
  std::chrono::milliseconds grace = std::chrono::seconds(10);
};

/// A child process to start: `exe args...` with extra environment variables,
/// stdout and stderr appended to `log` (empty: inherited). It dies with its
/// parent (PR_SET_PDEATHSIG) and gets default SIGINT/SIGTERM handling.
struct ChildProcess {
  std::string exe;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::filesystem::path log;
};

/// fork + exec of `child`; returns its pid. Throws std::runtime_error when
/// fork fails (exec failures exit the child with 127 and a message).
pid_t spawn_child(const ChildProcess& child);

/// This program's path, to start more of it (/proc/self/exe; when the
/// binary was replaced while running, the new file at the same path).
std::string self_executable();

/// SIGTERM to `pid` (unless it already ended), SIGKILL once `grace` has
/// passed; reaps it and returns its waitpid status.
int terminate_child(pid_t pid, std::chrono::milliseconds grace);

/// A loopback TCP port nobody listens on now (bound once, then released),
/// for services started as local processes.
int free_loopback_port();

/// "exited with code 3", "was killed by signal 9 (Killed)": a waitpid status.
std::string describe_exit(int status);
/// The exit code of a waitpid status (128 + signal for a signal).
int exit_code_of_status(int status);

/// Runs the group to completion. Returns 0 when every rank of one attempt
/// exited 0, else the exit code of the last failure (128 + signal for a
/// rank killed by a signal), or 130 when interrupted.
int launch_local_ranks(const LaunchOptions& options);

}  // namespace tandem::jobs
