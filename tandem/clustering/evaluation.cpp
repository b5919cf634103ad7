#include "tandem/clustering/evaluation.h"

#include <ATen/Parallel.h>
#ifdef TANDEM_WITH_FAISS
#include <faiss/IndexFlat.h>
#endif
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

// One query against `count` gallery entries given as (distance, gallery
// index) in any order, without sorting them: only the matches are sorted,
// and one pass counts, for each distinct match distance t, the valid entries
// with distance ≤ t (AP, ties grouped as scikit-learn's thresholds), and the
// valid entries ranked before the first match (CMC, ties by gallery index).
// `total_matches` counts every valid match of the query (for AP@k, those
// not in the list count as not retrieved).
QueryResult score_query(const double* dist, const int64_t* gallery_index, int64_t count,
                        int64_t query_id, int64_t query_cam, const int64_t* gallery_ids,
                        const int64_t* gallery_cams, int64_t total_matches,
                        std::vector<std::pair<double, int64_t>>& matches,
                        std::vector<int64_t>& at_or_below) {
  QueryResult result;
  if (total_matches == 0) return result;
  result.valid = true;
  matches.clear();
  for (int64_t e = 0; e < count; ++e) {
    const int64_t j = gallery_index[e];
    if (gallery_ids[j] == query_id && gallery_cams[j] != query_cam)
      matches.emplace_back(dist[e], j);
  }
  if (matches.empty()) return result;  // top-k without a match: AP 0, no rank
  std::sort(matches.begin(), matches.end());
  // Distinct match distances t_0 < t_1 < ...; bucket b counts the valid
  // entries with t_{b-1} < d ≤ t_b.
  std::vector<double> thresholds;
  for (const auto& m : matches) {
    if (thresholds.empty() || m.first != thresholds.back()) thresholds.push_back(m.first);
  }
  at_or_below.assign(thresholds.size(), 0);
  const auto [first_distance, first_index] = matches.front();
  const double last_threshold = thresholds.back();
  int64_t before_first = 0;
  for (int64_t e = 0; e < count; ++e) {
    const double d = dist[e];
    if (d > last_threshold) continue;  // beyond every match: counts nowhere
    const int64_t j = gallery_index[e];
    if (gallery_ids[j] == query_id && gallery_cams[j] == query_cam) continue;  // junk
    if (d < first_distance || (d == first_distance && j < first_index)) ++before_first;
    const auto bucket = std::lower_bound(thresholds.begin(), thresholds.end(), d);
    ++at_or_below[static_cast<std::size_t>(bucket - thresholds.begin())];
  }
  result.first_match = before_first;
  double ap = 0.0;
  int64_t seen = 0;
  int64_t hits = 0;
  std::size_t m = 0;
  for (std::size_t b = 0; b < thresholds.size(); ++b) {
    seen += at_or_below[b];
    int64_t group_hits = 0;
    for (; m < matches.size() && matches[m].first == thresholds[b]; ++m) ++group_hits;
    hits += group_hits;
    ap += (static_cast<double>(hits) / static_cast<double>(seen)) *
          (static_cast<double>(group_hits) / static_cast<double>(total_matches));
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

// Scores the queries of a block of full distance rows (rows × g).
void score_rows(const torch::Tensor& block, int64_t first_query, const int64_t* qid,
                const int64_t* qcam, const int64_t* gid, const int64_t* gcam,
                const std::vector<int64_t>& matches, std::vector<QueryResult>& results) {
  const auto rows_t = block.to(torch::kFloat64).contiguous();
  const int64_t rows = rows_t.size(0);
  const int64_t g = rows_t.size(1);
  const double* data = rows_t.data_ptr<double>();
  std::vector<int64_t> identity(static_cast<std::size_t>(g));
  std::iota(identity.begin(), identity.end(), 0);
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    std::vector<std::pair<double, int64_t>> match_buffer;
    std::vector<int64_t> bucket_buffer;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t i = first_query + r;
      results[static_cast<std::size_t>(i)] =
          score_query(data + r * g, identity.data(), g, qid[i], qcam[i], gid, gcam,
                      matches[static_cast<std::size_t>(i)], match_buffer, bucket_buffer);
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
  const auto dist = distances.to(torch::kCPU);
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
  constexpr int64_t kBlock = 256;  // rows converted to float64 at a time
  for (int64_t start = 0; start < q; start += kBlock) {
    score_rows(dist.narrow(0, start, std::min(kBlock, q - start)), start, qid, qcam, gid, gcam,
               matches, results);
  }
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
  // The distances are computed where the features are (a GPU job's
  // evaluation runs on its GPU, block by block, each block's rows copied to
  // the host for scoring); FAISS's top-k reads host copies.
  const torch::Device device =
      query_features.device() == gallery_features.device() ? query_features.device() : torch::kCPU;
  const auto normalize = [&](const torch::Tensor& x) {
    return F::normalize(x.to(device), F::NormalizeFuncOptions().dim(1)).contiguous();
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

  // ‖q‖² + ‖g‖² − 2 q·g of a block of queries against the whole gallery, as
  // the originals compute it (not clamped), in one BLAS call.
  const auto gallery_norms = gallery.pow(2).sum(1);
  const auto block_distances = [&](int64_t start, int64_t rows) {
    const auto block = queries.narrow(0, start, rows);
    return torch::addmm(block.pow(2).sum(1, true) + gallery_norms.unsqueeze(0), block, gallery.t(),
                        /*beta=*/1, /*alpha=*/-2);
  };
  if (options.top_k == 0 || options.top_k >= g) {
    for (int64_t start = 0; start < q; start += options.block_queries) {
      const int64_t rows = std::min(options.block_queries, q - start);
      score_rows(block_distances(start, rows), start, qid, qcam, gid, gcam, matches, results);
    }
    return combine(results, std::min(kMaxRank, g));
  }

  // Top-k: the k nearest gallery images of each query, (rows, k) distances
  // and gallery indices per block of queries.
  const int64_t k = options.top_k;
  const auto score_top_k = [&](int64_t start, int64_t rows, const float* dist,
                               const int64_t* found) {
    at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
      std::vector<double> distances(static_cast<std::size_t>(k));
      std::vector<int64_t> indices(static_cast<std::size_t>(k));
      std::vector<std::pair<double, int64_t>> match_buffer;
      std::vector<int64_t> bucket_buffer;
      for (int64_t r = begin; r < end; ++r) {
        for (int64_t e = 0; e < k; ++e) {
          distances[e] = dist[r * k + e];
          indices[e] = found[r * k + e];
        }
        const int64_t i = start + r;
        results[static_cast<std::size_t>(i)] =
            score_query(distances.data(), indices.data(), k, qid[i], qcam[i], gid, gcam,
                        matches[static_cast<std::size_t>(i)], match_buffer, bucket_buffer);
      }
    });
  };
#ifdef TANDEM_WITH_FAISS
  if (options.top_k_with_faiss) {
    const auto gallery_host = gallery.cpu();
    const auto queries_host = queries.cpu();
    faiss::IndexFlatL2 index(gallery.size(1));
    index.add(g, gallery_host.data_ptr<float>());
    using FaissId = faiss::Index::idx_t;
    static_assert(sizeof(FaissId) == sizeof(int64_t), "FAISS ids must be int64");
    std::vector<float> dist(static_cast<std::size_t>(options.block_queries * k));
    std::vector<FaissId> found(static_cast<std::size_t>(options.block_queries * k));
    for (int64_t start = 0; start < q; start += options.block_queries) {
      const int64_t rows = std::min(options.block_queries, q - start);
      index.search(rows, queries_host.data_ptr<float>() + start * queries.size(1), k, dist.data(),
                   found.data());
      score_top_k(start, rows, dist.data(), reinterpret_cast<const int64_t*>(found.data()));
    }
    return combine(results, std::min(kMaxRank, k));
  }
#endif
  for (int64_t start = 0; start < q; start += options.block_queries) {
    const int64_t rows = std::min(options.block_queries, q - start);
    const auto [dist, found] =
        block_distances(start, rows).topk(k, 1, /*largest=*/false, /*sorted=*/true);
    const auto dist_c = dist.to(torch::kCPU).contiguous();
    const auto found_c = found.to(torch::kCPU).contiguous();
    score_top_k(start, rows, dist_c.data_ptr<float>(), found_c.data_ptr<int64_t>());
  }
  return combine(results, std::min(kMaxRank, k));
}

}  // namespace tandem::clustering
