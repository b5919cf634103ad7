#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "support/run_tandem.h"

namespace tandem::cli {
namespace {
namespace fs = std::filesystem;

using testing::run_tandem;
using testing::scratch_path;

void touch(const fs::path& path) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << "x";
}

/// A tiny Market-1501 tree: 3 train images of 2 ids, 1 query, a gallery with
/// a distractor and a junk image.
fs::path make_market(const std::string& tag) {
  const fs::path root = scratch_path(tag);
  fs::remove_all(root);
  touch(root / "bounding_box_train" / "0002_c1s1_000451_03.jpg");
  touch(root / "bounding_box_train" / "0002_c2s1_000551_01.jpg");
  touch(root / "bounding_box_train" / "0007_c3s1_000101_01.jpg");
  touch(root / "query" / "0003_c1s1_000001_00.jpg");
  touch(root / "bounding_box_test" / "0003_c2s1_000002_00.jpg");
  touch(root / "bounding_box_test" / "0000_c3s1_000003_00.jpg");
  touch(root / "bounding_box_test" / "-1_c4s1_000004_00.jpg");
  return root;
}

TEST(DatasetCommand, JsonIsExactlyOneObjectWithTheCounts) {
  const fs::path root = make_market("dataset-json");
  auto result =
      run_tandem({"dataset", "info", "--kind", "market1501", "--root", root.string(), "--json"},
                 "dataset-json");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto json = nlohmann::json::parse(result.out);  // throws on anything but one value
  ASSERT_TRUE(json.is_object());
  EXPECT_EQ(json.size(), 3u);
  EXPECT_EQ(json["train"], (nlohmann::json{{"images", 3}, {"ids", 2}, {"cameras", 3}}));
  EXPECT_EQ(json["query"], (nlohmann::json{{"images", 1}, {"ids", 1}, {"cameras", 1}}));
  EXPECT_EQ(json["gallery"], (nlohmann::json{{"images", 2}, {"ids", 2}, {"cameras", 2}}));
  EXPECT_EQ(result.out.find("train"), 2u) << "train, query, gallery in that order: " << result.out;

  result = run_tandem({"dataset", "info", "--kind", "market1501", "--root", root.string()},
                      "dataset-table");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("gallery"), std::string::npos) << result.out;
  fs::remove_all(root);
}

TEST(DatasetCommand, BadInputExitsNonZeroNamingTheFileAndPattern) {
  const fs::path root = make_market("dataset-bad");
  touch(root / "query" / "IMG_2041.jpg");
  auto result = run_tandem({"dataset", "info", "--kind", "market1501", "--root", root.string()},
                           "dataset-bad");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("IMG_2041.jpg"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("expected pattern"), std::string::npos) << result.err;
  EXPECT_TRUE(result.out.empty()) << result.out;

  result = run_tandem(
      {"dataset", "info", "--kind", "dukemtmc", "--root", (root / "missing").string(), "--json"},
      "dataset-missing");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("missing: folder not found"), std::string::npos) << result.err;

  result =
      run_tandem({"dataset", "info", "--kind", "cuhk03", "--root", root.string()}, "dataset-kind");
  EXPECT_EQ(result.exit_code, 2) << "an unknown kind is a usage error";
  result = run_tandem({"dataset", "info", "--kind", "imagelist"}, "dataset-nolist");
  EXPECT_EQ(result.exit_code, 2) << result.err;
  EXPECT_NE(result.err.find("--list"), std::string::npos) << result.err;
  fs::remove_all(root);
}

TEST(DatasetCommand, ImageListCountsImagesAndClasses) {
  const fs::path dir = scratch_path("dataset-list");
  fs::create_directories(dir);
  std::ofstream(dir / "list.txt") << "a.png 0\nb.png 3\nc d.png 3\n";
  auto result = run_tandem(
      {"dataset", "info", "--kind", "imagelist", "--list", (dir / "list.txt").string(), "--json"},
      "dataset-list");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto json = nlohmann::json::parse(result.out);
  EXPECT_EQ(json["train"], (nlohmann::json{{"images", 3}, {"ids", 2}, {"cameras", 0}}));
  EXPECT_EQ(json["query"]["images"], 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tandem::cli
