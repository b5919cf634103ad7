// k-reciprocal encoding, the shared core of MMT's Jaccard distance and of
// k-reciprocal re-ranking.
//
// Zhong, Zheng, Cao, Li, "Re-ranking Person Re-identification with
// k-reciprocal Encoding", CVPR 2017, §3.2–3.4; as used for clustering by MMT
// (notes §6.3) and for evaluation (notes §6.2). Everything is sparse: memory
// grows with n·k1, never n².
#pragma once

#include <algorithm>
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

/// Per-thread scratch of for_each_min_overlap: one accumulator per row.
struct MinOverlapScratch {
  explicit MinOverlapScratch(int64_t rows) : shared(static_cast<std::size_t>(rows), 0.0) {}
  std::vector<double> shared;
  std::vector<int64_t> touched;
};

/// The Jaccard numerator of the k-reciprocal encodings (Zhong et al., eq. 10;
/// notes' Jaccard section): s_ij = Σ_k min(V[i, k], V[j, k]) of row i of
/// `encoding` against every row j ≥ `first_row` that shares a column with it,
/// through `inverted` = transpose(encoding). Calls visit(j, s_ij) once per
/// such j, in ascending j when `sorted`, else in the order j was reached.
/// The shared kernel of jaccard_distance and re-ranking.
template <typename Visit>
void for_each_min_overlap(const SparseRows& encoding, const SparseRows& inverted, int64_t i,
                          int64_t first_row, bool sorted, MinOverlapScratch& scratch,
                          Visit&& visit) {
  auto& shared = scratch.shared;
  auto& touched = scratch.touched;
  touched.clear();
  for (int64_t e = encoding.row_ptr[i]; e < encoding.row_ptr[i + 1]; ++e) {
    const int64_t k = encoding.col[e];
    const double v_ik = encoding.value[e];
    for (int64_t t = inverted.row_ptr[k]; t < inverted.row_ptr[k + 1]; ++t) {
      const int64_t j = inverted.col[t];
      if (j < first_row) continue;
      if (shared[j] == 0.0) touched.push_back(j);
      shared[j] += v_ik < inverted.value[t] ? v_ik : inverted.value[t];
    }
  }
  if (sorted) std::sort(touched.begin(), touched.end());
  for (const int64_t j : touched) {
    const double s = shared[j];
    shared[j] = 0.0;
    visit(j, s);
  }
}

/// Python's round(x) for x ≥ 0: halves go to the even neighbour (round(2.5) = 2).
int64_t round_half_even(double x);

}  // namespace tandem::clustering
