#include "tandem/clustering/pseudo_labels.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "support/golden.h"

namespace tandem::clustering {
namespace {

// 12 identities × 10 images, tight around orthonormal centres, plus 4
// single outliers in directions of their own.
torch::Tensor identities_and_outliers(torch::Tensor* truth) {
  torch::manual_seed(5);
  const auto basis = std::get<0>(torch::linalg_qr(torch::randn({24, 24})));
  const auto centres = basis.narrow(0, 0, 12);
  *truth = torch::arange(12).repeat_interleave(10);
  auto f = centres.index_select(0, *truth) + 0.05 * torch::randn({120, 24});
  auto outliers = basis.narrow(0, 12, 4);  // alone, orthogonal to every identity
  *truth = torch::cat({*truth, torch::full({4}, -1, torch::kLong)});
  return torch::cat({f, outliers}).contiguous();
}

TEST(PseudoLabels, DbscanFindsTheIdentitiesAndDropsOutliers) {
  torch::Tensor truth;
  const auto f = identities_and_outliers(&truth);
  // Jaccard (20, 6) and min_samples 4; a fixed eps between the largest
  // within-identity (≈ 0.28) and the smallest across-identity (≈ 0.67)
  // distance. (At 124 points MMT's adaptive rule picks a far smaller eps.)
  PseudoLabelOptions options;
  options.rho = std::nullopt;
  options.dbscan.eps = 0.5;
  const auto result = pseudo_labels(f, options);
  EXPECT_EQ(result.stats.clusters, 12);
  EXPECT_GT(result.eps, 0.0);
  EXPECT_TRUE((result.labels.narrow(0, 120, 4) == -1).all().item<bool>()) << result.labels;
  for (int64_t id = 0; id < 12; ++id) {
    const auto members = result.labels.narrow(0, id * 10, 10);
    EXPECT_TRUE((members == members[0]).all().item<bool>()) << "identity " << id << " split";
  }
  ASSERT_EQ(result.centroids.sizes(), (std::vector<int64_t>{12, 24}));
  std::vector<std::string> phases;
  for (const auto& [phase, seconds] : result.phase_seconds) phases.push_back(phase);
  EXPECT_EQ(phases, (std::vector<std::string>{"neighbors", "jaccard", "dbscan", "centroids"}));
  EXPECT_DOUBLE_EQ(result.neighbor_recall, 1.0);
  // With the adaptive rule the eps phase is timed as well.
  options.rho = 1.6e-2;
  const auto adaptive = pseudo_labels(f, options);
  EXPECT_EQ(adaptive.phase_seconds[2].first, "eps");
  EXPECT_LT(adaptive.eps, 0.5);
}

#ifdef TANDEM_WITH_FAISS
TEST(PseudoLabels, PoorIvfRecallIsAnErrorNotBadLabels) {
  torch::Tensor truth;
  const auto f = identities_and_outliers(&truth);
  PseudoLabelOptions options;
  options.jaccard.search = NeighborSearch::kIvf;
  options.jaccard.ivf_lists = 60;
  options.jaccard.ivf_probe = 1;  // one list of 60: most neighbours are missed
  options.min_ivf_recall = 0.99;
  try {
    pseudo_labels(f, options);
    FAIL() << "poor recall accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("estimated recall"), std::string::npos);
  }
  options.jaccard.ivf_probe = 60;  // every list: exact
  EXPECT_DOUBLE_EQ(pseudo_labels(f, options).neighbor_recall, 1.0);
}

TEST(PseudoLabels, KMeansLabelsEveryImage) {
  torch::Tensor truth;
  const auto f = identities_and_outliers(&truth);
  PseudoLabelOptions options;
  options.algorithm = PseudoLabelOptions::Algorithm::kKMeans;
  options.kmeans.k = 12;
  options.kmeans.nredo = 3;
  const auto result = pseudo_labels(f, options);
  EXPECT_EQ(result.stats.clusters, 12);
  EXPECT_EQ(result.stats.noise, 0);
  EXPECT_TRUE((result.labels >= 0).all().item<bool>());
  EXPECT_EQ(result.centroids.sizes(), (std::vector<int64_t>{12, 24}));
}
#else
// A build without FAISS (TANDEM_CORE_ONLY): k-means pseudo labels say so.
TEST(PseudoLabels, KMeansWithoutFaissIsAnError) {
  torch::Tensor truth;
  const auto f = identities_and_outliers(&truth);
  PseudoLabelOptions options;
  options.algorithm = PseudoLabelOptions::Algorithm::kKMeans;
  options.kmeans.k = 12;
  EXPECT_NE(testing::error_message([&] {
              pseudo_labels(f, options);
            }).find("needs FAISS and this build has none"),
            std::string::npos);
}
#endif  // TANDEM_WITH_FAISS

TEST(PseudoLabels, ZeroClustersGivesEmptyCentroids) {
  torch::manual_seed(6);
  const auto f = torch::randn({60, 8});
  PseudoLabelOptions options;
  options.rho = std::nullopt;
  options.dbscan.eps = 0.0;
  options.dbscan.min_samples = 2;
  const auto result = pseudo_labels(f, options);
  EXPECT_EQ(result.stats.clusters, 0);
  EXPECT_EQ(result.stats.noise, 60);
  EXPECT_EQ(result.centroids.size(0), 0);
}

TEST(StandardisePerCamera, NormalisesRowsThenCentresAndScalesEachCamera) {
  // Camera 0: rows (3, 4) and (0, 2) -> normalised (0.6, 0.8), (0, 1);
  // per dimension mean (0.3, 0.9), population std (0.3, 0.1).
  // Camera 1: a single row -> centred to 0 (std 0, + 1e-6).
  const torch::Tensor features = torch::tensor({{3.0f, 4.0f}, {0.0f, 2.0f}, {5.0f, 0.0f}});
  const torch::Tensor cameras = torch::tensor({0, 0, 1}, torch::kInt64);
  const torch::Tensor out = standardise_per_camera(features, cameras);
  const float s0 = 0.3f / (0.3f + 1e-6f), s1 = 0.1f / (0.1f + 1e-6f);
  const torch::Tensor expected = torch::tensor({{s0, -s1}, {-s0, s1}, {0.0f, 0.0f}});
  EXPECT_TRUE(torch::allclose(out, expected, 1e-4, 1e-5)) << out;
  EXPECT_THROW(standardise_per_camera(features, torch::tensor({0, 1}, torch::kInt64)), c10::Error);
}

TEST(ClusterMeans, AveragesMembersAndIgnoresNoise) {
  auto f = torch::tensor({{1.0f, 0.0f}, {3.0f, 0.0f}, {0.0f, 5.0f}, {9.0f, 9.0f}});
  const auto means = cluster_means(f, torch::tensor({0, 0, 1, -1}), 2);
  EXPECT_TRUE(torch::allclose(means, torch::tensor({{2.0f, 0.0f}, {0.0f, 5.0f}})));
}

}  // namespace
}  // namespace tandem::clustering
