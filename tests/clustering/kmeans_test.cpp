#include "tandem/clustering/kmeans.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace tandem::clustering {
namespace {

#ifdef TANDEM_WITH_FAISS
// Three well separated blobs of 50 points in 8-D.
torch::Tensor three_blobs(torch::Tensor* truth) {
  torch::manual_seed(7);
  auto centres = torch::eye(8).narrow(0, 0, 3) * 10.0;
  *truth = torch::arange(3).repeat_interleave(50);
  return (centres.index_select(0, *truth) + 0.1 * torch::randn({150, 8})).contiguous();
}

TEST(KMeans, RecoversSeparatedBlobs) {
  torch::Tensor truth;
  auto features = three_blobs(&truth);
  KMeansOptions options;
  options.k = 3;
  auto result = kmeans(features, options);
  ASSERT_EQ(result.labels.sizes(), (std::vector<int64_t>{150}));
  ASSERT_EQ(result.labels.scalar_type(), torch::kInt64);
  ASSERT_EQ(result.centroids.sizes(), (std::vector<int64_t>{3, 8}));
  // Every blob maps to exactly one cluster and the clusters are distinct.
  std::set<int64_t> seen;
  for (int blob = 0; blob < 3; ++blob) {
    auto labels = result.labels.narrow(0, int64_t{blob} * 50, 50);
    EXPECT_TRUE((labels == labels[0]).all().item<bool>()) << "blob " << blob << " was split";
    seen.insert(labels[0].item<int64_t>());
  }
  EXPECT_EQ(seen.size(), 3u);
}

TEST(KMeans, LabelsAreTheNearestCentroid) {
  torch::manual_seed(3);
  auto features = torch::randn({200, 4});
  KMeansOptions options;
  options.k = 5;
  auto result = kmeans(features, options);
  auto nearest = torch::cdist(features, result.centroids).argmin(1);
  EXPECT_TRUE(torch::equal(nearest, result.labels));
  // objective = sum of squared distances to the assigned centroid.
  auto assigned = result.centroids.index_select(0, result.labels);
  EXPECT_NEAR(result.objective, (features - assigned).pow(2).sum().item<double>(), 1e-2);
}

TEST(KMeans, SameSeedSameResult) {
  torch::manual_seed(11);
  auto features = torch::randn({300, 16});
  KMeansOptions options;
  options.k = 10;
  options.seed = 42;
  auto a = kmeans(features, options);
  auto b = kmeans(features, options);
  EXPECT_TRUE(torch::equal(a.labels, b.labels));
  EXPECT_TRUE(torch::equal(a.centroids, b.centroids));
}

TEST(KMeans, RejectsKLargerThanN) {
  KMeansOptions options;
  options.k = 11;
  try {
    kmeans(torch::randn({10, 2}), options);
    FAIL() << "k > n accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("larger than the number of feature rows n = 10"),
              std::string::npos);
  }
}
#else
// A build without FAISS (TANDEM_CORE_ONLY): k-means says so and names DBSCAN.
TEST(KMeans, WithoutFaissIsAnErrorNamingDbscan) {
  try {
    kmeans(torch::randn({10, 2}), KMeansOptions{});
    FAIL() << "k-means ran without FAISS";
  } catch (const c10::Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("needs FAISS and this build has none"), std::string::npos) << message;
    EXPECT_NE(message.find("clustering: dbscan"), std::string::npos) << message;
  }
}
#endif  // TANDEM_WITH_FAISS

}  // namespace
}  // namespace tandem::clustering
