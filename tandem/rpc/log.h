// The log of Tandem's long-running processes (`tandem server`, `tandem
// cluster`, `tandem worker`), written through spdlog: one line per event on
// stdout, warnings and errors included, so that one file tells what
// happened in order ("2026-12-06T22:40:01.123 info tandem server: job ...
// SUCCEEDED"). The messages are composed by the caller (absl::StrCat):
// spdlog's fmt must not meet the one LibTorch bundles in the same
// translation unit, so only rpc/log.cpp includes spdlog.
#pragma once

#include <string>

namespace tandem::rpc {

/// Makes the log write `process`-prefixed lines to stdout, flushed at every
/// line (logs are read while the process runs). The level comes from
/// TANDEM_LOG_LEVEL (trace, debug, info, warn, error, off; default info); an
/// unknown value is reported and info is used. Before it is called, the
/// functions below write unprefixed lines to stdout.
void init_logging(const std::string& process);

void log_info(const std::string& message);
void log_warn(const std::string& message);
void log_error(const std::string& message);

}  // namespace tandem::rpc
