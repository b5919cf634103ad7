#include "tandem/clustering/rerank.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/golden.h"

namespace tandem::clustering {
namespace {

using testing::error_message;
using testing::golden_cases;

TEST(Rerank, MatchesTheDenseReference) {
  for (const auto& golden : golden_cases("rerank", "clustering_golden.pt")) {
    RerankOptions options;
    options.k1 = golden.option_int("k1");
    options.k2 = golden.option_int("k2");
    options.lambda = golden.option_double("lambda");
    const auto result = rerank(golden.input("query"), golden.input("gallery"), options);
    const auto expected = golden.output("distance");
    ASSERT_EQ(result.sizes(), expected.sizes()) << golden.label();
    const double worst =
        (result.to(torch::kFloat64) - expected.to(torch::kFloat64)).abs().max().item<double>();
    EXPECT_LE(worst, 1e-6) << golden.label();
  }
}

TEST(Rerank, LambdaOneIsTheNormalisedOriginalDistance) {
  torch::manual_seed(0);
  auto q = torch::randn({5, 8});
  auto g = torch::randn({20, 8});
  RerankOptions options;
  options.k1 = 6;
  options.k2 = 2;
  options.lambda = 1.0;
  const auto result = rerank(q, g, options);
  // d⁴ of the normalised features, each query row divided by its maximum
  // over query and gallery together.
  auto all = torch::cat({q, g}).to(torch::kFloat64);
  all = all / all.norm(2, {1}, true);
  auto squared = torch::cdist(all, all).pow(2);
  auto fourth = squared * squared;
  auto expected = (fourth / fourth.amax(1, true)).narrow(0, 0, 5).narrow(1, 5, 20);
  EXPECT_TRUE(torch::allclose(result.to(torch::kFloat64), expected, 1e-5, 1e-6));
}

TEST(Rerank, RejectsMismatchedWidthsAndBadLambda) {
  EXPECT_NE(error_message([] {
              rerank(torch::randn({3, 4}), torch::randn({30, 5}));
            }).find("same feature width"),
            std::string::npos);
  RerankOptions options;
  options.lambda = 1.5;
  EXPECT_NE(error_message([&] {
              rerank(torch::randn({3, 4}), torch::randn({30, 4}), options);
            }).find("lambda must be in [0, 1]"),
            std::string::npos);
}

}  // namespace
}  // namespace tandem::clustering
