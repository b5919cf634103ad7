// k-reciprocal re-ranking of query-to-gallery distances for evaluation.
//
// Zhong, Zheng, Cao, Li, "Re-ranking Person Re-identification with
// k-reciprocal Encoding", CVPR 2017 (notes §6.2). Sparse inside: never a
// dense (q + g)² matrix.
#pragma once

#include <cstdint>

#include <torch/types.h>

#include "tandem/clustering/neighbors.h"

namespace tandem::clustering {

/// Parameters of rerank.
struct RerankOptions {
  /// Neighbourhood size of the k-reciprocal sets.
  int64_t k1 = 20;
  /// Local query expansion width (1: none).
  int64_t k2 = 6;
  /// Weight of the original distance in the final one.
  double lambda = 0.3;
};

/// Re-ranked distances (q, g) float32 between `query` (q × d) and `gallery`
/// (g × d) float32 features, L2-normalised first. The original distance is
/// the squared Euclidean distance, squared again and divided by its row's
/// maximum over query and gallery together; the final distance is
/// (1 − λ)·Jaccard + λ·original with the Jaccard distance of the
/// k-reciprocal encodings (k1, k2) over all q + g points.
torch::Tensor rerank(const torch::Tensor& query, const torch::Tensor& gallery,
                     const RerankOptions& options = {});

}  // namespace tandem::clustering
