#include "tandem/clustering/kmeans.h"

#ifdef TANDEM_WITH_FAISS
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#endif
#include <torch/torch.h>

#include <limits>

#include "tandem/clustering/tensor_checks.h"

namespace tandem::clustering {

KMeansResult kmeans(const torch::Tensor& features, const KMeansOptions& options) {
#ifndef TANDEM_WITH_FAISS
  C10_THROW_ERROR(Error,
                  "kmeans: k-means clustering needs FAISS and this build has none "
                  "(TANDEM_CORE_ONLY); use DBSCAN on the Jaccard distance instead "
                  "(PseudoLabelOptions::Algorithm::kDbscan; a job spec's clustering: dbscan)");
#else
  const auto input = to_faiss_input(features, "features");
  const int64_t n = input.size(0);
  const int64_t d = input.size(1);
  TORCH_CHECK(options.k >= 1, "KMeansOptions.k must be at least 1, got ", options.k);
  TORCH_CHECK(options.k <= n, "KMeansOptions.k = ", options.k,
              " is larger than the number of feature rows n = ", n);
  TORCH_CHECK(options.niter >= 1, "KMeansOptions.niter must be at least 1, got ", options.niter);
  TORCH_CHECK(options.nredo >= 1, "KMeansOptions.nredo must be at least 1, got ", options.nredo);
  TORCH_CHECK(options.max_points_per_centroid >= 0,
              "KMeansOptions.max_points_per_centroid must be non-negative, got ",
              options.max_points_per_centroid);

  faiss::ClusteringParameters params;
  params.niter = options.niter;
  params.nredo = options.nredo;
  params.seed = options.seed;
  params.spherical = options.spherical;
  params.verbose = options.verbose;
  params.min_points_per_centroid = 1;  // our callers choose K; no warning spam
  params.max_points_per_centroid = options.max_points_per_centroid > 0
                                       ? options.max_points_per_centroid
                                       : std::numeric_limits<int>::max();

  faiss::Clustering clustering(static_cast<int>(d), static_cast<int>(options.k), params);
  faiss::IndexFlatL2 index(d);
  const float* data = input.data_ptr<float>();
  clustering.train(n, data, index);

  KMeansResult result;
  result.centroids =
      torch::from_blob(clustering.centroids.data(), {options.k, d}, torch::kFloat32).clone();
  // Assign every row to its nearest final centroid (the index holds them).
  std::vector<float> distances(static_cast<std::size_t>(n));
  result.labels = torch::empty({n}, torch::kInt64);
  using FaissId = faiss::Index::idx_t;
  static_assert(sizeof(FaissId) == sizeof(int64_t), "FAISS ids must be int64");
  index.search(n, data, 1, distances.data(),
               reinterpret_cast<FaissId*>(result.labels.data_ptr<int64_t>()));
  double objective = 0.0;
  for (float value : distances) objective += value;
  result.objective = objective;
  return result;
#endif  // TANDEM_WITH_FAISS
}

}  // namespace tandem::clustering
