#include "tandem/server/ranking_index.h"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "tandem/methods/serialization.h"

namespace tandem::server {
namespace {
namespace fs = std::filesystem;

/// One split of a hand-made export.
struct SplitData {
  torch::Tensor features;
  std::vector<int64_t> pids, cameras;
  std::vector<std::string> paths;
};

/// Five gallery rows, unit length in 3-D, and two queries:
///   q0 = (1, 0, 0):     g0 0, g4 √0.4, g3 √0.8, g1 √2, g2 √2
///   q1 = (0, .8, .6):   g1 √0.4, g3 √0.72, g2 √0.8, g4 √1.28, g0 √2
SplitData gallery_data() {
  return {torch::tensor({1.0F, 0.0F, 0.0F, 0.0F, 1.0F, 0.0F, 0.0F, 0.0F, 1.0F, 0.6F, 0.8F, 0.0F,
                         0.8F, 0.0F, 0.6F})
              .view({5, 3}),
          {1, 2, 3, 1, -1},
          {1, 2, 1, 2, 3},
          {"g/0.jpg", "g/1.jpg", "g/2.jpg", "g/3.jpg", "g/4.jpg"}};
}

SplitData query_data() {
  return {torch::tensor({1.0F, 0.0F, 0.0F, 0.0F, 0.8F, 0.6F}).view({2, 3}),
          {1, 3},
          {3, 1},
          {"q/0.jpg", "q/1.jpg"}};
}

void write_split(const fs::path& dir, const std::string& name, const SplitData& split) {
  methods::StateDict state;
  state.insert("features", split.features);
  state.insert("pids", torch::tensor(split.pids, torch::kInt64));
  state.insert("cameras", torch::tensor(split.cameras, torch::kInt64));
  methods::save_state_dict(state, (dir / (name + "_features.pt")).string());
  std::ofstream list(dir / (name + ".txt"));
  for (const auto& path : split.paths) list << path << "\n";
}

/// A complete export as `tandem train` writes it (ranking.json last).
void write_export(const fs::path& dir, const SplitData& gallery = gallery_data(),
                  const SplitData& query = query_data(),
                  const std::string& ranking = "{\"weights\": \"model.pt\"}\n") {
  fs::create_directories(dir);
  write_split(dir, "gallery", gallery);
  write_split(dir, "query", query);
  std::ofstream(dir / "ranking.json") << ranking;
}

class RankingIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tandem-ranking-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

void expect_entries(const tandem::v1::RankResponse& response, const std::vector<int>& rows,
                    const std::vector<double>& distances) {
  const SplitData gallery = gallery_data();
  ASSERT_EQ(response.entries_size(), static_cast<int>(rows.size()));
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& entry = response.entries(static_cast<int>(i));
    EXPECT_EQ(entry.gallery_path(), gallery.paths[rows[i]]) << "rank " << i;
    EXPECT_EQ(entry.person_id(), gallery.pids[rows[i]]) << "rank " << i;
    EXPECT_EQ(entry.camera_id(), gallery.cameras[rows[i]]) << "rank " << i;
    EXPECT_NEAR(entry.distance(), distances[i], 1e-6) << "rank " << i;
  }
}

TEST_F(RankingIndexTest, RanksTheWholeGalleryNearestFirst) {
  write_export(dir_);
  auto index = RankingIndex::load(dir_.string());
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ((*index)->gallery_size(), 5);
  EXPECT_EQ((*index)->query_size(), 2);
  EXPECT_EQ((*index)->dimension(), 3);
  // top_k 0 is 10, clamped to the 5 gallery images; equal distances keep
  // gallery order; the query's own id and camera come back.
  auto q0 = (*index)->rank_query(0, 0);
  ASSERT_TRUE(q0.ok()) << q0.status();
  expect_entries(*q0, {0, 4, 3, 1, 2},
                 {0, std::sqrt(0.4), std::sqrt(0.8), std::sqrt(2.0), std::sqrt(2.0)});
  EXPECT_EQ(q0->query_person_id(), 1);
  EXPECT_EQ(q0->query_camera_id(), 3);
  auto q1 = (*index)->rank_query(1, 100);
  ASSERT_TRUE(q1.ok()) << q1.status();
  expect_entries(
      *q1, {1, 3, 2, 4, 0},
      {std::sqrt(0.4), std::sqrt(0.72), std::sqrt(0.8), std::sqrt(1.28), std::sqrt(2.0)});
  EXPECT_EQ(q1->query_person_id(), 3);
  EXPECT_EQ(q1->query_camera_id(), 1);
  auto top2 = (*index)->rank_query(0, 2);
  ASSERT_TRUE(top2.ok()) << top2.status();
  expect_entries(*top2, {0, 4}, {0, std::sqrt(0.4)});
  // A feature: the same ranking as the query it equals; no query ids.
  auto by_feature = (*index)->rank_features({0.0F, 0.8F, 0.6F}, 3);
  ASSERT_TRUE(by_feature.ok()) << by_feature.status();
  expect_entries(*by_feature, {1, 3, 2}, {std::sqrt(0.4), std::sqrt(0.72), std::sqrt(0.8)});
  EXPECT_EQ(by_feature->query_person_id(), 0);
  EXPECT_EQ(by_feature->query_camera_id(), 0);
}

TEST_F(RankingIndexTest, BadRequestsNameTheFieldAndTheValidRange) {
  write_export(dir_);
  auto index = RankingIndex::load(dir_.string());
  ASSERT_TRUE(index.ok()) << index.status();
  const RankingIndex& ranking = **index;
  auto past = ranking.rank_query(2, 1);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(past.status().message().find("query_index 2"), std::string::npos) << past.status();
  EXPECT_NE(past.status().message().find("[0, 2)"), std::string::npos) << past.status();
  auto negative = ranking.rank_query(-1, 1);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(negative.status().message().find("query_index"), std::string::npos);
  EXPECT_NE(negative.status().message().find("[0, 2)"), std::string::npos);
  auto top_k = ranking.rank_query(0, -1);
  EXPECT_EQ(top_k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(top_k.status().message().find("top_k"), std::string::npos) << top_k.status();
  EXPECT_EQ(ranking.rank_features({1.0F, 0.0F, 0.0F}, -3).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto width = ranking.rank_features({1.0F, 0.0F}, 1);
  EXPECT_EQ(width.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(width.status().message().find("2 values"), std::string::npos) << width.status();
  EXPECT_NE(width.status().message().find("3"), std::string::npos) << width.status();
  auto nan = ranking.rank_features({std::numeric_limits<float>::quiet_NaN(), 0.0F, 0.0F}, 1);
  EXPECT_EQ(nan.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RankingIndexTest, MissingOrInconsistentExportsAreClearErrors) {
  // No export yet (the job has not finished): FAILED_PRECONDITION.
  auto none = RankingIndex::load(dir_.string());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(none.status().message().find("job has no ranking export yet"), std::string::npos)
      << none.status();
  const auto expect_internal = [this](const std::string& file) {
    auto index = RankingIndex::load(dir_.string());
    EXPECT_EQ(index.status().code(), absl::StatusCode::kInternal) << file;
    EXPECT_NE(index.status().message().find(file), std::string::npos) << index.status();
  };
  SplitData gallery = gallery_data();
  gallery.pids.pop_back();  // 4 ids for 5 rows
  write_export(dir_, gallery);
  expect_internal("gallery_features.pt");
  gallery = gallery_data();
  gallery.paths.pop_back();
  write_export(dir_, gallery);
  expect_internal("gallery.txt");
  SplitData query = query_data();
  query.features = torch::ones({2, 4});
  write_export(dir_, gallery_data(), query);
  expect_internal("query_features.pt");
  write_export(dir_);
  fs::remove(dir_ / "query_features.pt");
  expect_internal("query_features.pt");
  std::ofstream(dir_ / "query_features.pt") << "not a torch file";
  expect_internal("query_features.pt");
}

TEST_F(RankingIndexTest, CacheReloadsWhenTheExportChanges) {
  RankingIndexCache cache;
  auto missing = cache.get(dir_.string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  write_export(dir_);  // failures are not cached
  auto first = cache.get(dir_.string());
  ASSERT_TRUE(first.ok()) << first.status();
  auto again = cache.get(dir_.string() + "/");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(first->get(), again->get()) << "an unchanged export is not reloaded";
  // Many callers at once share the one index.
  std::vector<std::thread> threads;
  std::atomic<int> same{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      auto index = cache.get(dir_.string());
      if (index.ok() && index->get() == first->get() && (*index)->rank_query(1, 2).ok()) ++same;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(same.load(), 8);
  // A re-export with one more gallery image: reloaded.
  SplitData gallery = gallery_data();
  gallery.features = torch::cat({gallery.features, torch::tensor({0.0F, 0.8F, 0.6F}).view({1, 3})});
  gallery.pids.push_back(7);
  gallery.cameras.push_back(1);
  gallery.paths.push_back("g/5.jpg");
  write_export(dir_, gallery);
  auto reloaded = cache.get(dir_.string());
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_NE(reloaded->get(), first->get());
  EXPECT_EQ((*reloaded)->gallery_size(), 6);
  EXPECT_EQ((*first)->gallery_size(), 5) << "a caller's old index stays usable";
  fs::remove(dir_ / "ranking.json");  // a re-export under way
  EXPECT_EQ(cache.get(dir_.string()).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(RankingIndexTest, GalleryPathsAreRelativeToTheDataSetNeverAbsolute) {
  SplitData gallery = gallery_data();
  gallery.paths = {"/data/market/bounding_box_test/0001_c1s1_000151_01.jpg",
                   "/data/market/./bounding_box_test/../gallery/2.jpg", "/data/other/3.jpg",
                   "/data/market/../market-private/4.jpg", "/etc/passwd"};
  SplitData query = query_data();
  query.paths = {"/data/market/query/0.jpg", "/data/market/query/1.jpg"};
  write_export(dir_, gallery, query,
               "{\"kind\": \"mmt\", \"dataset\": \"/data/market/\", \"weights\": \"model.pt\"}\n");
  auto index = RankingIndex::load(dir_.string());
  ASSERT_TRUE(index.ok()) << index.status();
  auto ranked = (*index)->rank_query(0, 0);
  ASSERT_TRUE(ranked.ok()) << ranked.status();
  // q0's order: g0, g4, g3, g1, g2.
  const std::vector<std::string> expected = {"bounding_box_test/0001_c1s1_000151_01.jpg", "passwd",
                                             "4.jpg", "gallery/2.jpg", "3.jpg"};
  ASSERT_EQ(ranked->entries_size(), 5);
  for (int i = 0; i < 5; ++i) {
    const std::string& path = ranked->entries(i).gallery_path();
    EXPECT_EQ(path, expected[static_cast<size_t>(i)]) << "rank " << i;
    EXPECT_FALSE(fs::path(path).is_absolute()) << path;
    EXPECT_EQ(path.find(".."), std::string::npos) << path;
  }
}

TEST(RankingIndexPaths, RelativeToTheDataSetRootLexically) {
  const auto rel = &RankingIndex::relative_to_dataset;
  EXPECT_EQ(rel("/data/market/query/1.jpg", "/data/market"), "query/1.jpg");
  EXPECT_EQ(rel("/data/market/query/1.jpg", "/data//market/"), "query/1.jpg");
  EXPECT_EQ(rel("data/market/q/1.jpg", "data/market"), "q/1.jpg");
  EXPECT_EQ(rel("./data/market/x.jpg", "data/market/."), "x.jpg");
  // Not under the root: the file name only.
  EXPECT_EQ(rel("/data/market/../secret/x.jpg", "/data/market"), "x.jpg");
  EXPECT_EQ(rel("/data/market-2/x.jpg", "/data/market"), "x.jpg");
  EXPECT_EQ(rel("/data/market/x.jpg", "data/market"), "x.jpg") << "absolute vs relative";
  EXPECT_EQ(rel("data/market/x.jpg", "/data/market"), "x.jpg");
  EXPECT_EQ(rel("/data/market", "/data/market"), "market");
  // No root named: relative paths that stay below "." are kept.
  EXPECT_EQ(rel("g/0.jpg", ""), "g/0.jpg");
  EXPECT_EQ(rel("g/./h/../0.jpg", ""), "g/0.jpg");
  EXPECT_EQ(rel("../outside/0.jpg", ""), "0.jpg");
  EXPECT_EQ(rel("/home/user/data/0.jpg", ""), "0.jpg");
}

TEST_F(RankingIndexTest, AMalformedRankingJsonIsAnInternalErrorNamingIt) {
  for (const std::string& ranking :
       {std::string("not json"), std::string("[1, 2]"), std::string("{\"dataset\": 7}")}) {
    write_export(dir_, gallery_data(), query_data(), ranking);
    auto index = RankingIndex::load(dir_.string());
    EXPECT_EQ(index.status().code(), absl::StatusCode::kInternal) << ranking;
    EXPECT_NE(index.status().message().find("ranking.json"), std::string::npos) << index.status();
  }
}

}  // namespace
}  // namespace tandem::server
