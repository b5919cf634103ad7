// MMT's k-reciprocal Jaccard distance, sparse.
//
// Ge, Chen, Li, "Mutual Mean-Teaching", ICLR 2020 (DBSCAN variant, after
// Zhong et al., CVPR 2017): the distance that DBSCAN clusters the target
// features with. The dense original keeps several n × n matrices (4 GB each
// at n = 32,621); this one keeps O(n·k1) memory and gives the same values.
#pragma once

#include <cstdint>

#include <torch/types.h>

#include "tandem/clustering/neighbors.h"

namespace tandem::clustering {

/// Parameters of jaccard_distance.
struct JaccardOptions {
  /// Neighbourhood size of the k-reciprocal sets (MMT 20, TLlib 30).
  int64_t k1 = 20;
  /// Local query expansion width (1: none).
  int64_t k2 = 6;
  /// Exact neighbour search (default) or FAISS IVF for very large n.
  NeighborSearch search = NeighborSearch::kExact;
  /// IVF: inverted lists (0: 4·sqrt(n)) and lists visited per query.
  int64_t ivf_lists = 0;
  int64_t ivf_probe = 64;
};

/// A square sparse distance matrix in CSR form: row i stores every column j
/// whose distance is below 1 (the diagonal included), columns ascending;
/// every pair not stored has distance exactly 1.
struct SparseDistance {
  int64_t n = 0;
  /// int64 (n + 1).
  torch::Tensor row_ptr;
  /// int64 (nnz).
  torch::Tensor col;
  /// float32 (nnz), each in [0, 1).
  torch::Tensor value;

  int64_t nnz() const { return col.defined() ? col.size(0) : 0; }
  /// The dense n × n matrix (tests and small n only).
  torch::Tensor to_dense() const;
  /// Checks the invariants above; throws c10::Error naming the first breach.
  void validate() const;
};

/// MMT's compute_jaccard_dist on `features` (n × d float32, finite; MMT
/// L2-normalises them first): base distance b(i, j) = 2‖f_j‖² − 2 f_i·f_j,
/// k-reciprocal encoding (k1, k2), then d(i, j) = 1 − s/(2 − s) with
/// s = Σ_k min(V[i, k], V[j, k]). Equal to the dense algorithm up to
/// rounding (see docs/clustering.md for ties and the float64 accumulation).
SparseDistance jaccard_distance(const torch::Tensor& features, const JaccardOptions& options = {});

/// The same from a neighbour table already computed with find_neighbors
/// (BaseDistance::kMmtJaccard, k ≥ min(max(k1 + 1, k2), n)) on `features`:
/// lets a caller time, keep or reuse the search.
SparseDistance jaccard_distance_from_neighbors(const torch::Tensor& features,
                                               const NeighborTable& table,
                                               const JaccardOptions& options = {});

/// Builds a SparseDistance from a dense square matrix (entries ≥ 1 are
/// dropped; they count as exactly 1). For tests and small inputs.
SparseDistance sparse_from_dense(const torch::Tensor& dense);

}  // namespace tandem::clustering
