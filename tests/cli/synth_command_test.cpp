#include <gtest/gtest.h>

#include <filesystem>

#include "support/run_tandem.h"

namespace tandem::cli {
namespace {

using testing::run_tandem;
using testing::scratch_path;

int64_t count_jpegs(const std::filesystem::path& folder) {
  int64_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    n += entry.path().extension() == ".jpg";
  }
  return n;
}

TEST(SynthCommand, WritesTheMarketLayoutAndSaysWhatItWrote) {
  const std::string out = scratch_path("synth");
  auto result = run_tandem({"synth", "--out", out, "--domain", "duke", "--ids", "6", "--cameras",
                            "3", "--seed", "5", "--images-per-camera", "2", "--distractors", "0"},
                           "synth");
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  for (const char* folder : {"bounding_box_train", "query", "bounding_box_test"}) {
    EXPECT_NE(result.out.find(folder), std::string::npos) << result.out;
    EXPECT_GT(count_jpegs(std::filesystem::path(out) / folder), 0) << folder;
  }
  EXPECT_NE(result.out.find("domain 'duke'"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("images/s"), std::string::npos) << result.out;
  const int64_t total = count_jpegs(std::filesystem::path(out) / "bounding_box_train") +
                        count_jpegs(std::filesystem::path(out) / "query") +
                        count_jpegs(std::filesystem::path(out) / "bounding_box_test");
  EXPECT_NE(result.out.find("  " + std::to_string(total) + " images"), std::string::npos)
      << result.out;
  std::filesystem::remove_all(out);
}

TEST(SynthCommand, RejectsOutOfRangeValuesAsUsageErrors) {
  auto cameras =
      run_tandem({"synth", "--out", scratch_path("bad"), "--cameras", "12"}, "synth-bad");
  EXPECT_EQ(cameras.exit_code, 2);
  EXPECT_NE(cameras.err.find("--cameras"), std::string::npos) << cameras.err;
  auto missing = run_tandem({"synth", "--ids", "4"}, "synth-missing");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("--out"), std::string::npos) << missing.err;
}

TEST(SynthCommand, InconsistentValuesFailNamingTheField) {
  auto result =
      run_tandem({"synth", "--out", scratch_path("bad2"), "--cameras", "3", "--min-cameras", "5"},
                 "synth-inconsistent");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("min_cameras_per_id"), std::string::npos) << result.err;
  EXPECT_FALSE(std::filesystem::exists(scratch_path("bad2")));
}

}  // namespace
}  // namespace tandem::cli
