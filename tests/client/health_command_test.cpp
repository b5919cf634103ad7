#include <gtest/gtest.h>

#include "support/run_tandem.h"
#include "tandem/server/grpc_server.h"

namespace tandem::client {
namespace {

using cli::testing::run_tandem;

TEST(HealthCommand, PrintsServingAndExitsZero) {
  server::GrpcOptions options;
  options.address = "127.0.0.1:0";
  auto grpc_server = server::GrpcServer::Create(options, {});
  ASSERT_TRUE(grpc_server.ok());
  auto result = run_tandem({"health", "--target", (*grpc_server)->target()}, "health");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "SERVING\n");
}

TEST(HealthCommand, UnreachableTargetExitsOneWithTheTarget) {
  auto result =
      run_tandem({"health", "--target", "127.0.0.1:1", "--timeout", "0.5"}, "health-down");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("127.0.0.1:1"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace tandem::client
