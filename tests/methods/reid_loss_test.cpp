#include "tandem/methods/reid_loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace tandem::methods {
namespace {

TEST(PairwiseEuclideanDistance, HandComputedTinyCase) {
  // x0 = (0, 0), x1 = (3, 4); y0 = (0, 4): distances 4 and 3, and 0 clamped.
  auto x = torch::tensor({{0.0f, 0.0f}, {3.0f, 4.0f}});
  auto y = torch::tensor({{0.0f, 4.0f}, {0.0f, 0.0f}});
  auto d = pairwise_euclidean_distance(x, y);
  ASSERT_EQ(d.sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_FLOAT_EQ(d[0][0].item<float>(), 4.0f);
  EXPECT_NEAR(d[0][1].item<float>(), 1e-6f, 1e-9f);  // sqrt(1e-12), not 0
  EXPECT_FLOAT_EQ(d[1][0].item<float>(), 3.0f);
  EXPECT_FLOAT_EQ(d[1][1].item<float>(), 5.0f);
}

TEST(PairwiseEuclideanDistance, MatchesCdistOffTheDiagonal) {
  torch::manual_seed(0);
  auto x = torch::randn({7, 5}, torch::kFloat64);
  auto y = torch::randn({3, 5}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(pairwise_euclidean_distance(x, y), torch::cdist(x, y), 1e-10, 1e-10));
}

TEST(PairwiseEuclideanDistance, SelfDistanceHasFiniteGradient) {
  auto x = torch::randn({4, 3}, torch::requires_grad());
  pairwise_euclidean_distance(x, x).sum().backward();
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
}

TEST(PairwiseEuclideanDistance, KeepsBfloat16) {
  auto x = torch::randn({4, 3}).to(torch::kBFloat16);
  EXPECT_EQ(pairwise_euclidean_distance(x, x).scalar_type(), torch::kBFloat16);
}

TEST(PairwiseEuclideanDistance, RejectsBadInputNamingTheArgument) {
  auto good = torch::randn({4, 3});
  EXPECT_THROW(
      {
        try {
          pairwise_euclidean_distance(torch::randn({4}), good);
        } catch (const c10::Error& e) {
          EXPECT_NE(std::string(e.what()).find("x must be 2-D"), std::string::npos);
          throw;
        }
      },
      c10::Error);
  EXPECT_THROW(pairwise_euclidean_distance(good, torch::randn({4, 2})), c10::Error);
  EXPECT_THROW(pairwise_euclidean_distance(good, torch::ones({4, 3}, torch::kInt64)), c10::Error);
}

}  // namespace
}  // namespace tandem::methods
