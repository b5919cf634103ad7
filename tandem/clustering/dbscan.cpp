#include "tandem/clustering/dbscan.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "tandem/clustering/k_reciprocal.h"

namespace tandem::clustering {

torch::Tensor dbscan(const SparseDistance& distance, const DbscanOptions& options) {
  distance.validate();
  TORCH_CHECK(std::isfinite(options.eps) && options.eps >= 0,
              "dbscan: eps must be a non-negative number, got ", options.eps);
  TORCH_CHECK(options.min_samples >= 1, "dbscan: min_samples must be at least 1, got ",
              options.min_samples);
  const int64_t n = distance.n;
  auto labels = torch::full({n}, -1, torch::kInt64);
  int64_t* label = labels.data_ptr<int64_t>();
  if (options.eps >= 1.0) {
    // Every pair is within reach: one cluster if the points are core at all.
    if (n >= options.min_samples) labels.fill_(0);
    return labels;
  }
  const auto ptr_t = distance.row_ptr.contiguous();
  const auto col_t = distance.col.contiguous();
  const auto val_t = distance.value.contiguous();
  const int64_t* ptr = ptr_t.data_ptr<int64_t>();
  const int64_t* col = col_t.data_ptr<int64_t>();
  const float* val = val_t.data_ptr<float>();
  const auto eps = static_cast<float>(options.eps);

  // Neighbourhoods: stored columns with d ≤ eps (ascending, like
  // scikit-learn's radius_neighbors on a precomputed matrix).
  std::vector<int64_t> neighbor_ptr(static_cast<std::size_t>(n) + 1, 0);
  std::vector<int64_t> neighbors;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t e = ptr[i]; e < ptr[i + 1]; ++e) {
      if (val[e] <= eps) neighbors.push_back(col[e]);
    }
    neighbor_ptr[static_cast<std::size_t>(i) + 1] = static_cast<int64_t>(neighbors.size());
  }
  std::vector<char> core(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    core[i] = neighbor_ptr[i + 1] - neighbor_ptr[i] >= options.min_samples;
  }
  // scikit-learn's dbscan_inner: depth-first growth from each unlabelled core.
  int64_t next_label = 0;
  std::vector<int64_t> stack;
  for (int64_t start = 0; start < n; ++start) {
    if (label[start] != -1 || !core[start]) continue;
    int64_t i = start;
    while (true) {
      if (label[i] == -1) {
        label[i] = next_label;
        if (core[i]) {
          for (int64_t e = neighbor_ptr[i]; e < neighbor_ptr[i + 1]; ++e) {
            if (label[neighbors[e]] == -1) stack.push_back(neighbors[e]);
          }
        }
      }
      if (stack.empty()) break;
      i = stack.back();
      stack.pop_back();
    }
    ++next_label;
  }
  return labels;
}

ClusterStats cluster_stats(const torch::Tensor& labels) {
  TORCH_CHECK(labels.dim() == 1 && labels.scalar_type() == torch::kInt64,
              "cluster_stats: labels must be a 1-D int64 tensor");
  ClusterStats stats;
  if (labels.numel() == 0) return stats;
  stats.noise = (labels == -1).sum().item<int64_t>();
  stats.clusters = std::max<int64_t>(0, labels.max().item<int64_t>() + 1);
  return stats;
}

double adaptive_eps(const SparseDistance& distance, double rho) {
  distance.validate();
  TORCH_CHECK(std::isfinite(rho) && rho > 0 && rho <= 1,
              "adaptive_eps: rho must be in (0, 1], got ", rho);
  const int64_t n = distance.n;
  TORCH_CHECK(n >= 2, "adaptive_eps: needs at least 2 points, got ", n);
  const auto ptr_t = distance.row_ptr.contiguous();
  const auto col_t = distance.col.contiguous();
  const auto val_t = distance.value.contiguous();
  const int64_t* ptr = ptr_t.data_ptr<int64_t>();
  const int64_t* col = col_t.data_ptr<int64_t>();
  const float* val = val_t.data_ptr<float>();
  // Stored strict-upper entries: zeros are excluded (as the dense rule's
  // "non-zero"), the rest are the candidates below 1.
  std::vector<float> positive;
  int64_t zeros = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t e = ptr[i]; e < ptr[i + 1]; ++e) {
      if (col[e] <= i) continue;
      if (val[e] == 0.0f) {
        ++zeros;
      } else {
        positive.push_back(val[e]);
      }
    }
  }
  const int64_t pairs = n * (n - 1) / 2;
  const int64_t nonzero = pairs - zeros;  // M: stored positives + unstored 1.0s
  const int64_t top = round_half_even(rho * static_cast<double>(nonzero));
  TORCH_CHECK(top >= 1, "adaptive_eps: rho = ", rho, " selects no distance out of M = ", nonzero,
              " (round(rho·M) = 0); raise rho");
  const auto taken = std::min<int64_t>(top, static_cast<int64_t>(positive.size()));
  std::nth_element(positive.begin(), positive.begin() + taken, positive.end());
  double sum = 0;
  for (int64_t e = 0; e < taken; ++e) sum += positive[static_cast<std::size_t>(e)];
  sum += static_cast<double>(top - taken) * 1.0;  // unstored entries are exactly 1
  return sum / static_cast<double>(top);
}

}  // namespace tandem::clustering
