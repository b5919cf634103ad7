#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

#include "support/run_tandem.h"

namespace tandem::cli {
namespace {
using testing::run_tandem;
using testing::scratch_path;

TEST(BenchAdapt, JsonIsExactlyOneObjectWithTheFourModels) {
  const std::string dir = scratch_path("bench-adapt");
  auto result = run_tandem({"bench", "adapt", "--seed", "3", "--ids", "24", "--pretrain-epochs",
                            "2", "--mmt-epochs", "1", "--iters", "3", "--json", "--workdir", dir},
                           "bench-adapt");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto json = nlohmann::json::parse(result.out);  // nothing else on stdout
  ASSERT_TRUE(json.is_object());
  ASSERT_EQ(json.size(), 4u);
  for (const char* model : {"direct_transfer", "mmt_kmeans", "mmt_dbscan", "oracle"}) {
    ASSERT_TRUE(json.contains(model)) << model;
    for (const char* metric : {"mAP", "rank1"}) {
      const double value = json[model][metric].get<double>();
      EXPECT_GE(value, 0.0) << model << " " << metric;
      EXPECT_LE(value, 100.0) << model << " " << metric;
    }
  }
  EXPECT_NE(result.err.find("rendered duke"), std::string::npos) << result.err;
  std::filesystem::remove_all(dir);
}

// The per-camera step (spec.camera_standardise) is the default; --raw-clustering
// runs both MMT jobs on MMT's input as is, and the bench still prints one object.
TEST(BenchAdapt, RawClusteringRunsWithoutThePerCameraStep) {
  const std::string dir = scratch_path("bench-adapt-raw");
  auto result = run_tandem(
      {"bench", "adapt", "--seed", "4", "--ids", "24", "--pretrain-epochs", "1", "--mmt-epochs",
       "1", "--iters", "2", "--raw-clustering", "--json", "--workdir", dir},
      "bench-adapt-raw");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto json = nlohmann::json::parse(result.out);
  ASSERT_EQ(json.size(), 4u);
  EXPECT_TRUE(json.contains("mmt_dbscan"));
  std::filesystem::remove_all(dir);
}

TEST(BenchAdapt, RefusesOneDomainAsSourceAndTarget) {
  auto result = run_tandem({"bench", "adapt", "--source-domain", "msmt", "--target-domain", "msmt"},
                           "bench-adapt-same");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.err.find("--target-domain must differ from --source-domain (both 'msmt')"),
            std::string::npos)
      << result.err;
  EXPECT_TRUE(result.out.empty()) << result.out;
}

}  // namespace
}  // namespace tandem::cli
