#include "tandem/clustering/jaccard.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "tandem/clustering/k_reciprocal.h"
#include "tandem/clustering/tensor_checks.h"

namespace tandem::clustering {
namespace {

// Jaccard values below this are rounding noise of exact zeros.
constexpr double kZeroTolerance = 1e-12;

// The encoding and the sparse intersection, on checked input.
SparseDistance jaccard_from_table(const torch::Tensor& input, const NeighborTable& table,
                                  const JaccardOptions& options);

}  // namespace

torch::Tensor SparseDistance::to_dense() const {
  auto dense = torch::ones({n, n}, torch::kFloat32);
  if (nnz() == 0) return dense;
  const auto row_of_entry = torch::arange(n).repeat_interleave(row_ptr.diff());
  dense.index_put_({row_of_entry, col}, value);
  return dense;
}

void SparseDistance::validate() const {
  TORCH_CHECK(n >= 1, "SparseDistance: n must be positive, got ", n);
  TORCH_CHECK(row_ptr.defined() && row_ptr.scalar_type() == torch::kInt64 && row_ptr.dim() == 1 &&
                  row_ptr.size(0) == n + 1,
              "SparseDistance: row_ptr must be int64 (n + 1) = (", n + 1, ")");
  TORCH_CHECK(col.defined() && col.scalar_type() == torch::kInt64 && col.dim() == 1,
              "SparseDistance: col must be a 1-D int64 tensor");
  TORCH_CHECK(value.defined() && value.scalar_type() == torch::kFloat32 && value.dim() == 1 &&
                  value.size(0) == col.size(0),
              "SparseDistance: value must be float32 with as many entries as col");
  const auto ptr = row_ptr.contiguous();
  const int64_t* p = ptr.data_ptr<int64_t>();
  TORCH_CHECK(p[0] == 0 && p[n] == col.size(0), "SparseDistance: row_ptr must run from 0 to nnz");
  const auto cols = col.contiguous();
  const int64_t* c = cols.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(p[i] <= p[i + 1], "SparseDistance: row_ptr decreases at row ", i);
    for (int64_t e = p[i]; e < p[i + 1]; ++e) {
      TORCH_CHECK(c[e] >= 0 && c[e] < n, "SparseDistance: column ", c[e], " in row ", i,
                  " is outside [0, ", n, ")");
      TORCH_CHECK(e == p[i] || c[e - 1] < c[e], "SparseDistance: columns of row ", i,
                  " are not strictly ascending");
    }
  }
  TORCH_CHECK(col.size(0) == 0 || (value.min().item<float>() >= 0 && value.max().item<float>() < 1),
              "SparseDistance: values must lie in [0, 1)");
}

SparseDistance jaccard_distance(const torch::Tensor& features, const JaccardOptions& options) {
  const auto input = to_faiss_input(features, "features");
  const int64_t n = input.size(0);
  TORCH_CHECK(options.k1 >= 1, "jaccard_distance: k1 must be positive, got ", options.k1);
  TORCH_CHECK(options.k2 >= 1, "jaccard_distance: k2 must be positive, got ", options.k2);

  NeighborOptions neighbor_options;
  // k1 + 1 > n (tiny inputs): every row's sets span all n rows, as in the
  // dense original.
  neighbor_options.k = std::min(std::max(options.k1 + 1, options.k2), n);
  neighbor_options.base = BaseDistance::kMmtJaccard;
  neighbor_options.search = options.search;
  neighbor_options.ivf_lists = options.ivf_lists;
  neighbor_options.ivf_probe = options.ivf_probe;
  return jaccard_from_table(input, find_neighbors(input, neighbor_options), options);
}

SparseDistance jaccard_distance_from_neighbors(const torch::Tensor& features,
                                               const NeighborTable& table,
                                               const JaccardOptions& options) {
  const auto input = to_faiss_input(features, "features");
  TORCH_CHECK(table.index.defined() && table.index.size(0) == input.size(0),
              "jaccard_distance_from_neighbors: the table does not belong to these ", input.size(0),
              " feature rows");
  TORCH_CHECK(options.k1 >= 1 && options.k2 >= 1,
              "jaccard_distance_from_neighbors: k1 and k2 must be positive");
  return jaccard_from_table(input, table, options);
}

namespace {

SparseDistance jaccard_from_table(const torch::Tensor& input, const NeighborTable& table,
                                  const JaccardOptions& options) {
  const int64_t n = input.size(0);
  const auto encoding = k_reciprocal_encoding(input, table, BaseDistance::kMmtJaccard,
                                              KReciprocalOptions{options.k1, options.k2});
  const auto inverted = transpose(encoding);

  // s[i, j] = Σ_k min(V[i, k], V[j, k]) over the columns both rows use.
  // Rows are processed in blocks (in parallel within a block) and appended
  // to the final arrays, so memory peaks at the result plus one block.
  TORCH_CHECK(n < (int64_t{1} << 31), "jaccard_distance: n = ", n, " rows is too many");
  constexpr int64_t kBlockRows = 2048;
  auto row_ptr = std::make_unique<std::vector<int64_t>>(static_cast<std::size_t>(n) + 1, 0);
  auto cols = std::make_unique<std::vector<int64_t>>();
  auto values = std::make_unique<std::vector<float>>();
  std::vector<std::vector<std::pair<int32_t, float>>> block_rows(
      static_cast<std::size_t>(std::min(kBlockRows, n)));
  for (int64_t first = 0; first < n; first += kBlockRows) {
    const int64_t rows = std::min(kBlockRows, n - first);
    at::parallel_for(0, rows, 32, [&](int64_t begin, int64_t end) {
      MinOverlapScratch scratch(n);
      for (int64_t r = begin; r < end; ++r) {
        auto& row = block_rows[static_cast<std::size_t>(r)];
        row.clear();
        for_each_min_overlap(encoding, inverted, first + r, 0, /*sorted=*/true, scratch,
                             [&](int64_t j, double s) {
                               double exact = 1.0 - s / (2.0 - s);
                               // Pairs with identical encodings are 0 in exact
                               // arithmetic and come out as float64 rounding
                               // noise; distinct values are far above 1e-12.
                               if (exact < kZeroTolerance) exact = 0.0;
                               const auto distance = static_cast<float>(exact);
                               if (distance < 1.0f)
                                 row.emplace_back(static_cast<int32_t>(j), distance);
                             });
      }
    });
    std::size_t block_nnz = 0;
    for (int64_t r = 0; r < rows; ++r) block_nnz += block_rows[static_cast<std::size_t>(r)].size();
    if (first == 0) {  // reserve from the first block's density (5% slack)
      const auto estimate =
          static_cast<std::size_t>(1.05 * static_cast<double>(block_nnz) * static_cast<double>(n) /
                                   static_cast<double>(rows));
      cols->reserve(estimate);
      values->reserve(estimate);
    }
    for (int64_t r = 0; r < rows; ++r) {
      for (const auto& [j, distance] : block_rows[static_cast<std::size_t>(r)]) {
        cols->push_back(j);
        values->push_back(distance);
      }
      (*row_ptr)[static_cast<std::size_t>(first + r) + 1] = static_cast<int64_t>(cols->size());
    }
  }

  // Hand the arrays to tensors without copying them.
  const auto adopt = [](auto holder, torch::ScalarType type) {
    using Vector = typename decltype(holder)::element_type;
    auto* raw = holder.release();
    const auto size = static_cast<int64_t>(raw->size());
    return torch::from_blob(
        raw->data(), {size}, [raw](void*) { delete raw; }, torch::TensorOptions().dtype(type));
    static_cast<void>(sizeof(Vector));
  };
  SparseDistance result;
  result.n = n;
  result.row_ptr = adopt(std::move(row_ptr), torch::kInt64);
  result.col = adopt(std::move(cols), torch::kInt64);
  result.value = adopt(std::move(values), torch::kFloat32);
  return result;
}

}  // namespace

SparseDistance sparse_from_dense(const torch::Tensor& dense) {
  TORCH_CHECK(dense.dim() == 2 && dense.size(0) == dense.size(1) && dense.size(0) >= 1,
              "sparse_from_dense: dense must be a non-empty square matrix, got shape ",
              dense.sizes());
  const auto matrix = dense.to(torch::kFloat32).contiguous();
  TORCH_CHECK(torch::isfinite(matrix).all().item<bool>() && matrix.min().item<float>() >= 0,
              "sparse_from_dense: dense must hold finite non-negative distances");
  const auto stored = matrix < 1.0f;
  SparseDistance result;
  result.n = matrix.size(0);
  const auto counts = stored.sum(1);
  result.row_ptr = torch::cat({torch::zeros({1}, torch::kInt64), counts.cumsum(0)});
  const auto where = stored.nonzero();  // row-major order: rows, then columns ascending
  result.col = where.select(1, 1).contiguous();
  result.value = matrix.index({stored}).contiguous();
  return result;
}

}  // namespace tandem::clustering
