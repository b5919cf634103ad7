// Test helper: runs the project's Python (the venv scripts/setup makes, with
// the same torch wheel whose LibTorch the tests link) for the tests that
// compare against Python directly. CMake passes its path as TANDEM_PYTHON.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <string>

#ifndef TANDEM_PYTHON
#error "TANDEM_PYTHON (the project venv's python) must be defined by the build"
#endif

namespace tandem::testing {

inline const char* kPython = TANDEM_PYTHON;

/// Whether the project's Python can import `modules` (e.g. "torch, torchvision").
inline bool python_has(const std::string& modules) {
  const std::string command = std::string(kPython) + " -c 'import " + modules + "' >/dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

/// Runs `python args`; returns the exit status (0 on success).
inline int run_python(const std::string& args) {
  const std::string command = std::string(kPython) + " " + args;
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace tandem::testing
