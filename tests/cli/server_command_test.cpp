#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <filesystem>

#include "run_tandem.h"
#include "tandem/server/health_client.h"

namespace tandem::cli {
namespace {

using testing::run_tandem;
using testing::scratch_path;
using testing::spawn_tandem;
using testing::wait_for;

// Finds a free loopback port by binding a throw-away gRPC-free socket.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  static_cast<void>(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

TEST(ServerCommand, ServesHealthAndStopsCleanlyOnSigterm) {
  const std::string db = scratch_path("server.db");
  const std::string target = "127.0.0.1:" + std::to_string(free_port());
  auto child = spawn_tandem({"server", "--listen", target, "--db", db}, "server");
  ASSERT_GT(child.pid, 0);
  const auto ready = server::wait_until_serving(target, std::chrono::seconds(30));
  EXPECT_TRUE(ready.ok()) << ready;
  ::kill(child.pid, SIGTERM);
  auto result = wait_for(child, std::chrono::seconds(30));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("listening on " + target), std::string::npos) << result.out;
  EXPECT_TRUE(std::filesystem::exists(db));
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
}

TEST(ServerCommand, UnopenableJobStoreFailsNamingThePath) {
  const std::string db = "/nonexistent-dir/tandem/jobs.db";
  auto result = run_tandem({"server", "--listen", "127.0.0.1:0", "--db", db}, "server-bad-db");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find(db), std::string::npos) << result.err;
}

}  // namespace
}  // namespace tandem::cli
