#include "tandem/rpc/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

namespace tandem::rpc {

void init_logging(const std::string& process) {
  spdlog::drop("tandem");  // a second call replaces the first's logger
  auto logger = spdlog::stdout_logger_mt("tandem");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l " + process + ": %v");
  logger->flush_on(spdlog::level::trace);
  spdlog::level::level_enum level = spdlog::level::info;
  std::string unknown;
  if (const char* wanted = std::getenv("TANDEM_LOG_LEVEL"); wanted != nullptr && *wanted) {
    level = spdlog::level::from_str(wanted);
    // from_str answers "off" for a word it does not know.
    if (level == spdlog::level::off && std::string(wanted) != "off") {
      unknown = wanted;
      level = spdlog::level::info;
    }
  }
  logger->set_level(level);
  spdlog::set_default_logger(logger);
  if (!unknown.empty()) {
    spdlog::warn(
        "TANDEM_LOG_LEVEL={} is not one of trace, debug, info, warn, error, off; "
        "logging at info",
        unknown);
  }
}

}  // namespace tandem::rpc

namespace tandem::rpc {

void log_info(const std::string& message) {
  spdlog::info("{}", message);
}

void log_warn(const std::string& message) {
  spdlog::warn("{}", message);
}

void log_error(const std::string& message) {
  spdlog::error("{}", message);
}

}  // namespace tandem::rpc
