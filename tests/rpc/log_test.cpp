#include "tandem/rpc/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <regex>
#include <string>

namespace tandem::rpc {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

/// What the log wrote to stdout while `body` ran.
template <typename Body>
std::string logged(Body&& body) {
  ::testing::internal::CaptureStdout();
  body();
  return ::testing::internal::GetCapturedStdout();
}

TEST(Log, LinesCarryTimeLevelAndProcessOnStdout) {
  ::unsetenv("TANDEM_LOG_LEVEL");
  const std::string out = logged([] {
    init_logging("tandem test");
    log_info("job 1 SUCCEEDED");
    log_warn("worker w lost: no heartbeat");
    log_error("job 2: disk full");
  });
  const std::regex line(
      R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} (info|warning|error) tandem test: .+)");
  int lines = 0;
  for (size_t start = 0, end; (end = out.find('\n', start)) != std::string::npos;
       start = end + 1, ++lines) {
    EXPECT_TRUE(std::regex_match(out.substr(start, end - start), line))
        << out.substr(start, end - start);
  }
  EXPECT_EQ(lines, 3) << out;
  EXPECT_THAT(out, HasSubstr("info tandem test: job 1 SUCCEEDED"));
  EXPECT_THAT(out, HasSubstr("warning tandem test: worker w lost: no heartbeat"));
  EXPECT_THAT(out, HasSubstr("error tandem test: job 2: disk full"));
}

TEST(Log, TheLevelComesFromTheEnvironmentAndABadOneIsReported) {
  ::setenv("TANDEM_LOG_LEVEL", "warn", 1);
  const std::string quiet = logged([] {
    init_logging("tandem test");
    log_info("not shown");
    log_warn("shown");
  });
  EXPECT_THAT(quiet, Not(HasSubstr("not shown")));
  EXPECT_THAT(quiet, HasSubstr("shown"));
  ::setenv("TANDEM_LOG_LEVEL", "loud", 1);
  const std::string bad = logged([] {
    init_logging("tandem test");
    log_info("at info");
  });
  EXPECT_THAT(bad, HasSubstr("TANDEM_LOG_LEVEL=loud is not one of"));
  EXPECT_THAT(bad, HasSubstr("at info"));
  ::unsetenv("TANDEM_LOG_LEVEL");
}

}  // namespace
}  // namespace tandem::rpc
