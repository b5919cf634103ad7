// `tandem demo` end to end at a tiny size: the services come up as child
// processes, both source models, MMT on two ranks and the ranking query run
// through the real CLI, and nothing is left running afterwards.
#include <gtest/gtest.h>

#include <filesystem>

#include "run_tandem.h"

namespace tandem::cli {
namespace {

using testing::run_tandem;
using testing::scratch_path;

TEST(DemoCommand, RunsTheServiceAndReportsBeforeAndAfterAdaptationAndARanking) {
  const std::string workdir = scratch_path("demo");
  const std::vector<std::string> args = {
      "demo", "--workdir", workdir, "--ids",  "16", "--pretrain-epochs", "2", "--mmt-epochs",
      "2",    "--iters",   "3",     "--port", "0"};
  auto result = run_tandem(args, "demo");
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  for (const char* step :
       {"rendering 16 identities", "submitted pretrain-1.yaml", "submitted mmt.yaml",
        "before adaptation", "after MMT", "tandem rank", "demo finished"}) {
    EXPECT_NE(result.out.find(step), std::string::npos) << step << "\n" << result.out;
  }
  // The second run reuses the rendered domains.
  auto again = run_tandem(args, "demo-again");
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("reusing"), std::string::npos) << again.out;
  EXPECT_EQ(again.out.find("rendering"), std::string::npos) << again.out;
  std::filesystem::remove_all(workdir);
}

TEST(DemoCommand, RejectsOutOfRangeSizes) {
  auto result = run_tandem({"demo", "--ids", "1"}, "demo-bad");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--ids"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace tandem::cli
