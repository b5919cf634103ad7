#include "tandem/clustering/dbscan.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/golden.h"

namespace tandem::clustering {
namespace {

using testing::error_message;
using testing::golden_cases;

constexpr const char* kGolden = "clustering_golden.pt";

SparseDistance distance_of(const testing::GoldenCase& golden) {
  if (golden.option_string("source") == "dense")
    return sparse_from_dense(golden.input("dense_distance"));
  JaccardOptions options;
  options.k1 = golden.option_int("k1");
  options.k2 = golden.option_int("k2");
  return jaccard_distance(golden.input("features"), options);
}

TEST(Dbscan, LabelsEqualScikitLearnOnTheDenseMatrix) {
  for (const auto& golden : golden_cases("dbscan", kGolden)) {
    DbscanOptions options;
    options.eps = golden.option_double("eps");
    options.min_samples = golden.option_int("min_samples");
    const auto labels = dbscan(distance_of(golden), options);
    EXPECT_TRUE(torch::equal(labels, golden.output("labels")))
        << golden.label() << "\nours     " << labels << "\nsklearn  " << golden.output("labels");
  }
}

// A chain 0–1–2 (core points with min_samples 2) and a border point 3
// reachable from the chain and from the pair 4–5.
SparseDistance chain_and_border() {
  auto dense = torch::ones({6, 6});
  dense.fill_diagonal_(0.0f);
  auto link = [&](int a, int b, float d) {
    dense[a][b] = d;
    dense[b][a] = d;
  };
  link(0, 1, 0.1f);
  link(1, 2, 0.1f);
  link(2, 3, 0.2f);
  link(3, 4, 0.2f);
  link(4, 5, 0.1f);
  return sparse_from_dense(dense);
}

TEST(Dbscan, HandCaseChainBorderAndNoise) {
  DbscanOptions options;
  options.eps = 0.15;
  options.min_samples = 2;
  // eps 0.15: {0,1,2} and {4,5} are clusters; 3 is within reach of no one.
  EXPECT_TRUE(
      torch::equal(dbscan(chain_and_border(), options), torch::tensor({0, 0, 0, -1, 1, 1})));
  // eps 0.2, min_samples 3: 3 has 3 neighbours (2, 4, itself) and is core,
  // joining everything into one cluster.
  options.eps = 0.2;
  options.min_samples = 3;
  EXPECT_TRUE(torch::equal(dbscan(chain_and_border(), options), torch::tensor({0, 0, 0, 0, 0, 0})));
}

TEST(Dbscan, ZeroClustersIsAValidOutcome) {
  DbscanOptions options;
  options.eps = 0.01;
  options.min_samples = 2;
  const auto labels = dbscan(chain_and_border(), options);
  EXPECT_TRUE(torch::equal(labels, torch::full({6}, -1, torch::kInt64)));
  const auto stats = cluster_stats(labels);
  EXPECT_EQ(stats.clusters, 0);
  EXPECT_EQ(stats.noise, 6);
}

TEST(Dbscan, EpsOfOneOrMoreReachesEveryPair) {
  DbscanOptions options;
  options.eps = 1.0;
  options.min_samples = 6;
  EXPECT_TRUE(torch::equal(dbscan(chain_and_border(), options), torch::zeros({6}, torch::kInt64)));
  options.min_samples = 7;
  EXPECT_TRUE(
      torch::equal(dbscan(chain_and_border(), options), torch::full({6}, -1, torch::kInt64)));
}

TEST(Dbscan, RejectsBadOptions) {
  DbscanOptions options;
  options.min_samples = 0;
  EXPECT_NE(error_message([&] {
              dbscan(chain_and_border(), options);
            }).find("min_samples must be at least 1"),
            std::string::npos);
  options.min_samples = 4;
  options.eps = -1;
  EXPECT_NE(error_message([&] { dbscan(chain_and_border(), options); }).find("eps must be"),
            std::string::npos);
}

TEST(AdaptiveEps, MatchesTheDenseRule) {
  for (const auto& golden : golden_cases("adaptive_eps", kGolden)) {
    JaccardOptions options;
    options.k1 = golden.option_int("k1");
    options.k2 = golden.option_int("k2");
    const double eps = adaptive_eps(jaccard_distance(golden.input("features"), options),
                                    golden.option_double("rho"));
    const double a = golden.output("eps").item<double>();
    const double b = golden.output("eps_zero_pairs_as_tiny").item<double>();
    EXPECT_GE(eps, std::min(a, b) - 1e-6) << golden.label();
    EXPECT_LE(eps, std::max(a, b) + 1e-6) << golden.label();
  }
}

TEST(AdaptiveEps, HandCase) {
  // Upper-triangle pairs: (0,1) 0.1, (1,2) 0.1, (2,3) 0.2, (3,4) 0.2,
  // (4,5) 0.1 and ten 1.0s: M = 15. rho 0.2 → top = 3 → mean(0.1, 0.1, 0.1).
  EXPECT_NEAR(adaptive_eps(chain_and_border(), 0.2), 0.1, 1e-7);
  // rho 0.4 → top = 6 → (0.1·3 + 0.2·2 + 1.0) / 6: a 1.0 entry is included.
  EXPECT_NEAR(adaptive_eps(chain_and_border(), 0.4), (0.3 + 0.4 + 1.0) / 6.0, 1e-7);
  EXPECT_NE(error_message([] { adaptive_eps(chain_and_border(), 0.01); }).find("raise rho"),
            std::string::npos);
}

}  // namespace
}  // namespace tandem::clustering
