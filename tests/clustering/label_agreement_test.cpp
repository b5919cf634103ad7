#include "tandem/clustering/label_agreement.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

namespace tandem::clustering {
namespace {

torch::Tensor longs(const std::vector<int64_t>& v) {
  return torch::tensor(v, torch::dtype(torch::kLong));
}

TEST(LabelAgreement, HandComputedPairsWithNoise) {
  // Kept images 0..4: clusters {5,5} and {5,7,7}; image 5 (identity 7) is noise.
  const auto a = label_agreement(longs({0, 0, 1, 1, 1, -1}), longs({5, 5, 5, 7, 7, 7}));
  EXPECT_EQ(a.noise, 1);
  EXPECT_EQ(a.clusters, 2);
  EXPECT_DOUBLE_EQ(a.pair_precision, 2.0 / 4.0);  // (0,1) and (3,4) of 4 same-cluster pairs
  EXPECT_DOUBLE_EQ(a.pair_recall, 2.0 / 6.0);     // of 3 + 3 same-identity pairs
  // sklearn.metrics.adjusted_rand_score([5,5,5,7,7], [0,0,1,1,1]) = 1/6.
  EXPECT_NEAR(a.adjusted_rand, 1.0 / 6.0, 1e-12);
}

TEST(LabelAgreement, MatchesScikitLearnAri) {
  // Drawn with numpy (seed 3); ARI from sklearn 1.2 adjusted_rand_score.
  const auto truth = longs({4, 0, 1, 1, 1, 4, 5, 3, 0, 0, 1, 2, 3, 2, 1, 0, 4, 4, 0, 0,
                            2, 2, 5, 3, 2, 2, 3, 3, 1, 4, 4, 5, 4, 1, 1, 3, 3, 4, 5, 1});
  const auto predicted = longs({4, 1, 1, 1, 1, 4, 5, 3, 0, 5, 1, 2, 3, 5, 1, 0, 4, 5, 5, 0,
                                5, 2, 5, 5, 2, 4, 2, 3, 5, 4, 4, 5, 4, 1, 1, 3, 3, 4, 5, 1});
  EXPECT_NEAR(label_agreement(predicted, truth).adjusted_rand, 0.4772986051807572, 1e-12);
}

TEST(LabelAgreement, PerfectAndRenamedClustersAgreeFully) {
  const auto a = label_agreement(longs({2, 2, 0, 0, 1}), longs({10, 10, 20, 20, 30}));
  EXPECT_DOUBLE_EQ(a.pair_precision, 1.0);
  EXPECT_DOUBLE_EQ(a.pair_recall, 1.0);
  EXPECT_DOUBLE_EQ(a.adjusted_rand, 1.0);
}

TEST(LabelAgreement, OneBigClusterHasFullRecallLowPrecision) {
  const auto a = label_agreement(longs({0, 0, 0, 0}), longs({1, 1, 2, 2}));
  EXPECT_DOUBLE_EQ(a.pair_recall, 1.0);
  EXPECT_DOUBLE_EQ(a.pair_precision, 2.0 / 6.0);
  EXPECT_NEAR(a.adjusted_rand, 0.0, 1e-12);
}

TEST(LabelAgreement, RejectsMismatchedAndFloatLabels) {
  EXPECT_THROW(label_agreement(longs({0, 1}), longs({0})), c10::Error);
  EXPECT_THROW(label_agreement(torch::zeros({2}), longs({0, 1})), c10::Error);
}

}  // namespace
}  // namespace tandem::clustering
