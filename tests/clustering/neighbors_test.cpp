#include "tandem/clustering/neighbors.h"

#ifdef TANDEM_WITH_FAISS
#include <faiss/IndexFlat.h>
#endif
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/golden.h"

namespace tandem::clustering {
namespace {

using testing::error_message;

torch::Tensor unit_rows(int64_t n, int64_t d, int seed) {
  torch::manual_seed(seed);
  auto f = torch::randn({n, d});
  return (f / f.norm(2, {1}, true)).contiguous();
}

// b(i, j) for all pairs in float64, the definition.
torch::Tensor dense_base(const torch::Tensor& f, BaseDistance base) {
  const auto x = f.to(torch::kFloat64);
  const auto norms = x.pow(2).sum(1);
  const auto dots = x.mm(x.t());
  if (base == BaseDistance::kMmtJaccard) return 2 * norms.unsqueeze(0) - 2 * dots;
  const auto squared = norms.unsqueeze(1) + norms.unsqueeze(0) - 2 * dots;
  return squared * squared;
}

class ExactNeighbors : public ::testing::TestWithParam<BaseDistance> {};

TEST_P(ExactNeighbors, MatchTheDenseDefinition) {
  const auto f = unit_rows(90, 12, 1);
  NeighborOptions options;
  options.k = 11;
  options.base = GetParam();
  options.block_rows = 16;  // several blocks, one partial
  const auto table = find_neighbors(f, options);
  const auto dense = dense_base(f, GetParam());
  const auto [values, index] = dense.sort(1);
  EXPECT_TRUE(torch::equal(table.index, index.narrow(1, 0, 11)));
  EXPECT_TRUE(torch::allclose(table.distance, values.narrow(1, 0, 11), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(table.row_max, dense.amax(1), 1e-12, 1e-12));
  EXPECT_EQ(table.distance.scalar_type(), torch::kFloat64);
}

INSTANTIATE_TEST_SUITE_P(Bases, ExactNeighbors,
                         ::testing::Values(BaseDistance::kMmtJaccard,
                                           BaseDistance::kSquaredEuclideanSquared));

TEST(Neighbors, TiesAreOrderedByColumn) {
  // Rows 0, 1 and 2 are identical: every row sees them at distance 0 first.
  auto f = unit_rows(10, 4, 2);
  f[1] = f[0];
  f[2] = f[0];
  NeighborOptions options;
  options.k = 4;
  const auto table = find_neighbors(f, options);
  for (int64_t row : {0, 1, 2}) {
    EXPECT_TRUE(torch::equal(table.index[row].narrow(0, 0, 3), torch::tensor({0, 1, 2})))
        << table.index[row];
  }
}

#ifdef TANDEM_WITH_FAISS
TEST(Neighbors, IvfVisitingEveryListIsExact) {
  const auto f = unit_rows(300, 16, 3);
  NeighborOptions exact;
  exact.k = 8;
  auto ivf = exact;
  ivf.search = NeighborSearch::kIvf;
  ivf.ivf_lists = 8;
  ivf.ivf_probe = 8;
  const auto a = find_neighbors(f, exact);
  const auto b = find_neighbors(f, ivf);
  EXPECT_TRUE(torch::equal(a.index, b.index));
  EXPECT_TRUE(torch::allclose(a.row_max, b.row_max));
  EXPECT_DOUBLE_EQ(b.estimated_recall, 1.0);
}

TEST(Neighbors, IvfWithFewProbesKeepsHighRecallOnClusteredData) {
  torch::manual_seed(4);
  const auto centres = torch::randn({20, 32});
  auto f = centres.repeat_interleave(25, 0) + 0.3 * torch::randn({500, 32});
  f = (f / f.norm(2, {1}, true)).contiguous();
  NeighborOptions exact;
  exact.k = 10;
  auto ivf = exact;
  ivf.search = NeighborSearch::kIvf;
  ivf.ivf_lists = 20;
  ivf.ivf_probe = 4;
  const auto a = find_neighbors(f, exact);
  const auto b = find_neighbors(f, ivf);
  int64_t found = 0;
  for (int64_t i = 0; i < 500; ++i) {
    for (int64_t r = 0; r < 10; ++r) {
      found += (b.index[i] == a.index[i][r]).any().item<bool>();
    }
  }
  const double recall = static_cast<double>(found) / 5000.0;
  EXPECT_GT(recall, 0.95);
  EXPECT_NEAR(b.estimated_recall, recall, 0.05);  // the sampled estimate
}
#else
// A build without FAISS (TANDEM_CORE_ONLY): the IVF search says so and names
// the exact one; the exact search (the default) works.
TEST(Neighbors, IvfWithoutFaissIsAnErrorNamingTheExactSearch) {
  const auto f = unit_rows(50, 8, 3);
  NeighborOptions options;
  options.k = 5;
  options.search = NeighborSearch::kIvf;
  const std::string message = error_message([&] { find_neighbors(f, options); });
  EXPECT_NE(message.find("needs FAISS and this build has none"), std::string::npos) << message;
  EXPECT_NE(message.find("NeighborSearch::kExact"), std::string::npos) << message;
  options.search = NeighborSearch::kExact;
  EXPECT_EQ(find_neighbors(f, options).index.sizes(), (std::vector<int64_t>{50, 5}));
}
#endif  // TANDEM_WITH_FAISS

class DeviceNeighbors : public ::testing::TestWithParam<BaseDistance> {};

TEST_P(DeviceNeighbors, EqualTheExactSearchAndTheDenseDefinition) {
  const auto f = unit_rows(150, 24, 5);
  NeighborOptions exact;
  exact.k = 13;
  exact.base = GetParam();
  auto device = exact;
  device.search = NeighborSearch::kDevice;
  device.block_rows = 40;  // several products, one partial
  const auto a = find_neighbors(f, exact);
  const auto b = find_neighbors(f, device);
  EXPECT_TRUE(torch::equal(a.index, b.index));
  EXPECT_TRUE(torch::equal(a.distance, b.distance));
  EXPECT_TRUE(torch::equal(a.row_max, b.row_max));
  EXPECT_DOUBLE_EQ(b.estimated_recall, 1.0);
  const auto dense = dense_base(f, GetParam());
  EXPECT_TRUE(torch::equal(b.index, std::get<1>(dense.sort(1)).narrow(1, 0, 13)));
  // The default block size (one block here) gives the same table.
  device.block_rows = 0;
  EXPECT_TRUE(torch::equal(find_neighbors(f, device).index, b.index));
}

INSTANTIATE_TEST_SUITE_P(Bases, DeviceNeighbors,
                         ::testing::Values(BaseDistance::kMmtJaccard,
                                           BaseDistance::kSquaredEuclideanSquared));

#ifdef TANDEM_WITH_FAISS
TEST(Neighbors, DeviceSearchFindsFaissFlatsNeighbours) {
  // Unit rows: MMT's Jaccard base 2 - 2 f_i.f_j is the squared L2 distance,
  // so FAISS's exact L2 index ranks the same neighbours.
  const auto f = unit_rows(400, 32, 6);
  const int64_t n = 400, k = 20;
  faiss::IndexFlatL2 flat(32);
  flat.add(n, f.data_ptr<float>());
  std::vector<float> distances(static_cast<size_t>(n * k));
  std::vector<faiss::Index::idx_t> labels(static_cast<size_t>(n * k));
  flat.search(n, f.data_ptr<float>(), k, distances.data(), labels.data());
  NeighborOptions options;
  options.k = k;
  options.search = NeighborSearch::kDevice;
  const auto table = find_neighbors(f, options);
  const auto index = table.index.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> ours(index[i].data(), index[i].data() + k);
    std::vector<int64_t> theirs(labels.begin() + i * k, labels.begin() + (i + 1) * k);
    std::sort(ours.begin(), ours.end());
    std::sort(theirs.begin(), theirs.end());
    ASSERT_EQ(ours, theirs) << "row " << i;
  }
}
#endif  // TANDEM_WITH_FAISS

TEST(Neighbors, DeviceSearchOnTheGpuEqualsTheCpu_CUDA) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const auto f = unit_rows(300, 64, 7);
  NeighborOptions options;
  options.k = 21;
  options.search = NeighborSearch::kDevice;
  const auto cpu = find_neighbors(f, options);
  const auto gpu = find_neighbors(f.to(torch::kCUDA), options);
  EXPECT_TRUE(torch::equal(cpu.index, gpu.index));
  EXPECT_TRUE(torch::equal(cpu.row_max, gpu.row_max));
  EXPECT_TRUE(gpu.index.device().is_cpu());
}

TEST(Neighbors, RejectsKLargerThanN) {
  NeighborOptions options;
  options.k = 6;
  EXPECT_NE(error_message([&] {
              find_neighbors(torch::randn({5, 3}), options);
            }).find("k must be in [1, n = 5], got 6"),
            std::string::npos);
  EXPECT_NE(error_message([&] {
              find_neighbors(torch::randn({5, 3}, torch::kFloat64), options);
            }).find("features must be float32"),
            std::string::npos);
}

}  // namespace
}  // namespace tandem::clustering
