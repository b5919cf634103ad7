#include "tandem/clustering/k_reciprocal.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace tandem::clustering {
namespace {

TEST(RoundHalfEven, MatchesPythonRound) {
  EXPECT_EQ(round_half_even(10.0), 10);
  EXPECT_EQ(round_half_even(2.5), 2);
  EXPECT_EQ(round_half_even(3.5), 4);
  EXPECT_EQ(round_half_even(7.5), 8);
  EXPECT_EQ(round_half_even(0.4), 0);
}

TEST(Transpose, GivesTheColumnsAsRowsInOrder) {
  SparseRows rows;
  rows.rows = 2;
  rows.cols = 3;
  rows.row_ptr = {0, 2, 4};
  rows.col = {0, 2, 1, 2};
  rows.value = {1, 2, 3, 4};
  const auto t = transpose(rows);
  EXPECT_EQ(t.rows, 3);
  EXPECT_EQ(t.row_ptr, (std::vector<int64_t>{0, 1, 2, 4}));
  EXPECT_EQ(t.col, (std::vector<int64_t>{0, 1, 0, 1}));
  EXPECT_EQ(t.value, (std::vector<double>{1, 3, 2, 4}));
}

// Two tight, well separated groups: every row's reciprocal set is its group.
TEST(KReciprocalEncoding, RowsAreDistributionsOverTheirGroup) {
  torch::manual_seed(0);
  auto f = torch::cat({torch::tensor({1.0f, 0.0f}).repeat({4, 1}) + 0.01 * torch::randn({4, 2}),
                       torch::tensor({0.0f, 1.0f}).repeat({4, 1}) + 0.01 * torch::randn({4, 2})});
  f = (f / f.norm(2, {1}, true)).contiguous();
  NeighborOptions neighbor_options;
  neighbor_options.k = 4;
  const auto table = find_neighbors(f, neighbor_options);
  const auto v = k_reciprocal_encoding(f, table, BaseDistance::kMmtJaccard, {3, 1});
  ASSERT_EQ(v.rows, 8);
  for (int64_t i = 0; i < 8; ++i) {
    double total = 0;
    for (int64_t e = v.row_ptr[i]; e < v.row_ptr[i + 1]; ++e) {
      EXPECT_EQ(v.col[e] / 4, i / 4) << "row " << i << " reaches the other group";
      total += v.value[e];
    }
    EXPECT_NEAR(total, 1.0, 1e-12);
    EXPECT_EQ(v.row_ptr[i + 1] - v.row_ptr[i], 4);
  }
}

TEST(KReciprocalEncoding, RejectsATableTooSmallForK1) {
  auto f = torch::randn({6, 3});
  NeighborOptions neighbor_options;
  neighbor_options.k = 3;
  const auto table = find_neighbors(f, neighbor_options);
  EXPECT_THROW(k_reciprocal_encoding(f, table, BaseDistance::kMmtJaccard, {3, 1}), c10::Error);
}

}  // namespace
}  // namespace tandem::clustering
