// K-means on FAISS, the pseudo-label generator of MMT's k-means variant.
//
// Ge, Chen, Li, "Mutual Mean-Teaching", ICLR 2020, §3.1 and §4.2: the target
// train features (averaged EMA-teacher features) are clustered into K
// classes every epoch; the normalised centroids initialise the classifiers.
#pragma once

#include <cstdint>

#include <torch/types.h>

namespace tandem::clustering {

/// Parameters of kmeans(); FAISS's ClusteringParameters where they overlap.
struct KMeansOptions {
  /// Number of clusters K; 1 ≤ K ≤ n.
  int64_t k = 500;
  /// Lloyd iterations.
  int niter = 20;
  /// Seed of FAISS's centroid initialisation; equal seeds give equal results.
  int seed = 1234;
  /// Restarts; the run with the lowest objective is kept.
  int nredo = 1;
  /// Renormalise centroids to unit length after each iteration.
  bool spherical = false;
  /// Subsample to at most this many points per centroid for training (FAISS
  /// default 256); 0 trains on every point, as sklearn does.
  int max_points_per_centroid = 0;
  /// Print FAISS's per-iteration objective.
  bool verbose = false;
};

/// Labels and centroids of one k-means run.
struct KMeansResult {
  /// int64 (n): the centroid each row is nearest to, in [0, k).
  torch::Tensor labels;
  /// float32 (k, d): the centroids.
  torch::Tensor centroids;
  /// Sum of squared distances of the rows to their centroid.
  double objective = 0.0;
};

/// Clusters the rows of `features` (n × d float32, finite) into options.k
/// clusters. Throws c10::Error for bad input (naming the argument) or k > n.
KMeansResult kmeans(const torch::Tensor& features, const KMeansOptions& options);

}  // namespace tandem::clustering
