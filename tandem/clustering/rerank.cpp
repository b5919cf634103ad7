#include "tandem/clustering/rerank.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "tandem/clustering/k_reciprocal.h"
#include "tandem/clustering/tensor_checks.h"

namespace tandem::clustering {

torch::Tensor rerank(const torch::Tensor& query, const torch::Tensor& gallery,
                     const RerankOptions& options) {
  check_feature_matrix(query, "query");
  check_feature_matrix(gallery, "gallery");
  TORCH_CHECK(query.size(1) == gallery.size(1), "rerank: query and gallery must have the same ",
              "feature width, got ", query.size(1), " and ", gallery.size(1));
  TORCH_CHECK(options.k1 >= 1 && options.k2 >= 1, "rerank: k1 and k2 must be positive, got ",
              options.k1, " and ", options.k2);
  TORCH_CHECK(std::isfinite(options.lambda) && options.lambda >= 0 && options.lambda <= 1,
              "rerank: lambda must be in [0, 1], got ", options.lambda);
  const int64_t q = query.size(0);
  const int64_t g = gallery.size(0);
  const int64_t n = q + g;
  namespace F = torch::nn::functional;
  const auto normalize = [](const torch::Tensor& x) {
    return F::normalize(x.to(torch::kCPU), F::NormalizeFuncOptions().dim(1)).contiguous();
  };
  const auto all = torch::cat({normalize(query), normalize(gallery)}).contiguous();

  NeighborOptions neighbor_options;
  neighbor_options.k = std::min(std::max(options.k1 + 1, options.k2), n);
  neighbor_options.base = BaseDistance::kSquaredEuclideanSquared;
  const auto table = find_neighbors(all, neighbor_options);
  const auto encoding = k_reciprocal_encoding(all, table, BaseDistance::kSquaredEuclideanSquared,
                                              KReciprocalOptions{options.k1, options.k2});
  const auto inverted = transpose(encoding);

  // Original distance of every query to every gallery row: d⁴ / row max.
  const auto norms = table.squared_norm;  // float64
  const auto q_feat = all.narrow(0, 0, q).to(torch::kFloat64);
  const auto g_feat = all.narrow(0, q, g).to(torch::kFloat64);
  auto squared = norms.narrow(0, 0, q).unsqueeze(1) + norms.narrow(0, q, g).unsqueeze(0) -
                 2 * q_feat.mm(g_feat.t());
  auto result = (squared * squared) / table.row_max.narrow(0, 0, q).unsqueeze(1);
  // Final: (1 − λ)·jaccard + λ·original, jaccard = 1 where no column is shared.
  result = (1 - options.lambda) + options.lambda * result;
  double* out = result.data_ptr<double>();
  at::parallel_for(0, q, 16, [&](int64_t begin, int64_t end) {
    MinOverlapScratch scratch(n);
    for (int64_t i = begin; i < end; ++i) {
      // Gallery rows only (j >= q).
      for_each_min_overlap(encoding, inverted, i, q, /*sorted=*/false, scratch,
                           [&](int64_t j, double s) {
                             const double jaccard = std::max(0.0, 1.0 - s / (2.0 - s));
                             // Replace the Jaccard term 1 by the real one.
                             out[i * g + (j - q)] += (1 - options.lambda) * (jaccard - 1.0);
                           });
    }
  });
  return result.to(torch::kFloat32);
}

}  // namespace tandem::clustering
