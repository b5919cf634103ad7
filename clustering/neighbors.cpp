#include "tandem/clustering/neighbors.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "tandem/clustering/tensor_checks.h"

namespace tandem::clustering {
namespace {

using FaissId = faiss::Index::idx_t;

// Candidates of the search: k columns per row and each row's farthest column.
struct Candidates {
  torch::Tensor index;     // int64 (n, k)
  torch::Tensor farthest;  // int64 (n)
};

// Turns the dot products `dots` (B × n) of a block of rows with all columns
// into their base distances, in place (float32; no n-wide temporaries).
void base_from_dots_(BaseDistance base, torch::Tensor& dots, const torch::Tensor& row_norms,
                     const torch::Tensor& col_norms) {
  dots.mul_(-2).add_(col_norms.unsqueeze(0));
  if (base == BaseDistance::kMmtJaccard) {
    dots.add_(col_norms.unsqueeze(0));  // 2·n_j − 2·f_i·f_j
  } else {
    dots.add_(row_norms.unsqueeze(1)).pow_(2);  // (n_i + n_j − 2·f_i·f_j)²
  }
}

// ‖f_i‖² of every row, in float32 (for the search) and float64 (for the
// refined values), without n × d temporaries.
std::pair<torch::Tensor, torch::Tensor> squared_norms(const torch::Tensor& features) {
  const int64_t n = features.size(0);
  const int64_t d = features.size(1);
  auto single = torch::empty({n}, torch::kFloat32);
  auto dual = torch::empty({n}, torch::kFloat64);
  const float* f = features.data_ptr<float>();
  float* out_single = single.data_ptr<float>();
  double* out_dual = dual.data_ptr<double>();
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      double sum = 0;
      for (int64_t c = 0; c < d; ++c) sum += static_cast<double>(f[i * d + c]) * f[i * d + c];
      out_dual[i] = sum;
      out_single[i] = static_cast<float>(sum);
    }
  });
  return {single, dual};
}

Candidates exact_candidates(const torch::Tensor& features, const torch::Tensor& norms,
                            const NeighborOptions& options) {
  const int64_t n = features.size(0);
  int64_t block = options.block_rows > 0 ? options.block_rows : (int64_t{4} << 20) / n;
  block = std::clamp<int64_t>(block, 1, n);
  Candidates out{torch::empty({n, options.k}, torch::kInt64), torch::empty({n}, torch::kInt64)};
  const auto columns_t = features.t();
  for (int64_t start = 0; start < n; start += block) {
    const int64_t rows = std::min(block, n - start);
    auto values = torch::mm(features.narrow(0, start, rows), columns_t);
    base_from_dots_(options.base, values, norms.narrow(0, start, rows), norms);
    out.index.narrow(0, start, rows)
        .copy_(std::get<1>(values.topk(options.k, /*dim=*/1, /*largest=*/false)));
    out.farthest.narrow(0, start, rows).copy_(values.argmax(1));
  }
  return out;
}

// Augmented vectors turn both base distances into inner products:
//   kMmtJaccard: b = 2·(n_j − f_i·f_j) = −2·⟨(f_i, 1), (f_j, −n_j)⟩;
//   squared twice: increasing in n_j − 2·f_i·f_j = −⟨(2f_i, 1), (f_j, −n_j)⟩.
// The nearest columns have the largest inner product, the farthest column
// the largest inner product with the negated query.
Candidates ivf_candidates(const torch::Tensor& features, const torch::Tensor& norms,
                          const NeighborOptions& options) {
  const int64_t n = features.size(0);
  const int64_t d = features.size(1);
  int64_t lists = options.ivf_lists > 0
                      ? options.ivf_lists
                      : std::max<int64_t>(1, static_cast<int64_t>(4 * std::sqrt(double(n))));
  lists = std::min(lists, n);
  faiss::IndexFlatIP quantizer(d + 1);
  faiss::IndexIVFFlat index(&quantizer, d + 1, lists, faiss::METRIC_INNER_PRODUCT);
  index.cp.seed = 1234;  // FAISS's k-means training: equal runs give equal lists
  {
    // The index keeps its own copy; the augmented database is dropped after.
    const auto database = torch::cat({features, -norms.unsqueeze(1)}, 1).contiguous();
    index.train(n, database.data_ptr<float>());
    index.add(n, database.data_ptr<float>());
  }
  index.nprobe = static_cast<std::size_t>(std::min(options.ivf_probe, lists));

  Candidates out{torch::empty({n, options.k}, torch::kInt64), torch::empty({n}, torch::kInt64)};
  const double scale = options.base == BaseDistance::kMmtJaccard ? 1.0 : 2.0;
  constexpr int64_t kQueryBlock = 4096;
  auto scores = torch::empty({kQueryBlock, options.k}, torch::kFloat32);
  auto far_score = torch::empty({kQueryBlock}, torch::kFloat32);
  for (int64_t start = 0; start < n; start += kQueryBlock) {
    const int64_t rows = std::min(kQueryBlock, n - start);
    const auto queries =
        torch::cat({scale * features.narrow(0, start, rows), torch::ones({rows, 1})}, 1)
            .contiguous();
    index.search(rows, queries.data_ptr<float>(), options.k, scores.data_ptr<float>(),
                 reinterpret_cast<FaissId*>(out.index.data_ptr<int64_t>() + start * options.k));
    const auto negated = (-queries).contiguous();
    index.search(rows, negated.data_ptr<float>(), 1, far_score.data_ptr<float>(),
                 reinterpret_cast<FaissId*>(out.farthest.data_ptr<int64_t>() + start));
  }
  return out;
}

// Recomputes the candidates' base distances in float64 and orders each row by
// (value, column). A slot FAISS could not fill (−1) becomes the row itself.
NeighborTable refine(const torch::Tensor& features, const torch::Tensor& norms,
                     Candidates candidates, BaseDistance base) {
  const int64_t n = features.size(0);
  const int64_t d = features.size(1);
  const int64_t k = candidates.index.size(1);
  NeighborTable table;
  table.index = candidates.index.contiguous();
  table.distance = torch::empty({n, k}, torch::kFloat64);
  table.row_max = torch::empty({n}, torch::kFloat64);
  table.squared_norm = norms.to(torch::kFloat64);
  const float* f = features.data_ptr<float>();
  const double* nn = table.squared_norm.data_ptr<double>();
  int64_t* idx = table.index.data_ptr<int64_t>();
  const int64_t* far = candidates.farthest.data_ptr<int64_t>();
  double* dist = table.distance.data_ptr<double>();
  double* row_max = table.row_max.data_ptr<double>();
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    std::vector<std::pair<double, int64_t>> row(static_cast<std::size_t>(k));
    for (int64_t i = begin; i < end; ++i) {
      double largest = -std::numeric_limits<double>::infinity();
      for (int64_t r = 0; r < k; ++r) {
        int64_t j = idx[i * k + r];
        if (j < 0) j = i;
        row[r] = {base_distance(base, f + i * d, f + j * d, d, nn[i], nn[j]), j};
        largest = std::max(largest, row[r].first);
      }
      std::sort(row.begin(), row.end());
      for (int64_t r = 0; r < k; ++r) {
        dist[i * k + r] = row[r].first;
        idx[i * k + r] = row[r].second;
      }
      const int64_t j = far[i] < 0 ? i : far[i];
      row_max[i] = std::max(largest, base_distance(base, f + i * d, f + j * d, d, nn[i], nn[j]));
    }
  });
  return table;
}

}  // namespace

double base_distance(BaseDistance base, const float* f_i, const float* f_j, int64_t d,
                     double squared_norm_i, double squared_norm_j) {
  double dot = 0;
  for (int64_t c = 0; c < d; ++c) dot += static_cast<double>(f_i[c]) * f_j[c];
  if (base == BaseDistance::kMmtJaccard) return 2 * squared_norm_j - 2 * dot;
  const double squared = squared_norm_i + squared_norm_j - 2 * dot;
  return squared * squared;
}

NeighborTable find_neighbors(const torch::Tensor& features, const NeighborOptions& options) {
  const auto input = to_faiss_input(features, "features");
  const int64_t n = input.size(0);
  TORCH_CHECK(options.k >= 1 && options.k <= n, "find_neighbors: k must be in [1, n = ", n,
              "], got ", options.k);
  TORCH_CHECK(options.ivf_probe >= 1, "find_neighbors: ivf_probe must be positive, got ",
              options.ivf_probe);
  TORCH_CHECK(options.block_rows >= 0, "find_neighbors: block_rows must be non-negative, got ",
              options.block_rows);
  const auto [norms, norms64] = squared_norms(input);
  auto candidates = options.search == NeighborSearch::kExact
                        ? exact_candidates(input, norms, options)
                        : ivf_candidates(input, norms, options);
  return refine(input, norms64, std::move(candidates), options.base);
}

}  // namespace tandem::clustering
