// Test helper: runs Debian's /usr/bin/python3 (with python3-torch) for the
// tests that compare against Python directly.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <string>

namespace tandem::testing {

inline const char* kPython = "/usr/bin/python3";

/// Whether /usr/bin/python3 can import `modules` (e.g. "torch, torchvision").
inline bool python_has(const std::string& modules) {
  const std::string command = std::string(kPython) + " -c 'import " + modules + "' >/dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

/// Runs `/usr/bin/python3 args`; returns the exit status (0 on success).
inline int run_python(const std::string& args) {
  const std::string command = std::string(kPython) + " " + args;
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace tandem::testing
