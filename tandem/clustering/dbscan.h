// DBSCAN on a sparse distance, with scikit-learn's exact semantics, and MMT's
// adaptive eps.
//
// Ester, Kriegel, Sander, Xu, "A Density-Based Algorithm for Discovering
// Clusters in Large Spatial Databases with Noise", KDD 1996; labelling as
// scikit-learn's dbscan_inner (metric='precomputed'); eps rule of MMT
// (Ge et al., ICLR 2020, DBSCAN variant).
#pragma once

#include <cstdint>

#include <torch/types.h>

#include "tandem/clustering/jaccard.h"

namespace tandem::clustering {

/// Parameters of dbscan.
struct DbscanOptions {
  /// Neighbourhood radius, inclusive: j is a neighbour of i if d(i, j) ≤ eps.
  double eps = 0.6;
  /// Neighbours (self included) that make a point a core point.
  int64_t min_samples = 4;
};

/// Outcome counts of a labelling.
struct ClusterStats {
  /// Number of clusters (labels 0 .. clusters − 1).
  int64_t clusters = 0;
  /// Points labelled −1.
  int64_t noise = 0;
};

/// scikit-learn's DBSCAN(eps, min_samples, metric='precomputed') on the
/// matrix `distance` stands for: row i's neighbours are the stored columns
/// with d(i, j) ≤ eps (every pair when eps ≥ 1, since unstored pairs are 1);
/// core points have at least min_samples neighbours; clusters are numbered in
/// index order of their first core point and grown depth-first; a border
/// point joins the first cluster that reaches it; the rest is −1. Returns
/// int64 (n). Zero clusters (all −1) is a valid outcome.
torch::Tensor dbscan(const SparseDistance& distance, const DbscanOptions& options);

/// Clusters and noise of an int64 labelling (−1 = noise).
ClusterStats cluster_stats(const torch::Tensor& labels);

/// MMT's eps: the mean of the round(rho·M) smallest non-zero entries of the
/// strict upper triangle (M of them, unstored 1.0 entries included), as on
/// the dense matrix. Stored zeros (identical neighbour sets) are excluded as
/// the dense rule excludes them; see docs/clustering.md for values that
/// float rounding leaves tiny but positive.
double adaptive_eps(const SparseDistance& distance, double rho = 1.6e-3);

}  // namespace tandem::clustering
