#include "tandem/client/health_client.h"

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tandem::client {
namespace {

// A loopback port with nothing listening on it.
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  static_cast<void>(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

TEST(CheckHealth, NobodyListeningIsAnErrorNotAHang) {
  const std::string target = "127.0.0.1:" + std::to_string(closed_port());
  auto answer = check_health(target, "", std::chrono::milliseconds(300));
  ASSERT_FALSE(answer.ok());
  EXPECT_TRUE(answer.status().code() == absl::StatusCode::kUnavailable ||
              answer.status().code() == absl::StatusCode::kDeadlineExceeded)
      << answer.status();
  EXPECT_NE(std::string(answer.status().message()).find(target), std::string::npos);
}

TEST(CheckHealth, EmptyTargetIsInvalid) {
  EXPECT_EQ(check_health("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WaitUntilServing, GivesUpAtTheDeadline) {
  const std::string target = "127.0.0.1:" + std::to_string(closed_port());
  const auto start = std::chrono::steady_clock::now();
  auto status = wait_until_serving(target, std::chrono::milliseconds(400));
  EXPECT_FALSE(status.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(ServingStatusNames, AreTheWireNames) {
  EXPECT_STREQ(to_string(ServingStatus::kServing), "SERVING");
  EXPECT_STREQ(to_string(ServingStatus::kNotServing), "NOT_SERVING");
  EXPECT_STREQ(to_string(ServingStatus::kServiceUnknown), "SERVICE_UNKNOWN");
}

}  // namespace
}  // namespace tandem::client
