#include "tandem/server/grpc_server.h"

#include <gtest/gtest.h>

#include "tandem/client/health_client.h"

namespace tandem::server {
namespace {

using client::check_health;
using client::ServingStatus;
using client::wait_until_serving;

// One server per suite, on a free loopback port, ready before any test runs.
class GrpcServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    GrpcOptions options;
    options.address = "127.0.0.1:0";
    auto created = GrpcServer::Create(options, {}, {"tandem.v1.Tandem"});
    ASSERT_TRUE(created.ok()) << created.status();
    server_ = created->release();
    ASSERT_TRUE(wait_until_serving(server_->target(), std::chrono::seconds(10)).ok());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static GrpcServer* server_;
};
GrpcServer* GrpcServerTest::server_ = nullptr;

TEST_F(GrpcServerTest, BindsAFreePortWhenAskedForZero) {
  EXPECT_GT(server_->bound_port(), 0);
  EXPECT_EQ(server_->target(), "127.0.0.1:" + std::to_string(server_->bound_port()));
}

TEST_F(GrpcServerTest, HealthCheckRoundTripSaysServing) {
  auto answer = check_health(server_->target());
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(*answer, ServingStatus::kServing);
}

TEST_F(GrpcServerTest, NamedServicesAreServing) {
  auto answer = check_health(server_->target(), "tandem.v1.Tandem");
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(*answer, ServingStatus::kServing);
}

TEST_F(GrpcServerTest, UnknownServiceIsNotFound) {
  auto answer = check_health(server_->target(), "no.such.Service");
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kNotFound);
}

TEST(GrpcServer, PortInUseIsUnavailableNamingTheAddress) {
  GrpcOptions options;
  options.address = "127.0.0.1:0";
  auto first = GrpcServer::Create(options, {});
  ASSERT_TRUE(first.ok());
  options.address = (*first)->target();
  auto second = GrpcServer::Create(options, {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(second.status().message()).find(options.address), std::string::npos);
}

TEST(GrpcServer, MalformedAddressIsInvalid) {
  for (const char* address : {"no-port", "host:", ":50051", "host:12ab", "host:99999"}) {
    GrpcOptions options;
    options.address = address;
    auto server = GrpcServer::Create(options, {});
    ASSERT_FALSE(server.ok()) << address;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << address;
  }
}

TEST(GrpcServer, StopsServingAfterShutdown) {
  GrpcOptions options;
  options.address = "127.0.0.1:0";
  auto server = GrpcServer::Create(options, {});
  ASSERT_TRUE(server.ok());
  const std::string target = (*server)->target();
  (*server)->Shutdown(std::chrono::milliseconds(100));
  auto answer = check_health(target, "", std::chrono::milliseconds(500));
  EXPECT_FALSE(answer.ok() && *answer == ServingStatus::kServing);
}

}  // namespace
}  // namespace tandem::server
