#include <gtest/gtest.h>

#include <filesystem>

#include "run_tandem.h"

namespace tandem::cli {
namespace {

using testing::run_tandem;
using testing::scratch_path;

TEST(DemoCommand, RunsEveryStepAndSaysWhatItRan) {
  const std::string workdir = scratch_path("demo");
  auto result = run_tandem(
      {"demo", "--workdir", workdir, "--identities", "4", "--images-per-identity", "16"}, "demo");
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  for (const char* component :
       {"LibTorch", "Gloo all-reduce", "FAISS: k-means", "SQLite", "gRPC: health"}) {
    EXPECT_NE(result.out.find(component), std::string::npos) << component;
  }
  EXPECT_NE(result.out.find("every step passed"), std::string::npos) << result.out;
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(workdir) / "jobs.db"));
  std::filesystem::remove_all(workdir);
}

TEST(DemoCommand, RejectsOutOfRangeSizes) {
  auto result = run_tandem({"demo", "--identities", "1"}, "demo-bad");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--identities"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace tandem::cli
