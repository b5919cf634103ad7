// Retrieval metrics of person re-identification: mean average precision and
// the CMC curve under the Market-1501 protocol.
//
// Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015;
// computed as MMT and TLlib do (notes §6.1): for each query, gallery images of
// the same identity AND the same camera are removed; queries without a valid
// match are skipped; AP equals scikit-learn's average_precision_score (tied
// distances grouped); CMC counts the first match, ties ordered by gallery
// index.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace tandem::clustering {

/// Metrics of one evaluation.
struct RetrievalMetrics {
  /// Mean of the per-query average precisions, in [0, 1].
  double mean_ap = 0.0;
  /// cmc[r] = fraction of queries whose first match is within rank r + 1
  /// (cmc[0] is rank-1), up to rank 100 (or the gallery size).
  std::vector<double> cmc;
  /// Queries that had at least one valid match (the others are skipped).
  int64_t valid_queries = 0;
};

/// Metrics of a (q, g) distance matrix (smaller is closer) with int64 ids
/// and cameras of queries (q) and gallery (g). Throws c10::Error for bad
/// shapes or when no query has a valid match.
RetrievalMetrics evaluate(const torch::Tensor& distances, const torch::Tensor& query_ids,
                          const torch::Tensor& query_cams, const torch::Tensor& gallery_ids,
                          const torch::Tensor& gallery_cams);

/// Options of evaluate_features.
struct FeatureEvaluationOptions {
  /// Queries per block; memory holds block × g distances, never q × g.
  int64_t block_queries = 1024;
  /// 0: rank the whole gallery (exact metrics). k > 0: only the k nearest
  /// gallery images per query: AP becomes AP@k (matches beyond rank k count
  /// as not retrieved) and CMC stops at k.
  int64_t top_k = 0;
  /// How top_k finds the k nearest: true, FAISS's flat index (IndexFlatL2)
  /// where the build has FAISS; false, or a build without FAISS
  /// (TANDEM_CORE_ONLY), torch::topk on each block of the distances the
  /// whole-gallery ranking computes. Both give the same metrics unless tied
  /// distances straddle rank k (within the k the scoring does not depend on
  /// the order of ties).
  bool top_k_with_faiss = true;
};

/// Metrics from features directly: squared Euclidean distances of the
/// L2-normalised query (q × d) and gallery (g × d) features, computed block
/// by block so the q × g matrix is never held.
RetrievalMetrics evaluate_features(const torch::Tensor& query_features,
                                   const torch::Tensor& gallery_features,
                                   const torch::Tensor& query_ids, const torch::Tensor& query_cams,
                                   const torch::Tensor& gallery_ids,
                                   const torch::Tensor& gallery_cams,
                                   const FeatureEvaluationOptions& options = {});

}  // namespace tandem::clustering
