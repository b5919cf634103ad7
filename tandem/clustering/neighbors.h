// Nearest neighbours under the base distances of k-reciprocal encoding, found
// in one blocked pass together with every row's largest distance.
//
// Both MMT's Jaccard distance (notes §6.3) and k-reciprocal re-ranking
// (Zhong, Zheng, Cao, Li, "Re-ranking Person Re-identification with
// k-reciprocal Encoding", CVPR 2017) rank each row by a base distance b(i, j)
// and divide it by the row's largest value max_j b(i, j). The largest value
// needs a full pass over the data as much as the neighbours do, so both come
// out of one blocked matrix product (exact), or from FAISS IVF searches for
// very large n (approximate).
#pragma once

#include <cstdint>

#include <torch/types.h>

namespace tandem::clustering {

/// The base distance b(i, j) of row i to column j, with n_j = ‖f_j‖².
enum class BaseDistance {
  /// 2·n_j − 2·f_i·f_j: MMT's compute_jaccard_dist (the norm term of the
  /// *other* point only; the squared Euclidean distance for unit vectors).
  kMmtJaccard,
  /// (n_i + n_j − 2·f_i·f_j)²: the squared Euclidean distance squared again,
  /// as k-reciprocal re-ranking does.
  kSquaredEuclideanSquared,
};

/// How neighbours are searched.
enum class NeighborSearch {
  /// Exact: blocked matrix products over all pairs (O(n²·d) time, O(n·k)
  /// memory).
  kExact,
  /// FAISS IndexIVFFlat (inner product on augmented vectors): approximate
  /// neighbours and row maxima, for very large n.
  kIvf,
  /// Exact, on the features' own device (a GPU's features stay there):
  /// blocks of rows against all columns by one LibTorch matrix product, the
  /// k smallest per row by torch::topk and the largest by argmax; only the
  /// (n, k) candidates come back to the host for the float64 refinement.
  /// The same neighbours as kExact and as FAISS's flat index.
  kDevice,
};

/// Parameters of find_neighbors.
struct NeighborOptions {
  /// Neighbours per row, the row itself included.
  int64_t k = 21;
  /// The base distance.
  BaseDistance base = BaseDistance::kMmtJaccard;
  /// Exact or IVF search.
  NeighborSearch search = NeighborSearch::kExact;
  /// IVF: number of inverted lists (0: 4·sqrt(n)).
  int64_t ivf_lists = 0;
  /// IVF: lists visited per query.
  int64_t ivf_probe = 64;
  /// Exact: tile size (rows and columns) of the Gram-matrix products (0: 2048).
  /// Device: rows per product (0: as many as keep one block of rows × n
  /// base distances within 256 MiB).
  int64_t block_rows = 0;
};

/// The k nearest columns of every row and every row's largest distance. The
/// search runs in float32; the values of the pairs it selects are then
/// recomputed in float64, and each row is ordered by (value, column).
struct NeighborTable {
  /// int64 (n, k): columns in ascending b(i, ·), ties by column.
  torch::Tensor index;
  /// float64 (n, k): b(i, index[i, r]).
  torch::Tensor distance;
  /// float64 (n): max over all j of b(i, j).
  torch::Tensor row_max;
  /// float64 (n): n_i = ‖f_i‖², as used in b.
  torch::Tensor squared_norm;
  /// Fraction of the true k nearest found: 1 for the exact search; for IVF,
  /// measured on a sample of up to 256 rows against an exact search.
  double estimated_recall = 1.0;
};

/// Neighbours of the rows of `features` (n × d float32, finite, on any device
/// for kDevice; copied to the CPU for the others) among themselves. k ≤ n;
/// throws c10::Error for bad input.
NeighborTable find_neighbors(const torch::Tensor& features, const NeighborOptions& options);

/// b(i, j) for one pair of rows of length d, in float64 (n_i, n_j = their
/// squared norms).
double base_distance(BaseDistance base, const float* f_i, const float* f_j, int64_t d,
                     double squared_norm_i, double squared_norm_j);

}  // namespace tandem::clustering
