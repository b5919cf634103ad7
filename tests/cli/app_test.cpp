#include <gtest/gtest.h>

#include "support/run_tandem.h"

namespace tandem::cli {
namespace {

using testing::run_tandem;

TEST(TandemCli, HelpListsTheSubcommands) {
  auto result = run_tandem({"--help"}, "help");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  for (const char* subcommand :
       {"server", "cluster", "health", "demo", "dataset", "synth", "train", "bench", "worker",
        "submit", "status", "watch", "cancel", "delete", "rank"}) {
    EXPECT_NE(result.out.find(subcommand), std::string::npos) << subcommand << "\n" << result.out;
  }
}

TEST(TandemCli, VersionPrintsTheProjectVersion) {
  auto result = run_tandem({"--version"}, "version");
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.out.find("tandem 0."), std::string::npos) << result.out;
}

TEST(TandemCli, UnknownSubcommandPrintsUsageAndExitsTwo) {
  auto result = run_tandem({"frobnicate"}, "unknown");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("frobnicate"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("Subcommands:"), std::string::npos) << result.err;
}

TEST(TandemCli, NoSubcommandExitsTwo) {
  EXPECT_EQ(run_tandem({}, "none").exit_code, 2);
}

TEST(TandemCli, BadOptionValueExitsTwoNamingTheOption) {
  auto result = run_tandem({"health", "--timeout", "-1"}, "badvalue");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--timeout"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace tandem::cli
