#include "tandem/clustering/jaccard.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/golden.h"
#include "tandem/clustering/dbscan.h"

namespace tandem::clustering {
namespace {

using testing::error_message;
using testing::golden_cases;

constexpr const char* kGolden = "clustering_golden.pt";

TEST(JaccardDistance, MatchesTheDenseReferenceOnEveryPair) {
  for (const auto& golden : golden_cases("jaccard", kGolden)) {
    JaccardOptions options;
    options.k1 = golden.option_int("k1");
    options.k2 = golden.option_int("k2");
    const auto sparse = jaccard_distance(golden.input("features"), options);
    sparse.validate();
    const auto dense = sparse.to_dense();
    const auto expected = golden.output("jaccard");
    const double worst =
        (dense.to(torch::kFloat64) - expected.to(torch::kFloat64)).abs().max().item<double>();
    EXPECT_LE(worst, 1e-6) << golden.label();
    // Exactly the pairs below 1 are stored.
    EXPECT_EQ(sparse.nnz(), (expected < 1.0f).sum().item<int64_t>()) << golden.label();
    // And DBSCAN on it, at the reference's eps, labels like scikit-learn.
    DbscanOptions dbscan_options;
    dbscan_options.eps = golden.output("eps_rho_1.6e-3").item<double>();
    dbscan_options.min_samples = 4;
    EXPECT_TRUE(torch::equal(dbscan(sparse, dbscan_options), golden.output("dbscan_labels")))
        << golden.label();
  }
}

TEST(JaccardDistance, DiagonalIsZeroAndValuesInRange) {
  torch::manual_seed(0);
  auto f = torch::randn({120, 16});
  f = (f / f.norm(2, {1}, true)).contiguous();
  const auto d = jaccard_distance(f, {});
  d.validate();
  const auto dense = d.to_dense();
  EXPECT_LT(dense.diagonal().abs().max().item<float>(), 1e-6f);
  EXPECT_GE(dense.min().item<float>(), 0.0f);
  EXPECT_LE(dense.max().item<float>(), 1.0f);
}

TEST(JaccardDistance, MemoryGrowsWithNTimesK1NotNSquared) {
  torch::manual_seed(1);
  const auto centres = torch::randn({40, 32});
  auto f = centres.repeat_interleave(50, 0) + 0.4 * torch::randn({2000, 32});
  f = (f / f.norm(2, {1}, true)).contiguous();
  const auto d = jaccard_distance(f, {});
  // Stored pairs per row stay a small multiple of k1, far below n = 2000.
  EXPECT_LT(static_cast<double>(d.nnz()) / 2000.0, 20.0 * 20.0);
  EXPECT_LT(d.nnz(), 2000 * 2000 / 4);
}

TEST(JaccardDistance, RejectsBadInputNamingIt) {
  auto nan = torch::randn({30, 4});
  nan[3][1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(error_message([&] { jaccard_distance(nan, {}); }).find("features contains NaN"),
            std::string::npos);
  JaccardOptions zero_k2;
  zero_k2.k2 = 0;
  EXPECT_NE(error_message([&] {
              jaccard_distance(torch::randn({30, 4}), zero_k2);
            }).find("k2 must be positive"),
            std::string::npos);
}

TEST(JaccardDistance, OneRowIsItsOwnNeighbourhood) {
  const auto d = jaccard_distance(torch::ones({1, 3}), {});
  EXPECT_TRUE(torch::equal(d.to_dense(), torch::zeros({1, 1})));
}

TEST(SparseDistance, DenseRoundTripAndValidation) {
  auto dense = torch::tensor({{0.0f, 0.3f, 1.0f}, {0.3f, 0.0f, 0.9f}, {1.0f, 1.0f, 0.0f}});
  const auto sparse = sparse_from_dense(dense);
  EXPECT_EQ(sparse.nnz(), 6);  // the 1.0 entries are not stored
  EXPECT_TRUE(torch::equal(sparse.row_ptr, torch::tensor({0, 2, 5, 6})));
  EXPECT_TRUE(torch::equal(sparse.to_dense(), dense));
  auto broken = sparse;
  broken.col = torch::tensor({1, 0, 0, 1, 2, 2});  // row 0 not ascending
  EXPECT_NE(
      error_message([&] { broken.validate(); }).find("columns of row 0 are not strictly ascending"),
      std::string::npos);
}

}  // namespace
}  // namespace tandem::clustering
