#include "tandem/clustering/jaccard.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "tandem/clustering/k_reciprocal.h"
#include "tandem/clustering/tensor_checks.h"

namespace tandem::clustering {
namespace {

// Jaccard values below this are rounding noise of exact zeros.
constexpr double kZeroTolerance = 1e-12;

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
  const auto table = find_neighbors(input, neighbor_options);
  const auto encoding = k_reciprocal_encoding(input, table, BaseDistance::kMmtJaccard,
                                              KReciprocalOptions{options.k1, options.k2});
  const auto inverted = transpose(encoding);

  // s[i, j] = Σ_k min(V[i, k], V[j, k]) over the columns both rows use.
  std::vector<std::vector<std::pair<int64_t, float>>> rows(static_cast<std::size_t>(n));
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    std::vector<double> shared(static_cast<std::size_t>(n), 0.0);
    std::vector<int64_t> touched;
    for (int64_t i = begin; i < end; ++i) {
      touched.clear();
      for (int64_t e = encoding.row_ptr[i]; e < encoding.row_ptr[i + 1]; ++e) {
        const int64_t k = encoding.col[e];
        const double v_ik = encoding.value[e];
        for (int64_t t = inverted.row_ptr[k]; t < inverted.row_ptr[k + 1]; ++t) {
          const int64_t j = inverted.col[t];
          if (shared[j] == 0.0) touched.push_back(j);
          shared[j] += std::min(v_ik, inverted.value[t]);
        }
      }
      std::sort(touched.begin(), touched.end());
      auto& row = rows[static_cast<std::size_t>(i)];
      for (const int64_t j : touched) {
        const double s = shared[j];
        shared[j] = 0.0;
        double exact = 1.0 - s / (2.0 - s);
        // Pairs with identical encodings are 0 in exact arithmetic and come
        // out as float64 rounding noise; distinct values are far above 1e-12.
        if (exact < kZeroTolerance) exact = 0.0;
        const auto distance = static_cast<float>(exact);
        if (distance < 1.0f) row.emplace_back(j, distance);
      }
    }
  });

  SparseDistance result;
  result.n = n;
  result.row_ptr = torch::empty({n + 1}, torch::kInt64);
  int64_t* ptr = result.row_ptr.data_ptr<int64_t>();
  ptr[0] = 0;
  for (int64_t i = 0; i < n; ++i) {
    ptr[i + 1] = ptr[i] + static_cast<int64_t>(rows[static_cast<std::size_t>(i)].size());
  }
  result.col = torch::empty({ptr[n]}, torch::kInt64);
  result.value = torch::empty({ptr[n]}, torch::kFloat32);
  int64_t* col = result.col.data_ptr<int64_t>();
  float* value = result.value.data_ptr<float>();
  at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      int64_t at = ptr[i];
      for (const auto& [j, distance] : rows[static_cast<std::size_t>(i)]) {
        col[at] = j;
        value[at++] = distance;
      }
    }
  });
  return result;
}

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
