// Test helper: runs the real `tandem` binary as a child process.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace tandem::cli::testing {

struct Child {
  pid_t pid = -1;
  std::string stdout_path;
  std::string stderr_path;
};

struct Finished {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;
  std::string err;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

/// Writes `text` to `path` (a spec, a list) for a test.
inline void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

inline std::string scratch_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("tandem-cli-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

/// Starts `tandem args...` with stdout and stderr going to scratch files.
inline Child spawn_tandem(const std::vector<std::string>& args, const std::string& tag) {
  Child child;
  child.stdout_path = scratch_path(tag + ".out");
  child.stderr_path = scratch_path(tag + ".err");
  std::vector<std::string> argv_strings{TANDEM_CLI_PATH};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(argv_strings.size() + 1);
  for (auto& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, child.stdout_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, child.stderr_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (posix_spawn(&child.pid, argv[0], &actions, nullptr, argv.data(), environ) != 0) {
    child.pid = -1;
  }
  posix_spawn_file_actions_destroy(&actions);
  return child;
}

/// Waits for the child (killing it after `timeout`) and collects its output.
inline Finished wait_for(const Child& child,
                         std::chrono::seconds timeout = std::chrono::seconds(120)) {
  Finished finished;
  if (child.pid < 0) return finished;
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (::waitpid(child.pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > give_up) {
      ::kill(child.pid, SIGKILL);
      ::waitpid(child.pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  finished.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  finished.out = read_file(child.stdout_path);
  finished.err = read_file(child.stderr_path);
  std::filesystem::remove(child.stdout_path);
  std::filesystem::remove(child.stderr_path);
  return finished;
}

/// Runs `tandem args...` to completion.
inline Finished run_tandem(const std::vector<std::string>& args, const std::string& tag) {
  return wait_for(spawn_tandem(args, tag));
}

}  // namespace tandem::cli::testing
