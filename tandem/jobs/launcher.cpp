#include "tandem/jobs/launcher.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <thread>

namespace tandem::jobs {
namespace {
namespace fs = std::filesystem;

std::atomic<int> g_stop_signal{0};

extern "C" void on_stop_signal(int signal) {
  g_stop_signal.store(signal);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int signal = WTERMSIG(status);
    return "was killed by signal " + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
  }
  return "stopped (status " + std::to_string(status) + ")";
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

struct Rank {
  pid_t pid = -1;
  bool running = false;
  int status = 0;
};

// Starts rank `rank` of `world` with the torchrun variables; its output goes
// to the log (rank > 0).
pid_t start_rank(const LaunchOptions& options, const std::string& exe, int rank, int port,
                 int attempt, int threads) {
  ChildProcess child;
  child.exe = exe;
  child.args = options.rank_args;
  if (rank > 0) child.log = options.log_dir / ("rank-" + std::to_string(rank) + ".log");
  child.env = {{"MASTER_ADDR", "127.0.0.1"},
               {"MASTER_PORT", std::to_string(port)},
               {"WORLD_SIZE", std::to_string(options.nproc)},
               {"RANK", std::to_string(rank)},
               {"LOCAL_RANK", std::to_string(rank)},
               {"TORCHELASTIC_USE_AGENT_STORE", "True"},  // the launcher serves the store
               {"TANDEM_RESTART", std::to_string(attempt)}};
  if (threads > 0) child.env.emplace_back("OMP_NUM_THREADS", std::to_string(threads));
  return spawn_child(child);
}

// Reaps any finished rank without blocking; returns its index or -1.
int reap(std::vector<Rank>& ranks) {
  int status = 0;
  const pid_t pid = ::waitpid(-1, &status, WNOHANG);
  if (pid <= 0) return -1;
  for (size_t r = 0; r < ranks.size(); ++r) {
    if (ranks[r].pid == pid && ranks[r].running) {
      ranks[r].running = false;
      ranks[r].status = status;
      return static_cast<int>(r);
    }
  }
  return -1;
}

bool any_running(const std::vector<Rank>& ranks) {
  for (const auto& r : ranks) {
    if (r.running) return true;
  }
  return false;
}

// SIGTERM to every running rank, SIGKILL to those still running after the
// grace period; returns when all are reaped.
void stop_all(std::vector<Rank>& ranks, std::chrono::milliseconds grace) {
  for (const auto& r : ranks) {
    if (r.running) ::kill(r.pid, SIGTERM);
  }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (any_running(ranks)) {
    if (reap(ranks) >= 0) continue;
    if (std::chrono::steady_clock::now() >= deadline) {
      for (const auto& r : ranks) {
        if (r.running) ::kill(r.pid, SIGKILL);
      }
      for (auto& r : ranks) {
        if (!r.running) continue;
        int status = 0;
        ::waitpid(r.pid, &status, 0);
        r.running = false;
        r.status = status;
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

pid_t spawn_child(const ChildProcess& child) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid > 0) return pid;
  // Child: only async-signal-safe work until exec, mostly.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() == 1) ::_exit(127);  // the parent already died
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  if (!child.log.empty()) {
    const int fd = ::open(child.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::close(fd);
    }
  }
  for (const auto& [name, value] : child.env) ::setenv(name.c_str(), value.c_str(), 1);
  std::vector<std::string> args = {child.exe};
  args.insert(args.end(), child.args.begin(), child.args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(child.exe.c_str(), argv.data());
  std::fprintf(stderr, "tandem: cannot start %s: %s\n", child.exe.c_str(), std::strerror(errno));
  ::_exit(127);
}

int terminate_child(pid_t pid, std::chrono::milliseconds grace) {
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) == pid) return status;
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (::waitpid(pid, &status, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status;
}

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  static_cast<void>(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string self_executable() {
  std::string path = fs::read_symlink("/proc/self/exe").string();
  const std::string deleted = " (deleted)";
  if (path.size() > deleted.size() &&
      path.compare(path.size() - deleted.size(), deleted.size(), deleted) == 0) {
    path.resize(path.size() - deleted.size());  // rebuilt under us: run the new one
  }
  return path;
}

std::string describe_exit(int status) {
  return describe(status);
}

int exit_code_of_status(int status) {
  return exit_code_of(status);
}

int launch_local_ranks(const LaunchOptions& options) {
  if (options.nproc < 1) throw std::invalid_argument("--nproc must be >= 1");
  if (options.max_restarts < 0) throw std::invalid_argument("--max-restarts must be >= 0");
  fs::create_directories(options.log_dir);
  const std::string exe = self_executable();
  // Each rank gets its share of the cores unless the user chose.
  int threads = 0;
  if (std::getenv("OMP_NUM_THREADS") == nullptr) {
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / options.nproc);
  }
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction previous_int {
  }, previous_term{};
  ::sigaction(SIGINT, &action, &previous_int);
  ::sigaction(SIGTERM, &action, &previous_term);
  g_stop_signal.store(0);

  int result = 1;
  for (int attempt = 0; attempt <= options.max_restarts; ++attempt) {
    // This attempt's rendezvous store, served here on a port the kernel
    // picks: every rank connects to it, and a restart gets a fresh one.
    c10d::TCPStoreOptions store_options;
    store_options.port = 0;
    store_options.isServer = true;
    store_options.numWorkers = options.nproc + 1;
    store_options.waitWorkers = false;
    c10d::TCPStore store("127.0.0.1", store_options);
    const int port = store.getPort();
    std::vector<Rank> ranks(static_cast<size_t>(options.nproc));
    try {
      for (int r = 0; r < options.nproc; ++r) {
        ranks[static_cast<size_t>(r)].pid = start_rank(options, exe, r, port, attempt, threads);
        ranks[static_cast<size_t>(r)].running = true;
        std::ofstream(options.log_dir / ("rank-" + std::to_string(r) + ".pid"))
            << ranks[static_cast<size_t>(r)].pid << "\n";
      }
    } catch (...) {
      stop_all(ranks, options.grace);  // the ranks already started (fork failed)
      throw;
    }
    std::cout << "tandem train: " << (attempt == 0 ? "started " : "restarted ") << options.nproc
              << " ranks on 127.0.0.1:" << port << " (gloo; ranks 1.. log to "
              << options.log_dir.string() << ")" << std::endl;
    int failed = -1;
    while (any_running(ranks)) {
      if (g_stop_signal.load() != 0) break;
      const int done = reap(ranks);
      if (done < 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      const int status = ranks[static_cast<size_t>(done)].status;
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        failed = done;
        break;
      }
    }
    if (g_stop_signal.load() != 0) {
      std::cerr << "tandem train: interrupted, stopping " << options.nproc << " ranks" << std::endl;
      stop_all(ranks, options.grace);
      result = 130;
      break;
    }
    if (failed < 0) {
      result = 0;
      break;
    }
    // Report the failed rank and any other that ended on its own meanwhile
    // (a peer's collective fails as soon as a rank dies).
    result = exit_code_of(ranks[static_cast<size_t>(failed)].status);
    std::vector<int> ended = {failed};
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (int done = reap(ranks); done >= 0; done = reap(ranks)) ended.push_back(done);
    for (const int r : ended) {
      const int status = ranks[static_cast<size_t>(r)].status;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
      std::cerr << "tandem train: rank " << r << " " << describe(status)
                << (r > 0
                        ? " (its log: " +
                              (options.log_dir / ("rank-" + std::to_string(r) + ".log")).string() +
                              ")"
                        : "")
                << std::endl;
    }
    if (any_running(ranks)) std::cerr << "tandem train: stopping the other ranks" << std::endl;
    stop_all(ranks, options.grace);
    if (attempt == options.max_restarts) {
      std::cerr << "tandem train: giving up after " << options.max_restarts << " restart"
                << (options.max_restarts == 1 ? "" : "s") << std::endl;
      break;
    }
    std::cerr << "tandem train: restarting all " << options.nproc
              << " ranks from the last checkpoint (restart " << attempt + 1 << " of "
              << options.max_restarts << ")" << std::endl;
  }
  for (int r = 0; r < options.nproc; ++r) {
    std::error_code ignored;
    fs::remove(options.log_dir / ("rank-" + std::to_string(r) + ".pid"), ignored);
  }
  ::sigaction(SIGINT, &previous_int, nullptr);
  ::sigaction(SIGTERM, &previous_term, nullptr);
  return result;
}

}  // namespace tandem::jobs
