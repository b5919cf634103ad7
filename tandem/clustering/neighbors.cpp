#include "tandem/clustering/neighbors.h"

#ifdef TANDEM_WITH_FAISS
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#endif
#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "tandem/clustering/tensor_checks.h"

namespace tandem::clustering {
namespace {

// Candidates of the search: k columns per row and each row's farthest column.
struct Candidates {
  torch::Tensor index;     // int64 (n, k)
  torch::Tensor farthest;  // int64 (n)
};

// Running selection of every row: the k smallest base distances seen so far
// (a max-heap per row, ties keeping the lower column, since columns arrive in
// ascending order) and the largest.
class RunningSelection {
 public:
  RunningSelection(int64_t n, int64_t k)
      : k_(k),
        heap_(static_cast<std::size_t>(n * k)),
        size_(static_cast<std::size_t>(n), 0),
        largest_(static_cast<std::size_t>(n), -std::numeric_limits<float>::infinity()),
        farthest_(static_cast<std::size_t>(n), 0) {}

  // Offers columns [col0, col0 + cols) of row `row`, whose base distances
  // are `values`.
  void offer(int64_t row, const float* values, int64_t col0, int64_t cols) {
    Entry* heap = heap_.data() + row * k_;
    int64_t& size = size_[static_cast<std::size_t>(row)];
    float& largest = largest_[static_cast<std::size_t>(row)];
    int64_t& farthest = farthest_[static_cast<std::size_t>(row)];
    for (int64_t c = 0; c < cols; ++c) {
      const float value = values[c];
      if (value > largest) {
        largest = value;
        farthest = col0 + c;
      }
      if (size < k_) {
        heap[size++] = {value, static_cast<int32_t>(col0 + c)};
        std::push_heap(heap, heap + size);
      } else if (value < heap[0].value) {
        std::pop_heap(heap, heap + k_);
        heap[k_ - 1] = {value, static_cast<int32_t>(col0 + c)};
        std::push_heap(heap, heap + k_);
      }
    }
  }

  void finish(int64_t* index_out, int64_t* farthest_out) {
    const auto n = static_cast<int64_t>(size_.size());
    at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        Entry* heap = heap_.data() + row * k_;
        std::sort_heap(heap, heap + k_);
        for (int64_t e = 0; e < k_; ++e) index_out[row * k_ + e] = heap[e].col;
        farthest_out[row] = farthest_[static_cast<std::size_t>(row)];
      }
    });
  }

 private:
  struct Entry {
    float value;
    int32_t col;
    bool operator<(const Entry& other) const {
      return value < other.value || (value == other.value && col < other.col);
    }
  };
  int64_t k_;
  std::vector<Entry> heap_;
  std::vector<int64_t> size_;
  std::vector<float> largest_;
  std::vector<int64_t> farthest_;
};

// Base distances of a tile of dot products (rows × cols), in place:
// b(i, j) with row norms n_i and column norms n_j.
void tile_to_base(BaseDistance base, float* dots, int64_t rows, int64_t cols,
                  const float* row_norms, const float* col_norms) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* row = dots + r * cols;
      if (base == BaseDistance::kMmtJaccard) {
        for (int64_t c = 0; c < cols; ++c) row[c] = 2 * col_norms[c] - 2 * row[c];
      } else {
        const float norm = row_norms[r];
        for (int64_t c = 0; c < cols; ++c) {
          const float squared = norm + col_norms[c] - 2 * row[c];
          row[c] = squared * squared;
        }
      }
    }
  });
}

// ‖f_i‖² of every row, in float32 (for the search) and float64 (for the
// refined values), without n × d temporaries.
std::pair<torch::Tensor, torch::Tensor> squared_norms(const torch::Tensor& features) {
  const int64_t n = features.size(0);
  const int64_t d = features.size(1);
  auto single = torch::empty({n}, torch::kFloat32);
  auto dual = torch::empty({n}, torch::kFloat64);
  const float* f = features.data_ptr<float>();
  float* out_single = single.data_ptr<float>();
  double* out_dual = dual.data_ptr<double>();
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      double sum = 0;
      for (int64_t c = 0; c < d; ++c) sum += static_cast<double>(f[i * d + c]) * f[i * d + c];
      out_dual[i] = sum;
      out_single[i] = static_cast<float>(sum);
    }
  });
  return {single, dual};
}

// Exact search over tiles of the Gram matrix F·Fᵀ. It is symmetric, so only
// tiles on and above the diagonal are multiplied (half the work of a
// search that treats queries and database apart); each tile feeds the
// selection of its rows and, transposed, of its columns.
Candidates exact_candidates(const torch::Tensor& features, const torch::Tensor& norms,
                            const NeighborOptions& options) {
  const int64_t n = features.size(0);
  TORCH_CHECK(n < (int64_t{1} << 31), "find_neighbors: n = ", n, " rows is too many");
  const int64_t tile =
      options.block_rows > 0 ? std::min(options.block_rows, n) : std::min<int64_t>(2048, n);
  const float* norm = norms.data_ptr<float>();
  RunningSelection selection(n, options.k);
  for (int64_t i0 = 0; i0 < n; i0 += tile) {
    const int64_t rows = std::min(tile, n - i0);
    const auto block_i = features.narrow(0, i0, rows);
    for (int64_t j0 = i0; j0 < n; j0 += tile) {
      const int64_t cols = std::min(tile, n - j0);
      const auto dots = torch::mm(block_i, features.narrow(0, j0, cols).t());
      // Rows j of the transposed tile first (it needs the raw dot products).
      if (j0 != i0) {
        auto transposed = dots.t().contiguous();
        tile_to_base(options.base, transposed.data_ptr<float>(), cols, rows, norm + j0, norm + i0);
        const float* values = transposed.data_ptr<float>();
        at::parallel_for(0, cols, 16, [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r)
            selection.offer(j0 + r, values + r * rows, i0, rows);
        });
      }
      tile_to_base(options.base, dots.data_ptr<float>(), rows, cols, norm + i0, norm + j0);
      const float* values = dots.data_ptr<float>();
      at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) selection.offer(i0 + r, values + r * cols, j0, cols);
      });
    }
  }
  Candidates out{torch::empty({n, options.k}, torch::kInt64), torch::empty({n}, torch::kInt64)};
  selection.finish(out.index.data_ptr<int64_t>(), out.farthest.data_ptr<int64_t>());
  return out;
}

// Exact search on the features' device: a block of rows against every
// column per matrix product, then topk (k smallest) and argmax (the row's
// largest) there; only the candidates cross to the host. The float32 order
// of near-ties may differ from the heap's, which refine() settles in
// float64 as for the other searches.
Candidates device_candidates(const torch::Tensor& features, const NeighborOptions& options) {
  const int64_t n = features.size(0);
  constexpr int64_t kBlockBytes = int64_t{256} << 20;
  const int64_t rows_per_block =
      options.block_rows > 0
          ? std::min(options.block_rows, n)
          : std::clamp<int64_t>(kBlockBytes / (n * static_cast<int64_t>(sizeof(float))), 1, n);
  const auto norms = features.pow(2).sum(1);  // float32 on the device
  const auto columns = features.t();
  Candidates out{torch::empty({n, options.k}, torch::kInt64), torch::empty({n}, torch::kInt64)};
  for (int64_t i0 = 0; i0 < n; i0 += rows_per_block) {
    const int64_t rows = std::min(rows_per_block, n - i0);
    auto base = torch::mm(features.narrow(0, i0, rows), columns);
    if (options.base == BaseDistance::kMmtJaccard) {
      base.mul_(-2).add_(norms.unsqueeze(0), 2);
    } else {
      base.mul_(-2).add_(norms.unsqueeze(0)).add_(norms.narrow(0, i0, rows).unsqueeze(1));
      base.pow_(2);
    }
    const auto nearest = std::get<1>(base.topk(options.k, 1, /*largest=*/false, /*sorted=*/true));
    out.index.narrow(0, i0, rows).copy_(nearest);
    out.farthest.narrow(0, i0, rows).copy_(base.argmax(1));
  }
  return out;
}

#ifdef TANDEM_WITH_FAISS
using FaissId = faiss::Index::idx_t;

// Augmented vectors turn both base distances into inner products:
//   kMmtJaccard: b = 2·(n_j − f_i·f_j) = −2·⟨(f_i, 1), (f_j, −n_j)⟩;
//   squared twice: increasing in n_j − 2·f_i·f_j = −⟨(2f_i, 1), (f_j, −n_j)⟩.
// The nearest columns have the largest inner product, the farthest column
// the largest inner product with the negated query.
Candidates ivf_candidates(const torch::Tensor& features, const torch::Tensor& norms,
                          const NeighborOptions& options) {
  const int64_t n = features.size(0);
  const int64_t d = features.size(1);
  int64_t lists = options.ivf_lists > 0
                      ? options.ivf_lists
                      : std::max<int64_t>(1, static_cast<int64_t>(4 * std::sqrt(double(n))));
  lists = std::min(lists, n);
  faiss::IndexFlatIP quantizer(d + 1);
  faiss::IndexIVFFlat index(&quantizer, d + 1, lists, faiss::METRIC_INNER_PRODUCT);
  // FAISS's k-means training of the lists: seeded (equal runs, equal lists),
  // 10 iterations on at most 64 points a list, which keeps training a small
  // part of the search.
  index.cp.seed = 1234;
  index.cp.niter = 10;
  index.cp.max_points_per_centroid = 64;
  {
    // The index keeps its own copy; the augmented database is dropped after.
    const auto database = torch::cat({features, -norms.unsqueeze(1)}, 1).contiguous();
    index.train(n, database.data_ptr<float>());
    index.add(n, database.data_ptr<float>());
  }
  index.nprobe = static_cast<std::size_t>(std::min(options.ivf_probe, lists));

  Candidates out{torch::empty({n, options.k}, torch::kInt64), torch::empty({n}, torch::kInt64)};
  const double scale = options.base == BaseDistance::kMmtJaccard ? 1.0 : 2.0;
  constexpr int64_t kQueryBlock = 4096;
  auto scores = torch::empty({kQueryBlock, options.k}, torch::kFloat32);
  auto far_score = torch::empty({kQueryBlock}, torch::kFloat32);
  for (int64_t start = 0; start < n; start += kQueryBlock) {
    const int64_t rows = std::min(kQueryBlock, n - start);
    const auto queries =
        torch::cat({scale * features.narrow(0, start, rows), torch::ones({rows, 1})}, 1)
            .contiguous();
    index.search(rows, queries.data_ptr<float>(), options.k, scores.data_ptr<float>(),
                 reinterpret_cast<FaissId*>(out.index.data_ptr<int64_t>() + start * options.k));
    const auto negated = (-queries).contiguous();
    index.search(rows, negated.data_ptr<float>(), 1, far_score.data_ptr<float>(),
                 reinterpret_cast<FaissId*>(out.farthest.data_ptr<int64_t>() + start));
  }
  return out;
}
#endif  // TANDEM_WITH_FAISS

// Recomputes the candidates' base distances in float64 and orders each row by
// (value, column). A slot FAISS could not fill (−1) becomes the row itself.
NeighborTable refine(const torch::Tensor& features, const torch::Tensor& norms,
                     Candidates candidates, BaseDistance base) {
  const int64_t n = features.size(0);
  const int64_t d = features.size(1);
  const int64_t k = candidates.index.size(1);
  NeighborTable table;
  table.index = candidates.index.contiguous();
  table.distance = torch::empty({n, k}, torch::kFloat64);
  table.row_max = torch::empty({n}, torch::kFloat64);
  table.squared_norm = norms.to(torch::kFloat64);
  const float* f = features.data_ptr<float>();
  const double* nn = table.squared_norm.data_ptr<double>();
  int64_t* idx = table.index.data_ptr<int64_t>();
  const int64_t* far = candidates.farthest.data_ptr<int64_t>();
  double* dist = table.distance.data_ptr<double>();
  double* row_max = table.row_max.data_ptr<double>();
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    std::vector<std::pair<double, int64_t>> row(static_cast<std::size_t>(k));
    for (int64_t i = begin; i < end; ++i) {
      double largest = -std::numeric_limits<double>::infinity();
      for (int64_t r = 0; r < k; ++r) {
        int64_t j = idx[i * k + r];
        if (j < 0) j = i;
        row[r] = {base_distance(base, f + i * d, f + j * d, d, nn[i], nn[j]), j};
        largest = std::max(largest, row[r].first);
      }
      std::sort(row.begin(), row.end());
      for (int64_t r = 0; r < k; ++r) {
        dist[i * k + r] = row[r].first;
        idx[i * k + r] = row[r].second;
      }
      const int64_t j = far[i] < 0 ? i : far[i];
      row_max[i] = std::max(largest, base_distance(base, f + i * d, f + j * d, d, nn[i], nn[j]));
    }
  });
  return table;
}

#ifdef TANDEM_WITH_FAISS
// Recall of an approximate table on up to 256 evenly spaced rows: their exact
// k nearest (by float64 base distance of a full row) found in the table.
double sampled_recall(const torch::Tensor& features, const NeighborTable& table,
                      BaseDistance base) {
  const int64_t n = features.size(0);
  const int64_t d = features.size(1);
  const int64_t k = table.index.size(1);
  const int64_t samples = std::min<int64_t>(256, n);
  const float* f = features.data_ptr<float>();
  const double* norms = table.squared_norm.data_ptr<double>();
  const int64_t* idx = table.index.data_ptr<int64_t>();
  std::vector<int64_t> found(static_cast<std::size_t>(samples), 0);
  at::parallel_for(0, samples, 4, [&](int64_t begin, int64_t end) {
    std::vector<std::pair<double, int64_t>> row(static_cast<std::size_t>(n));
    for (int64_t s = begin; s < end; ++s) {
      const int64_t i = s * n / samples;
      for (int64_t j = 0; j < n; ++j) {
        row[j] = {base_distance(base, f + i * d, f + j * d, d, norms[i], norms[j]), j};
      }
      std::partial_sort(row.begin(), row.begin() + k, row.end());
      for (int64_t r = 0; r < k; ++r) {
        found[s] += std::find(idx + i * k, idx + (i + 1) * k, row[r].second) != idx + (i + 1) * k;
      }
    }
  });
  int64_t total = 0;
  for (const int64_t count : found) total += count;
  return static_cast<double>(total) / static_cast<double>(samples * k);
}
#endif  // TANDEM_WITH_FAISS

}  // namespace

double base_distance(BaseDistance base, const float* f_i, const float* f_j, int64_t d,
                     double squared_norm_i, double squared_norm_j) {
  // Four float64 accumulators: exact enough, and independent chains.
  double acc[4] = {0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 4 <= d; c += 4) {
    acc[0] += static_cast<double>(f_i[c]) * f_j[c];
    acc[1] += static_cast<double>(f_i[c + 1]) * f_j[c + 1];
    acc[2] += static_cast<double>(f_i[c + 2]) * f_j[c + 2];
    acc[3] += static_cast<double>(f_i[c + 3]) * f_j[c + 3];
  }
  for (; c < d; ++c) acc[0] += static_cast<double>(f_i[c]) * f_j[c];
  const double dot = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  if (base == BaseDistance::kMmtJaccard) return 2 * squared_norm_j - 2 * dot;
  const double squared = squared_norm_i + squared_norm_j - 2 * dot;
  return squared * squared;
}

NeighborTable find_neighbors(const torch::Tensor& features, const NeighborOptions& options) {
  const auto input = to_faiss_input(features, "features");  // checked, on the CPU
  const int64_t n = input.size(0);
  TORCH_CHECK(options.k >= 1 && options.k <= n, "find_neighbors: k must be in [1, n = ", n,
              "], got ", options.k);
  TORCH_CHECK(options.ivf_probe >= 1, "find_neighbors: ivf_probe must be positive, got ",
              options.ivf_probe);
  TORCH_CHECK(options.block_rows >= 0, "find_neighbors: block_rows must be non-negative, got ",
              options.block_rows);
#ifndef TANDEM_WITH_FAISS
  if (options.search == NeighborSearch::kIvf) {
    C10_THROW_ERROR(Error,
                    "find_neighbors: NeighborSearch::kIvf needs FAISS and this build has none "
                    "(TANDEM_CORE_ONLY); use the exact search instead (NeighborSearch::kExact, the "
                    "default, or kDevice on the features' own device)");
  }
#endif
  const auto [norms, norms64] = squared_norms(input);
  if (options.search == NeighborSearch::kExact) {
    return refine(input, norms64, exact_candidates(input, norms, options), options.base);
  }
  if (options.search == NeighborSearch::kDevice) {
    const auto on_device =
        features.device().is_cpu() ? input : features.to(torch::kFloat32).contiguous();
    return refine(input, norms64, device_candidates(on_device, options), options.base);
  }
#ifdef TANDEM_WITH_FAISS
  auto table = refine(input, norms64, ivf_candidates(input, norms, options), options.base);
  table.estimated_recall = sampled_recall(input, table, options.base);
  return table;
#else
  C10_THROW_ERROR(Error, "find_neighbors: unknown NeighborSearch");
#endif
}

}  // namespace tandem::clustering
