#include "tandem/clustering/evaluation.h"

#include <ATen/Parallel.h>
#include <faiss/IndexFlat.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>

#include "tandem/clustering/tensor_checks.h"

namespace tandem::clustering {
namespace {

constexpr int64_t kMaxRank = 100;

void check_labels(const torch::Tensor& t, int64_t size, const char* name) {
  TORCH_CHECK(t.defined() && t.dim() == 1 && t.size(0) == size, "evaluate: ", name,
              " must be a 1-D tensor of ", size, " entries, got shape ",
              t.defined() ? t.sizes() : c10::IntArrayRef{});
  TORCH_CHECK(c10::isIntegralType(t.scalar_type(), /*includeBool=*/false), "evaluate: ", name,
              " must be an integer tensor, got ", t.scalar_type());
}

// Per-query result: AP, rank of the first match (−1: none), valid or not.
struct QueryResult {
  double ap = 0.0;
  int64_t first_match = -1;
  bool valid = false;
};

// One query against `count` ranked gallery entries: `order` lists gallery
// indices by ascending distance (ties by index), `dist` their distances.
// `total_matches` counts every valid match of the query (for AP@k, those
// beyond the list count as not retrieved).
QueryResult score_query(const int64_t* order, const double* dist, int64_t count, int64_t query_id,
                        int64_t query_cam, const int64_t* gallery_ids, const int64_t* gallery_cams,
                        int64_t total_matches) {
  QueryResult result;
  if (total_matches == 0) return result;
  result.valid = true;
  int64_t rank = 0;  // position among valid entries
  int64_t seen = 0;  // valid entries so far
  int64_t hits = 0;  // matches so far
  double ap = 0.0;
  // Walk groups of equal distance: scikit-learn's AP takes precision at the
  // end of each group of tied scores.
  int64_t e = 0;
  while (e < count) {
    const double group_distance = dist[e];
    int64_t group_hits = 0;
    int64_t group_size = 0;
    for (; e < count && dist[e] == group_distance; ++e) {
      const int64_t j = order[e];
      if (gallery_ids[j] == query_id && gallery_cams[j] == query_cam) continue;  // junk
      const bool match = gallery_ids[j] == query_id;
      if (match && result.first_match < 0) result.first_match = rank;
      ++rank;
      ++group_size;
      group_hits += match;
    }
    seen += group_size;
    hits += group_hits;
    if (group_hits > 0) {
      ap += (static_cast<double>(hits) / static_cast<double>(seen)) *
            (static_cast<double>(group_hits) / static_cast<double>(total_matches));
    }
  }
  result.ap = ap;
  return result;
}

RetrievalMetrics combine(const std::vector<QueryResult>& results, int64_t max_rank) {
  RetrievalMetrics metrics;
  std::vector<double> hits(static_cast<std::size_t>(max_rank), 0.0);
  double ap_sum = 0.0;
  for (const auto& r : results) {
    if (!r.valid) continue;
    ++metrics.valid_queries;
    ap_sum += r.ap;
    if (r.first_match >= 0 && r.first_match < max_rank) hits[r.first_match] += 1.0;
  }
  TORCH_CHECK(metrics.valid_queries > 0,
              "evaluate: no query has a valid match in the gallery (same identity, other camera)");
  metrics.mean_ap = ap_sum / static_cast<double>(metrics.valid_queries);
  metrics.cmc.resize(hits.size());
  double running = 0.0;
  for (std::size_t r = 0; r < hits.size(); ++r) {
    running += hits[r];
    metrics.cmc[r] = running / static_cast<double>(metrics.valid_queries);
  }
  return metrics;
}

// Valid matches of every query: same identity, other camera.
std::vector<int64_t> count_matches(const int64_t* qid, const int64_t* qcam, int64_t q,
                                   const int64_t* gid, const int64_t* gcam, int64_t g) {
  std::vector<int64_t> counts(static_cast<std::size_t>(q), 0);
  at::parallel_for(0, q, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      int64_t c = 0;
      for (int64_t j = 0; j < g; ++j) c += gid[j] == qid[i] && gcam[j] != qcam[i];
      counts[static_cast<std::size_t>(i)] = c;
    }
  });
  return counts;
}

// Scores the queries of a block of full distance rows (rows × g, float64).
void score_rows(const torch::Tensor& block, int64_t first_query, const int64_t* qid,
                const int64_t* qcam, const int64_t* gid, const int64_t* gcam,
                const std::vector<int64_t>& matches, std::vector<QueryResult>& results) {
  const int64_t rows = block.size(0);
  const int64_t g = block.size(1);
  const double* data = block.data_ptr<double>();
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> order(static_cast<std::size_t>(g));
    std::vector<double> sorted(static_cast<std::size_t>(g));
    for (int64_t r = begin; r < end; ++r) {
      const double* row = data + r * g;
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [row](int64_t a, int64_t b) { return row[a] < row[b]; });
      for (int64_t e = 0; e < g; ++e) sorted[static_cast<std::size_t>(e)] = row[order[e]];
      const int64_t i = first_query + r;
      results[static_cast<std::size_t>(i)] =
          score_query(order.data(), sorted.data(), g, qid[i], qcam[i], gid, gcam,
                      matches[static_cast<std::size_t>(i)]);
    }
  });
}

}  // namespace

RetrievalMetrics evaluate(const torch::Tensor& distances, const torch::Tensor& query_ids,
                          const torch::Tensor& query_cams, const torch::Tensor& gallery_ids,
                          const torch::Tensor& gallery_cams) {
  TORCH_CHECK(
      distances.defined() && distances.dim() == 2 && distances.size(0) > 0 && distances.size(1) > 0,
      "evaluate: distances must be a non-empty (q, g) matrix");
  TORCH_CHECK(distances.is_floating_point(), "evaluate: distances must be floating point, got ",
              distances.scalar_type());
  const int64_t q = distances.size(0);
  const int64_t g = distances.size(1);
  check_labels(query_ids, q, "query_ids");
  check_labels(query_cams, q, "query_cams");
  check_labels(gallery_ids, g, "gallery_ids");
  check_labels(gallery_cams, g, "gallery_cams");
  const auto dist = distances.to(torch::kCPU, torch::kFloat64).contiguous();
  TORCH_CHECK(!torch::isnan(dist).any().item<bool>(), "evaluate: distances contain NaN");
  const auto qid_t = query_ids.to(torch::kCPU, torch::kInt64).contiguous();
  const auto qcam_t = query_cams.to(torch::kCPU, torch::kInt64).contiguous();
  const auto gid_t = gallery_ids.to(torch::kCPU, torch::kInt64).contiguous();
  const auto gcam_t = gallery_cams.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t* qid = qid_t.data_ptr<int64_t>();
  const int64_t* qcam = qcam_t.data_ptr<int64_t>();
  const int64_t* gid = gid_t.data_ptr<int64_t>();
  const int64_t* gcam = gcam_t.data_ptr<int64_t>();
  const auto matches = count_matches(qid, qcam, q, gid, gcam, g);
  std::vector<QueryResult> results(static_cast<std::size_t>(q));
  score_rows(dist, 0, qid, qcam, gid, gcam, matches, results);
  return combine(results, std::min(kMaxRank, g));
}

RetrievalMetrics evaluate_features(const torch::Tensor& query_features,
                                   const torch::Tensor& gallery_features,
                                   const torch::Tensor& query_ids, const torch::Tensor& query_cams,
                                   const torch::Tensor& gallery_ids,
                                   const torch::Tensor& gallery_cams,
                                   const FeatureEvaluationOptions& options) {
  check_feature_matrix(query_features, "query_features");
  check_feature_matrix(gallery_features, "gallery_features");
  TORCH_CHECK(query_features.size(1) == gallery_features.size(1),
              "evaluate_features: query and gallery features must have the same width, got ",
              query_features.size(1), " and ", gallery_features.size(1));
  TORCH_CHECK(options.block_queries >= 1, "evaluate_features: block_queries must be positive");
  TORCH_CHECK(options.top_k >= 0, "evaluate_features: top_k must be non-negative");
  const int64_t q = query_features.size(0);
  const int64_t g = gallery_features.size(0);
  check_labels(query_ids, q, "query_ids");
  check_labels(query_cams, q, "query_cams");
  check_labels(gallery_ids, g, "gallery_ids");
  check_labels(gallery_cams, g, "gallery_cams");
  namespace F = torch::nn::functional;
  const auto normalize = [](const torch::Tensor& x) {
    return F::normalize(x.to(torch::kCPU), F::NormalizeFuncOptions().dim(1)).contiguous();
  };
  const auto queries = normalize(query_features);
  const auto gallery = normalize(gallery_features);
  const auto qid_t = query_ids.to(torch::kCPU, torch::kInt64).contiguous();
  const auto qcam_t = query_cams.to(torch::kCPU, torch::kInt64).contiguous();
  const auto gid_t = gallery_ids.to(torch::kCPU, torch::kInt64).contiguous();
  const auto gcam_t = gallery_cams.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t* qid = qid_t.data_ptr<int64_t>();
  const int64_t* qcam = qcam_t.data_ptr<int64_t>();
  const int64_t* gid = gid_t.data_ptr<int64_t>();
  const int64_t* gcam = gcam_t.data_ptr<int64_t>();
  const auto matches = count_matches(qid, qcam, q, gid, gcam, g);
  std::vector<QueryResult> results(static_cast<std::size_t>(q));

  if (options.top_k == 0 || options.top_k >= g) {
    const auto gallery_norms = gallery.pow(2).sum(1);
    for (int64_t start = 0; start < q; start += options.block_queries) {
      const int64_t rows = std::min(options.block_queries, q - start);
      const auto block = queries.narrow(0, start, rows);
      // ‖q‖² + ‖g‖² − 2 q·g, as the originals compute it (not clamped).
      const auto dist =
          (block.pow(2).sum(1, true) + gallery_norms.unsqueeze(0) - 2 * block.mm(gallery.t()))
              .to(torch::kFloat64)
              .contiguous();
      score_rows(dist, start, qid, qcam, gid, gcam, matches, results);
    }
    return combine(results, std::min(kMaxRank, g));
  }

  // Top-k: the k nearest gallery images of each query from a FAISS index.
  const int64_t k = options.top_k;
  faiss::IndexFlatL2 index(gallery.size(1));
  index.add(g, gallery.data_ptr<float>());
  std::vector<float> dist(static_cast<std::size_t>(options.block_queries * k));
  std::vector<faiss::Index::idx_t> found(static_cast<std::size_t>(options.block_queries * k));
  for (int64_t start = 0; start < q; start += options.block_queries) {
    const int64_t rows = std::min(options.block_queries, q - start);
    index.search(rows, queries.data_ptr<float>() + start * queries.size(1), k, dist.data(),
                 found.data());
    at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> order(static_cast<std::size_t>(k));
      std::vector<double> sorted(static_cast<std::size_t>(k));
      std::vector<std::pair<double, int64_t>> row(static_cast<std::size_t>(k));
      for (int64_t r = begin; r < end; ++r) {
        // Ties by gallery index, like the exact path.
        for (int64_t e = 0; e < k; ++e) row[e] = {dist[r * k + e], found[r * k + e]};
        std::sort(row.begin(), row.end());
        for (int64_t e = 0; e < k; ++e) {
          sorted[e] = row[e].first;
          order[e] = row[e].second;
        }
        const int64_t i = start + r;
        results[static_cast<std::size_t>(i)] =
            score_query(order.data(), sorted.data(), k, qid[i], qcam[i], gid, gcam,
                        matches[static_cast<std::size_t>(i)]);
      }
    });
  }
  return combine(results, std::min(kMaxRank, k));
}

}  // namespace tandem::clustering
