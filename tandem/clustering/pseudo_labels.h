// Pseudo labels of one MMT epoch: k-means, or Jaccard distance + DBSCAN, with
// the cluster centroids the classifiers are reset from.
//
// Ge, Chen, Li, "Mutual Mean-Teaching", ICLR 2020, §3.1 and the DBSCAN
// variant of the authors' code (notes §4). Used in-process by the trainer and
// behind the ClusteringService.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <c10/util/Optional.h>
#include <torch/types.h>

#include "tandem/clustering/dbscan.h"
#include "tandem/clustering/jaccard.h"
#include "tandem/clustering/kmeans.h"

namespace tandem::clustering {

/// Which clustering produces the pseudo labels, with its parameters.
struct PseudoLabelOptions {
  enum class Algorithm { kKMeans, kDbscan };
  Algorithm algorithm = Algorithm::kDbscan;
  /// k-means: K, iterations, seed.
  KMeansOptions kmeans;
  /// DBSCAN: the Jaccard distance it runs on.
  JaccardOptions jaccard;
  /// DBSCAN: eps and min_samples (eps is ignored when rho is set).
  DbscanOptions dbscan;
  /// DBSCAN: MMT's adaptive eps with this rho (notes §6.4); none: dbscan.eps.
  std::optional<double> rho = 1.6e-3;
  /// DBSCAN with IVF search: below this estimated neighbour recall the
  /// clustering fails with an error instead of returning poor labels.
  double min_ivf_recall = 0.9;
};

/// The labels of one clustering and what the trainer needs next.
struct PseudoLabels {
  /// int64 (n): cluster of each row, −1 for DBSCAN noise.
  torch::Tensor labels;
  /// float32 (K, d): mean feature of each cluster (k-means: its centroids).
  torch::Tensor centroids;
  ClusterStats stats;
  /// DBSCAN radius used (0 for k-means).
  double eps = 0.0;
  /// Estimated recall of the neighbour search (1 for exact search, k-means).
  double neighbor_recall = 1.0;
  /// Wall time of each phase, in order.
  std::vector<std::pair<std::string, double>> phase_seconds;
};

/// Clusters `features` (n × d float32, finite). k-means clusters them as
/// given; the DBSCAN path L2-normalises them first (as MMT does). Zero DBSCAN
/// clusters is a valid outcome (stats.clusters == 0, empty centroids).
PseudoLabels pseudo_labels(const torch::Tensor& features, const PseudoLabelOptions& options);

/// Mean of the rows of `features` in each cluster 0 .. clusters − 1 of
/// `labels` (−1 rows ignored): (clusters, d) float32.
torch::Tensor cluster_means(const torch::Tensor& features, const torch::Tensor& labels,
                            int64_t clusters);

/// The clustering input with each camera's style removed: rows
/// L2-normalised, then, per camera (`cameras`, int64 (n)), every dimension
/// centred on that camera's mean and divided by its standard deviation
/// (population, + 1e-6). A target image's nearest neighbours are otherwise
/// mostly the same camera's people, and DBSCAN's clusters stay inside one or
/// two cameras; the idea of camera-based BatchNorm (Zhuang et al., ECCV
/// 2020) applied to what clustering sees (docs/training.md, the adaptation
/// study). (n, d) float32.
torch::Tensor standardise_per_camera(const torch::Tensor& features, const torch::Tensor& cameras);

}  // namespace tandem::clustering
