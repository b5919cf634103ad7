#include "tandem/worker/data/reid_dataset.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace tandem::worker {
namespace {
namespace fs = std::filesystem;

/// A fresh folder under the test's temp dir, removed afterwards.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("tandem_dataset_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

void touch(const fs::path& path) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << "x";
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const DatasetError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("not a DatasetError: ") + e.what();
  }
  return "";
}

/// A small Market-1501 tree: 3 train ids (one junk image), a query, a
/// gallery with a distractor (0) and junk (-1).
fs::path make_market(const fs::path& parent) {
  const fs::path root = parent / "Market-1501-v15.09.15";
  for (const char* name :
       {"0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s1_000101_01.jpg",
        "0011_c6s4_002452_02.jpg", "-1_c1s1_000001_00.jpg", "Thumbs.db"}) {
    touch(root / "bounding_box_train" / name);
  }
  touch(root / "query" / "0003_c1s1_000001_00.jpg");
  touch(root / "query" / "0004_c5s2_000001_00.jpg");
  for (const char* name : {"0003_c2s1_000002_00.jpg", "0004_c1s1_000009_00.jpg",
                           "0000_c3s1_000003_00.jpg", "-1_c4s1_000004_00.jpg"}) {
    touch(root / "bounding_box_test" / name);
  }
  return root;
}

TEST(ReidDataset, Market1501SkipsJunkKeepsDistractorsAndRelabels) {
  TempDir dir;
  const fs::path root = make_market(dir.path());
  // The parent folder and the data set's own folder both work.
  for (const fs::path& given : {dir.path(), root}) {
    const ReidDataset data = load_reid_dataset(ReidDatasetKind::kMarket1501, given.string());
    EXPECT_EQ(data.root, root.string());
    ASSERT_EQ(data.train.size(), 4u);  // junk skipped, Thumbs.db ignored
    EXPECT_EQ(data.num_train_ids, 3);
    // Sorted paths; ids 2, 7, 11 relabelled 0, 1, 2; cameras 0-based.
    EXPECT_EQ(fs::path(data.train[0].path).filename(), "0002_c1s1_000451_03.jpg");
    EXPECT_EQ(data.train[0].pid, 0);
    EXPECT_EQ(data.train[0].camera, 0);
    EXPECT_EQ(data.train[1].pid, 0);
    EXPECT_EQ(data.train[1].camera, 1);
    EXPECT_EQ(data.train[2].pid, 1);
    EXPECT_EQ(data.train[3].pid, 2);
    EXPECT_EQ(data.train[3].camera, 5);
    ASSERT_EQ(data.query.size(), 2u);
    EXPECT_EQ(data.query[0].pid, 3);  // raw ids in query and gallery
    EXPECT_EQ(data.query[1].camera, 4);
    ASSERT_EQ(data.gallery.size(), 3u);  // the distractor stays, the junk goes
    EXPECT_EQ(data.gallery[0].pid, 0);
    EXPECT_EQ(data.gallery[0].camera, 2);
    const SplitStats stats = split_stats(data.gallery);
    EXPECT_EQ(stats.images, 3);
    EXPECT_EQ(stats.ids, 3);
    EXPECT_EQ(stats.cameras, 3);
  }
}

TEST(ReidDataset, Market1501RejectsOutOfRangeCameraAndBadNames) {
  TempDir dir;
  const fs::path root = make_market(dir.path());
  touch(root / "query" / "0005_c7s1_000001_00.jpg");
  std::string message =
      error_of([&] { load_reid_dataset(ReidDatasetKind::kMarket1501, root.string()); });
  EXPECT_NE(message.find("0005_c7s1_000001_00.jpg"), std::string::npos) << message;
  EXPECT_NE(message.find("camera 7 outside [1, 6]"), std::string::npos) << message;

  fs::remove(root / "query" / "0005_c7s1_000001_00.jpg");
  touch(root / "bounding_box_test" / "holiday_photo.jpg");
  message = error_of([&] { load_reid_dataset(ReidDatasetKind::kMarket1501, root.string()); });
  EXPECT_NE(message.find("holiday_photo.jpg"), std::string::npos) << message;
  EXPECT_NE(message.find("expected pattern"), std::string::npos) << message;
  EXPECT_NE(message.find("_c"), std::string::npos) << message;

  fs::remove(root / "bounding_box_test" / "holiday_photo.jpg");
  touch(root / "bounding_box_train" / "1502_c1s1_000001_00.jpg");
  message = error_of([&] { load_reid_dataset(ReidDatasetKind::kMarket1501, root.string()); });
  EXPECT_NE(message.find("person id 1502 outside [0, 1501]"), std::string::npos) << message;
}

TEST(ReidDataset, MissingFolderOrEmptySplitIsAnError) {
  TempDir dir;
  std::string message = error_of(
      [&] { load_reid_dataset(ReidDatasetKind::kMarket1501, (dir.path() / "nope").string()); });
  EXPECT_NE(message.find("nope: folder not found"), std::string::npos) << message;

  message = error_of([&] { load_reid_dataset(ReidDatasetKind::kMarket1501, dir.path().string()); });
  EXPECT_NE(message.find("no bounding_box_train"), std::string::npos) << message;

  const fs::path root = make_market(dir.path());
  fs::remove_all(root / "query");
  message = error_of([&] { load_reid_dataset(ReidDatasetKind::kMarket1501, root.string()); });
  EXPECT_NE(message.find("query: folder not found"), std::string::npos) << message;

  fs::create_directories(root / "query");
  touch(root / "query" / "-1_c1s1_000001_00.jpg");  // only junk: empty after skipping
  message = error_of([&] { load_reid_dataset(ReidDatasetKind::kMarket1501, root.string()); });
  EXPECT_NE(message.find("query: split is empty"), std::string::npos) << message;
}

TEST(ReidDataset, DukeAllowsEightCamerasAndDoesNotFilter) {
  TempDir dir;
  const fs::path root = dir.path() / "DukeMTMC-reID";
  touch(root / "bounding_box_train" / "0001_c8_f0046182.jpg");
  touch(root / "bounding_box_train" / "0005_c2_f0046985.jpg");
  touch(root / "query" / "0006_c7_f0045978.jpg");
  touch(root / "bounding_box_test" / "0006_c1_f0045000.jpg");
  const ReidDataset data = load_reid_dataset(ReidDatasetKind::kDukeMtmc, dir.path().string());
  ASSERT_EQ(data.train.size(), 2u);
  EXPECT_EQ(data.train[0].camera, 7);
  EXPECT_EQ(data.train[1].pid, 1);
  EXPECT_EQ(data.num_train_ids, 2);
  EXPECT_EQ(data.query[0].camera, 6);

  // No junk filtering for DukeMTMC (the originals keep an id -1).
  touch(root / "bounding_box_test" / "-1_c2_f0000001.jpg");
  EXPECT_EQ(load_reid_dataset(ReidDatasetKind::kDukeMtmc, root.string()).gallery.size(), 2u);
  touch(root / "query" / "0007_c9_f0045978.jpg");
  const std::string message =
      error_of([&] { load_reid_dataset(ReidDatasetKind::kDukeMtmc, root.string()); });
  EXPECT_NE(message.find("camera 9 outside [1, 8]"), std::string::npos) << message;
}

TEST(ReidDataset, Msmt17ListLayoutJoinsTrainAndValKeepsOneBasedCameras) {
  TempDir dir;
  const fs::path root = dir.path() / "MSMT17_V1";
  write_text(
      root / "list_train.txt",
      "0001/0001_011_15_0303morning_0036_1.jpg 1\n0000/0000_000_01_0303morning_0015_0.jpg 0\n");
  write_text(root / "list_val.txt", "0000/0000_001_04_0303noon_0022_2.jpg 0\n\n");
  write_text(root / "list_query.txt", "0000/0000_000_01_0303morning_0015_0.jpg 0\n");
  write_text(root / "list_gallery.txt",
             "0000/0000_002_03_0303noon_0015_1.jpg 0\n0001/0001_003_02_0303noon_0015_1.jpg 1\n");
  fs::create_directories(root / "train");
  fs::create_directories(root / "test");
  const ReidDataset data = load_reid_dataset(ReidDatasetKind::kMsmt17, dir.path().string());
  ASSERT_EQ(data.train.size(), 3u);
  EXPECT_EQ(data.train[0].path,
            (root / "train" / "0000/0000_000_01_0303morning_0015_0.jpg").string());
  EXPECT_EQ(data.train[0].camera, 1);  // MMT keeps MSMT17 cameras 1-based
  EXPECT_EQ(data.train[1].camera, 4);
  EXPECT_EQ(data.train[2].camera, 15);
  EXPECT_EQ(data.train[2].pid, 1);
  EXPECT_EQ(data.num_train_ids, 2);
  EXPECT_EQ(data.query[0].path,
            (root / "test" / "0000/0000_000_01_0303morning_0015_0.jpg").string());
  EXPECT_EQ(split_stats(data.gallery).ids, 2);

  write_text(root / "list_query.txt", "0000/garbage.jpg 0\n");
  const std::string message =
      error_of([&] { load_reid_dataset(ReidDatasetKind::kMsmt17, root.string()); });
  EXPECT_NE(message.find("list_query.txt:1"), std::string::npos) << message;
  EXPECT_NE(message.find("garbage.jpg"), std::string::npos) << message;
  EXPECT_NE(message.find("expected pattern"), std::string::npos) << message;

  write_text(root / "list_query.txt", "0000/0000_000_01_0303morning_0015_0.jpg 0\n");
  fs::remove_all(root / "test");
  EXPECT_NE(error_of([&] {
              load_reid_dataset(ReidDatasetKind::kMsmt17, root.string());
            }).find("test: folder not found"),
            std::string::npos);
  fs::create_directories(root / "test");
  fs::remove(root / "list_val.txt");
  EXPECT_NE(error_of([&] {
              load_reid_dataset(ReidDatasetKind::kMsmt17, root.string());
            }).find("list_val.txt: list file not found"),
            std::string::npos);
}

TEST(ReidDataset, Msmt17MarketLayoutNeedsThreePartsAndContiguousTrainIds) {
  TempDir dir;
  const fs::path root = dir.path();
  touch(root / "bounding_box_train" / "0000_c1_0303morning0015.jpg");
  touch(root / "bounding_box_train" / "0001_c15_0303noon0015.jpg");
  touch(root / "query" / "0000_c3_a.jpg");
  touch(root / "bounding_box_test" / "0000_c2_b.jpg");
  const ReidDataset data = load_reid_dataset(ReidDatasetKind::kMsmt17MarketLayout, root.string());
  ASSERT_EQ(data.train.size(), 2u);
  EXPECT_EQ(data.train[1].camera, 14);
  EXPECT_EQ(data.query[0].camera, 2);

  touch(root / "bounding_box_train" / "0005_c1_x.jpg");
  std::string message =
      error_of([&] { load_reid_dataset(ReidDatasetKind::kMsmt17MarketLayout, root.string()); });
  EXPECT_NE(message.find("must be exactly 0..n-1"), std::string::npos) << message;

  fs::remove(root / "bounding_box_train" / "0005_c1_x.jpg");
  touch(root / "query" / "0000_c3s1_000_00.jpg");
  message =
      error_of([&] { load_reid_dataset(ReidDatasetKind::kMsmt17MarketLayout, root.string()); });
  EXPECT_NE(message.find("0000_c3s1_000_00.jpg"), std::string::npos) << message;
  EXPECT_NE(message.find("exactly three"), std::string::npos) << message;
}

TEST(ReidDataset, FolderTakesAnyIdsCamerasAndPng) {
  TempDir dir;
  const fs::path root = dir.path();
  touch(root / "bounding_box_train" / "9000_c12_0001.png");
  touch(root / "bounding_box_train" / "0042_c1_0001.jpeg");
  touch(root / "bounding_box_train" / "-1_c1_0001.jpg");
  touch(root / "query" / "0100_c3_0001.jpg");
  touch(root / "bounding_box_test" / "0100_c4_0001.jpg");
  const ReidDataset data = load_reid_dataset(ReidDatasetKind::kFolder, root.string());
  ASSERT_EQ(data.train.size(), 2u);
  EXPECT_EQ(data.train[0].pid, 0);  // 42 → 0, 9000 → 1
  EXPECT_EQ(data.train[1].pid, 1);
  EXPECT_EQ(data.train[1].camera, 11);
  EXPECT_EQ(data.num_train_ids, 2);
}

TEST(ReidDataset, KindNames) {
  EXPECT_EQ(parse_reid_dataset_kind("market1501"), ReidDatasetKind::kMarket1501);
  EXPECT_EQ(parse_reid_dataset_kind("msmt17-market-layout"), ReidDatasetKind::kMsmt17MarketLayout);
  EXPECT_STREQ(reid_dataset_kind_name(ReidDatasetKind::kDukeMtmc), "dukemtmc");
  const std::string message = error_of([] { parse_reid_dataset_kind("cuhk03"); });
  EXPECT_NE(message.find("unknown data set kind 'cuhk03'"), std::string::npos) << message;
  EXPECT_NE(message.find("market1501, dukemtmc, msmt17, msmt17-market-layout, folder"),
            std::string::npos)
      << message;
}

TEST(ImageList, LastTokenIsTheLabelAndPathsJoinTheRoot) {
  TempDir dir;
  const fs::path list = dir.path() / "image_list" / "amazon.txt";
  write_text(list,
             "amazon/images/back_pack/frame_0001.jpg 0\n"
             "\n"
             "amazon/images/my  bike/frame 2.jpg   7\n"
             "/abs/path.png 3\n");
  const auto images = load_image_list(list.string(), dir.path().string());
  ASSERT_EQ(images.size(), 3u);
  EXPECT_EQ(images[0].path, (dir.path() / "amazon/images/back_pack/frame_0001.jpg").string());
  EXPECT_EQ(images[0].label, 0);
  EXPECT_EQ(images[1].path, (dir.path() / "amazon/images/my bike/frame 2.jpg").string());
  EXPECT_EQ(images[1].label, 7);
  EXPECT_EQ(images[2].path, "/abs/path.png");
  // Without a root, a list in image_list/ (TLlib's layout) joins the folder
  // above it; any other list joins its own folder.
  EXPECT_EQ(load_image_list(list.string())[0].path,
            (dir.path() / "amazon/images/back_pack/frame_0001.jpg").string());
  const fs::path flat = dir.path() / "lists" / "train.txt";
  write_text(flat, "a/b.png 1\n");
  EXPECT_EQ(load_image_list(flat.string())[0].path, (dir.path() / "lists" / "a/b.png").string());
}

TEST(ImageList, BadLinesNameFileAndLine) {
  TempDir dir;
  const fs::path list = dir.path() / "list.txt";
  write_text(list, "a.jpg 1\nb.jpg cat\n");
  std::string message = error_of([&] { load_image_list(list.string()); });
  EXPECT_NE(message.find("list.txt:2"), std::string::npos) << message;
  EXPECT_NE(message.find("'cat'"), std::string::npos) << message;
  write_text(list, "a.jpg 1\nlonely.jpg\n");
  message = error_of([&] { load_image_list(list.string()); });
  EXPECT_NE(message.find("list.txt:2"), std::string::npos) << message;
  write_text(list, "a.jpg -3\n");
  EXPECT_NE(error_of([&] { load_image_list(list.string()); }).find("non-negative"),
            std::string::npos);
  write_text(list, "\n\n");
  EXPECT_NE(error_of([&] { load_image_list(list.string()); }).find("is empty"), std::string::npos);
  EXPECT_NE(
      error_of([&] { load_image_list((dir.path() / "none.txt").string()); }).find("not found"),
      std::string::npos);
}

}  // namespace
}  // namespace tandem::worker
