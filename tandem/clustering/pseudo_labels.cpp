#include "tandem/clustering/pseudo_labels.h"

#include <torch/torch.h>

#include <chrono>

#include "tandem/clustering/tensor_checks.h"

namespace tandem::clustering {
namespace {

class PhaseTimer {
 public:
  explicit PhaseTimer(std::vector<std::pair<std::string, double>>* phases) : phases_(phases) {}
  void done(const std::string& phase) {
    const auto now = std::chrono::steady_clock::now();
    phases_->emplace_back(phase, std::chrono::duration<double>(now - start_).count());
    start_ = now;
  }

 private:
  std::vector<std::pair<std::string, double>>* phases_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace

torch::Tensor cluster_means(const torch::Tensor& features, const torch::Tensor& labels,
                            int64_t clusters) {
  TORCH_CHECK(features.dim() == 2 && labels.dim() == 1 && labels.size(0) == features.size(0),
              "cluster_means: features (n, d) and labels (n) must agree, got ", features.sizes(),
              " and ", labels.sizes());
  auto sums = torch::zeros({clusters, features.size(1)}, torch::kFloat64);
  auto counts = torch::zeros({clusters}, torch::kFloat64);
  if (clusters == 0) return sums.to(torch::kFloat32);
  const auto kept = labels >= 0;
  const auto kept_labels = labels.index({kept});
  sums.index_add_(0, kept_labels, features.index({kept}).to(torch::kFloat64));
  counts.index_add_(0, kept_labels, torch::ones({kept_labels.size(0)}, torch::kFloat64));
  return (sums / counts.clamp_min(1).unsqueeze(1)).to(torch::kFloat32);
}

torch::Tensor standardise_per_camera(const torch::Tensor& features, const torch::Tensor& cameras) {
  TORCH_CHECK(features.dim() == 2 && cameras.dim() == 1 && cameras.size(0) == features.size(0),
              "standardise_per_camera: features (n, d) and cameras (n) must agree, got ",
              features.sizes(), " and ", cameras.sizes());
  const torch::Tensor rows = torch::nn::functional::normalize(
      features.to(torch::kFloat32), torch::nn::functional::NormalizeFuncOptions().dim(1));
  torch::Tensor out = torch::empty_like(rows);
  const torch::Tensor ids = std::get<0>(at::_unique(cameras.to(torch::kInt64)));
  for (int64_t i = 0; i < ids.size(0); ++i) {
    const torch::Tensor mask = cameras.eq(ids[i]);
    const torch::Tensor own = rows.index({mask});
    const torch::Tensor centred = own - own.mean(0, /*keepdim=*/true);
    out.index_put_({mask}, centred / (own.std(0, /*unbiased=*/false, /*keepdim=*/true) + 1e-6));
  }
  return out;
}

PseudoLabels pseudo_labels(const torch::Tensor& features, const PseudoLabelOptions& options) {
  const auto input = to_faiss_input(features, "features");
  PseudoLabels result;
  PhaseTimer timer(&result.phase_seconds);
  if (options.algorithm == PseudoLabelOptions::Algorithm::kKMeans) {
    auto clusters = kmeans(input, options.kmeans);
    timer.done("kmeans");
    result.labels = clusters.labels;
    result.centroids = clusters.centroids;
    result.stats = {options.kmeans.k, 0};
    return result;
  }
  namespace F = torch::nn::functional;
  const auto normalized = F::normalize(input, F::NormalizeFuncOptions().dim(1)).contiguous();
  NeighborOptions neighbor_options;
  neighbor_options.k =
      std::min(std::max(options.jaccard.k1 + 1, options.jaccard.k2), normalized.size(0));
  neighbor_options.search = options.jaccard.search;
  neighbor_options.ivf_lists = options.jaccard.ivf_lists;
  neighbor_options.ivf_probe = options.jaccard.ivf_probe;
  const auto table = find_neighbors(normalized, neighbor_options);
  timer.done("neighbors");
  result.neighbor_recall = table.estimated_recall;
  TORCH_CHECK(table.estimated_recall >= options.min_ivf_recall,
              "pseudo_labels: the IVF neighbour search reached an estimated recall of ",
              table.estimated_recall, ", below min_ivf_recall = ", options.min_ivf_recall,
              "; raise ivf_probe or use the exact search");
  const auto distance = jaccard_distance_from_neighbors(normalized, table, options.jaccard);
  timer.done("jaccard");
  DbscanOptions dbscan_options = options.dbscan;
  if (options.rho.has_value()) {
    dbscan_options.eps = adaptive_eps(distance, *options.rho);
    timer.done("eps");
  }
  result.eps = dbscan_options.eps;
  result.labels = dbscan(distance, dbscan_options);
  timer.done("dbscan");
  result.stats = cluster_stats(result.labels);
  result.centroids = cluster_means(normalized, result.labels, result.stats.clusters);
  timer.done("centroids");
  return result;
}

}  // namespace tandem::clustering
