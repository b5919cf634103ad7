// `tandem demo` end to end at a tiny size: the services come up as child
// processes, both source models, MMT on two ranks and the ranking query run
// through the real CLI, and nothing is left running afterwards.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <thread>

#include "support/run_tandem.h"

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

/// Processes (other than this test) whose command line mentions `text`.
int processes_mentioning(const std::string& text) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = testing::read_file((entry.path() / "cmdline").string());
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(text) != std::string::npos && name != std::to_string(::getpid())) ++count;
  }
  return count;
}

TEST(DemoCommand, CtrlCStopsEveryChildProcess) {
  const std::string workdir = scratch_path("demo-interrupted");
  auto child = testing::spawn_tandem({"demo", "--workdir", workdir, "--ids", "16",
                                      "--pretrain-epochs", "200", "--iters", "3", "--port", "0"},
                                     "demo-interrupted");
  // Wait until the jobs run: the services and workers are up.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::string out;
  while (std::chrono::steady_clock::now() < deadline &&
         (out = testing::read_file(child.stdout_path)).find("submitted pretrain-2.yaml") ==
             std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_NE(out.find("submitted pretrain-2.yaml"), std::string::npos) << out;
  EXPECT_GE(processes_mentioning(workdir), 2) << "server and rank processes run";
  ::kill(child.pid, SIGINT);
  const auto finished = testing::wait_for(child, std::chrono::seconds(60));
  EXPECT_EQ(finished.exit_code, 130) << finished.out << finished.err;
  EXPECT_EQ(processes_mentioning(workdir), 0) << "a child outlived the demo";
  std::filesystem::remove_all(workdir);
}

TEST(DemoCommand, RejectsOutOfRangeSizes) {
  auto result = run_tandem({"demo", "--ids", "1"}, "demo-bad");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--ids"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace tandem::cli
