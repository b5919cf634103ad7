#include "tandem/client/front.h"

#include <unistd.h>
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>

#include "tandem/client/command.h"

namespace tandem::client {
namespace fs = std::filesystem;

namespace {

bool is_executable_file(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error) && ::access(path.c_str(), X_OK) == 0;
}

std::string self_path(const std::string& argv0) {
  std::error_code error;
  const fs::path exe = fs::read_symlink("/proc/self/exe", error);
  return error ? argv0 : exe.string();
}

/// The client commands, the only ones this binary runs itself.
struct ClientApp {
  CLI::App app{"Tandem's client commands", "tandem"};
  Action action;
  ClientApp() {
    app.require_subcommand(1);
    app.fallthrough(false);
    add_client_commands(app, action);
    add_health_command(app, action);
  }
  bool has(const std::string& name) const {
    for (const CLI::App* sub : app.get_subcommands({})) {
      if (sub->check_name(name)) return true;
    }
    return false;
  }
  /// "submit, status, ... and health", for messages.
  std::string names() const {
    std::string out;
    const auto subcommands = app.get_subcommands({});
    for (size_t i = 0; i < subcommands.size(); ++i) {
      if (i > 0) out += i + 1 == subcommands.size() ? " and " : ", ";
      out += subcommands[i]->get_name();
    }
    return out;
  }
  /// Runs `args` (args[1] one of the client commands).
  int run(const std::vector<std::string>& args) {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    reversed.pop_back();  // program name
    try {
      app.parse(reversed);
    } catch (const CLI::ParseError& error) {
      if (error.get_exit_code() == 0) return app.exit(error);  // --help
      std::cerr << "tandem: " << error.what() << "\n\n" << app.get_subcommand(args[1])->help();
      return kExitUsage;
    }
    try {
      return action ? action() : kExitUsage;
    } catch (const std::exception& error) {
      std::cerr << "tandem: " << error.what() << "\n";
      return kExitFailure;
    }
  }
};

}  // namespace

std::string find_engine(const std::string& self, std::vector<std::string>* looked_in) {
  std::vector<fs::path> candidates;
  if (const char* forced = std::getenv("TANDEM_ENGINE"); forced != nullptr && *forced != '\0') {
    candidates.emplace_back(forced);
  } else {
    const fs::path folder = fs::path(self).parent_path();
    candidates.push_back(folder / "tandem-engine");
    candidates.push_back(folder / ".." / "libexec" / "tandem" / "tandem-engine");
  }
  for (const auto& candidate : candidates) {
    if (looked_in != nullptr) looked_in->push_back(candidate.lexically_normal().string());
    if (is_executable_file(candidate)) return candidate.lexically_normal().string();
  }
  return "";
}

int run_front(const std::vector<std::string>& args) {
  ClientApp client;
  if (args.size() > 1 && client.has(args[1])) {
    return client.run(args);
  }
  const std::string self = self_path(args.empty() ? "tandem" : args[0]);
  std::vector<std::string> looked_in;
  const std::string engine = find_engine(self, &looked_in);
  if (engine.empty()) {
    std::cerr << "tandem: cannot find tandem-engine, which runs every command but "
              << client.names() << "; looked in:";
    for (const auto& path : looked_in) std::cerr << " " << path;
    std::cerr << " (an incomplete installation? set TANDEM_ENGINE to its path)\n";
    return kExitFailure;
  }
  std::vector<std::string> engine_args = args;
  if (engine_args.empty()) engine_args.emplace_back();
  engine_args[0] = engine;
  std::vector<char*> argv;
  for (auto& a : engine_args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(engine.c_str(), argv.data());
  std::cerr << "tandem: cannot start " << engine << ": " << std::strerror(errno) << "\n";
  return kExitFailure;
}

}  // namespace tandem::client
