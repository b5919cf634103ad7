// The `tandem` front binary: no LibTorch in its process, the client commands
// run in it, everything else reaches tandem-engine (client/front.h).
#include "tandem/client/front.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "support/run_tandem.h"

namespace tandem::client {
namespace {

namespace fs = std::filesystem;
using cli::testing::run_tandem;

std::string command_output(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  std::string out;
  if (!pipe) return out;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe.get())) > 0;) out.append(buffer, n);
  return out;
}

void make_executable(const fs::path& path) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << "#!/bin/sh\n";
  ::chmod(path.c_str(), 0755);
}

/// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

TEST(FrontBinary, LoadsNoLibTorch) {
  // ldd lists every shared library the binary pulls in, transitively; the
  // engine, which has the training code, is the control.
  const std::string front = command_output(std::string("ldd ") + TANDEM_CLI_PATH);
  const std::string engine = command_output(std::string("ldd ") + TANDEM_ENGINE_PATH);
  ASSERT_NE(front.find("libgrpc++"), std::string::npos) << front;
  ASSERT_NE(engine.find("libtorch"), std::string::npos) << engine;
  EXPECT_EQ(front.find("libtorch"), std::string::npos) << front;
  EXPECT_EQ(front.find("libc10"), std::string::npos) << front;
  EXPECT_EQ(front.find("libfaiss"), std::string::npos) << front;
}

TEST(FrontBinary, FindsTheEngineNextToItInTheBuildTree) {
  EXPECT_EQ(find_engine(TANDEM_CLI_PATH), fs::path(TANDEM_ENGINE_PATH).lexically_normal().string());
}

TEST(FrontBinary, FindsTheEngineInLibexecOfAnInstall) {
  const fs::path prefix = cli::testing::scratch_path("front-prefix");
  make_executable(prefix / "bin" / "tandem");
  make_executable(prefix / "libexec" / "tandem" / "tandem-engine");
  EXPECT_EQ(find_engine((prefix / "bin" / "tandem").string()),
            (prefix / "libexec" / "tandem" / "tandem-engine").string());
  fs::remove_all(prefix);
}

TEST(FrontBinary, MissingEngineListsWhereItLooked) {
  const fs::path prefix = cli::testing::scratch_path("front-empty");
  make_executable(prefix / "bin" / "tandem");
  std::vector<std::string> looked_in;
  EXPECT_EQ(find_engine((prefix / "bin" / "tandem").string(), &looked_in), "");
  ASSERT_EQ(looked_in.size(), 2u);
  EXPECT_EQ(looked_in[0], (prefix / "bin" / "tandem-engine").string());
  EXPECT_EQ(looked_in[1], (prefix / "libexec" / "tandem" / "tandem-engine").string());
  fs::remove_all(prefix);
}

TEST(FrontBinary, EngineCommandsReachTheEngine) {
  // --version and train are the engine's: the front hands them on unchanged.
  const auto version = run_tandem({"--version"}, "front-version");
  EXPECT_EQ(version.exit_code, 0) << version.err;
  EXPECT_EQ(version.out.rfind("tandem ", 0), 0u) << version.out;
  const auto train = run_tandem({"train", "/no/such/spec.yaml"}, "front-train");
  EXPECT_EQ(train.exit_code, 1);
  EXPECT_NE(train.err.find("/no/such/spec.yaml"), std::string::npos) << train.err;
}

TEST(FrontBinary, WithoutTheEngineOnlyTheClientCommandsRun) {
  const ScopedEnv engine("TANDEM_ENGINE", "/no/such/tandem-engine");
  const auto train = run_tandem({"train", "spec.yaml"}, "front-no-engine");
  EXPECT_EQ(train.exit_code, 1);
  EXPECT_NE(train.err.find("cannot find tandem-engine"), std::string::npos) << train.err;
  EXPECT_NE(train.err.find("/no/such/tandem-engine"), std::string::npos) << train.err;
  // A client command needs no engine: an unreachable server is its error.
  const auto health = run_tandem({"health", "--target", "127.0.0.1:1", "--timeout", "0.3"},
                                 "front-no-engine-health");
  EXPECT_EQ(health.exit_code, 1);
  EXPECT_NE(health.err.find("127.0.0.1:1"), std::string::npos) << health.err;
}

TEST(FrontBinary, UsageErrorOfAClientCommandShowsItsHelp) {
  const auto result = run_tandem({"cancel"}, "front-usage");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("cancel"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace tandem::client
