#include "tandem/methods/atomic_file.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace tandem::methods {
namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class AtomicFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tandem-atomic-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add);
    fs::remove_all(dir_);
  }
  fs::path dir_;
};

TEST_F(AtomicFile, WritesReplacesAndLeavesNoTemporaryFileBehind) {
  const fs::path path = dir_ / "metrics.json";
  write_file_atomically(path.string(), "{\"mAP\": 1}\n");
  EXPECT_EQ(read(path), "{\"mAP\": 1}\n");
  const std::string binary("a\0b\xff", 4);
  write_file_atomically(path.string(), binary);
  EXPECT_EQ(read(path), binary) << "bytes as given, NULs included; the old file replaced";
  write_file_atomically(path.string(), "");
  EXPECT_EQ(fs::file_size(path), 0u);
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    ++entries;
    EXPECT_EQ(entry.path().filename(), "metrics.json");
  }
  EXPECT_EQ(entries, 1);
}

TEST_F(AtomicFile, FailuresNameThePathTheStepAndKeepTheOldFile) {
  const fs::path missing = dir_ / "no-such-folder" / "x.pt";
  try {
    write_file_atomically(missing.string(), "data", "save_state_dict");
    ADD_FAILURE() << "no error";
  } catch (const c10::Error& error) {
    const std::string message = error.what_without_backtrace();
    EXPECT_NE(message.find("save_state_dict: cannot create a temporary file in '" +
                           (dir_ / "no-such-folder").string()),
              std::string::npos)
        << message;
    EXPECT_NE(message.find(missing.string()), std::string::npos) << message;
  }
  // A folder the process may not write (skipped as root, who may).
  const fs::path path = dir_ / "kept.txt";
  write_file_atomically(path.string(), "old");
  fs::permissions(dir_, fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write,
                  fs::perm_options::remove);
  if (::access(dir_.c_str(), W_OK) == 0) GTEST_SKIP() << "running as root: folders stay writable";
  EXPECT_THROW(write_file_atomically(path.string(), "new"), c10::Error);
  EXPECT_EQ(read(path), "old");
}

TEST_F(AtomicFile, APathWithoutAFileNameIsAnError) {
  EXPECT_THROW(write_file_atomically((dir_ / "").string(), "x"), c10::Error);
}

}  // namespace
}  // namespace tandem::methods
