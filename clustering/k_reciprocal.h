// k-reciprocal encoding, the shared core of MMT's Jaccard distance and of
// k-reciprocal re-ranking.
//
// Zhong, Zheng, Cao, Li, "Re-ranking Person Re-identification with
// k-reciprocal Encoding", CVPR 2017, §3.2–3.4; as used for clustering by MMT
// (notes §6.3) and for evaluation (notes §6.2). Everything is sparse: memory
// grows with n·k1, never n².
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "tandem/clustering/neighbors.h"

namespace tandem::clustering {

/// Rows of a sparse matrix (CSR) of doubles, columns ascending in each row.
struct SparseRows {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<int64_t> row_ptr;  // rows + 1
  std::vector<int64_t> col;      // nnz
  std::vector<double> value;     // nnz
  int64_t nnz() const { return static_cast<int64_t>(col.size()); }
};

/// Parameters of the encoding.
struct KReciprocalOptions {
  /// Neighbourhood size of the k-reciprocal sets R(i, k1).
  int64_t k1 = 20;
  /// Local query expansion over the k2 nearest rows (1: none).
  int64_t k2 = 6;
};

/// The encoding V (after query expansion) of every row of `features`, given
/// their neighbour table (at least k1 + 1 and k2 neighbours per row):
///   R(i, k) = {j among the k + 1 nearest of i : i among the k + 1 nearest of j};
///   E_i = R(i, k1) ∪ every R(c, round(k1/2)), c ∈ R(i, k1), that shares more
///         than 2/3 of its members with R(i, k1);
///   V[i, j] = exp(−b(i, j)/max_a b(i, a)) normalised over j ∈ E_i;
///   V_qe[i] = mean of V over the k2 nearest rows of i (V itself when k2 = 1).
SparseRows k_reciprocal_encoding(const torch::Tensor& features, const NeighborTable& table,
                                 BaseDistance base, const KReciprocalOptions& options);

/// The columns of `rows` as sparse rows (the inverted index of Zhong et al.).
SparseRows transpose(const SparseRows& rows);

/// Python's round(x) for x ≥ 0: halves go to the even neighbour (round(2.5) = 2).
int64_t round_half_even(double x);

}  // namespace tandem::clustering
