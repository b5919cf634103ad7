#include "tandem/clustering/k_reciprocal.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace tandem::clustering {
namespace {

// R(i, k) for every i: the members of i's k + 1 nearest that also have i
// among their own k + 1 nearest, in i's neighbour order. With k + 1 > n every
// row is its whole neighbour list (as slicing a dense ranking would give).
std::vector<std::vector<int64_t>> reciprocal_sets(const NeighborTable& table, int64_t k) {
  const int64_t n = table.index.size(0);
  const int64_t stride = table.index.size(1);
  const int64_t* idx = table.index.data_ptr<int64_t>();
  const int64_t width = std::min(k + 1, stride);
  std::vector<std::vector<int64_t>> sets(static_cast<std::size_t>(n));
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      auto& set = sets[static_cast<std::size_t>(i)];
      for (int64_t r = 0; r < width; ++r) {
        const int64_t c = idx[i * stride + r];
        const int64_t* back = idx + c * stride;
        if (std::find(back, back + width, i) != back + width) set.push_back(c);
      }
    }
  });
  return sets;
}

std::vector<int64_t> sorted_unique(std::vector<int64_t> values) {
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  return values;
}

// CSR from per-row (column, value) lists sorted by column.
SparseRows assemble(std::vector<std::vector<std::pair<int64_t, double>>>& rows, int64_t cols) {
  SparseRows out;
  out.rows = static_cast<int64_t>(rows.size());
  out.cols = cols;
  out.row_ptr.assign(rows.size() + 1, 0);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    out.row_ptr[i + 1] = out.row_ptr[i] + static_cast<int64_t>(rows[i].size());
  }
  out.col.resize(static_cast<std::size_t>(out.row_ptr.back()));
  out.value.resize(out.col.size());
  at::parallel_for(0, out.rows, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      auto& row = rows[static_cast<std::size_t>(i)];
      int64_t at = out.row_ptr[static_cast<std::size_t>(i)];
      for (const auto& [c, v] : row) {
        out.col[static_cast<std::size_t>(at)] = c;
        out.value[static_cast<std::size_t>(at++)] = v;
      }
      std::vector<std::pair<int64_t, double>>().swap(row);
    }
  });
  return out;
}

}  // namespace

int64_t round_half_even(double x) {
  return static_cast<int64_t>(std::nearbyint(x));
}

SparseRows k_reciprocal_encoding(const torch::Tensor& features, const NeighborTable& table,
                                 BaseDistance base, const KReciprocalOptions& options) {
  const int64_t n = table.index.size(0);
  const int64_t stride = table.index.size(1);
  const int64_t d = features.size(1);
  const int64_t k1 = options.k1;
  const int64_t k_half = round_half_even(static_cast<double>(k1) / 2.0);
  TORCH_CHECK(k1 >= 1 && options.k2 >= 1, "k_reciprocal_encoding: k1 and k2 must be positive, got ",
              k1, " and ", options.k2);
  // A table narrower than k1 + 1 (or k2) is only complete when it holds
  // every column: the sets are then the whole rows.
  TORCH_CHECK(stride >= std::min(std::max(k1 + 1, options.k2), n),
              "k_reciprocal_encoding: needs min(max(k1 + 1, k2), n) = ",
              std::min(std::max(k1 + 1, options.k2), n), " neighbours per row, the table has ",
              stride);
  const int64_t k2 = std::min(options.k2, stride);
  const auto full = reciprocal_sets(table, k1);
  const auto half = reciprocal_sets(table, k_half);

  const int64_t* idx = table.index.data_ptr<int64_t>();
  const double* dist = table.distance.data_ptr<double>();
  const double* row_max = table.row_max.data_ptr<double>();
  const double* norms = table.squared_norm.data_ptr<double>();
  const float* f = features.data_ptr<float>();

  // V: softmax of −b(i, j)/max b(i, ·) over the expanded set E_i.
  std::vector<std::vector<std::pair<int64_t, double>>> v_rows(static_cast<std::size_t>(n));
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const auto& r_full = full[static_cast<std::size_t>(i)];
      const auto r_full_sorted = sorted_unique(r_full);
      std::vector<int64_t> expanded = r_full;
      for (const int64_t c : r_full) {
        const auto candidate = sorted_unique(half[static_cast<std::size_t>(c)]);
        std::vector<int64_t> common;
        std::set_intersection(candidate.begin(), candidate.end(), r_full_sorted.begin(),
                              r_full_sorted.end(), std::back_inserter(common));
        if (static_cast<double>(common.size()) >
            2.0 / 3.0 * static_cast<double>(candidate.size())) {
          expanded.insert(expanded.end(), candidate.begin(), candidate.end());
        }
      }
      expanded = sorted_unique(std::move(expanded));
      // More than k1 + 1 exact duplicates can crowd a row out of its own
      // neighbour list; it then encodes as itself alone.
      if (expanded.empty()) expanded.push_back(i);
      auto& row = v_rows[static_cast<std::size_t>(i)];
      row.reserve(expanded.size());
      double total = 0;
      for (const int64_t j : expanded) {
        // b(i, j) from the table when j is a stored neighbour, else directly.
        const int64_t* begin_row = idx + i * stride;
        const int64_t* found = std::find(begin_row, begin_row + stride, j);
        const double b = found != begin_row + stride
                             ? dist[i * stride + (found - begin_row)]
                             : base_distance(base, f + i * d, f + j * d, d, norms[i], norms[j]);
        // A row whose every distance is 0 (n = 1, or all rows equal) would
        // divide 0 by 0; its normalised distances are all 0.
        const double scale = row_max[i] > 0 ? row_max[i] : 1.0;
        const double weight = std::exp(-b / scale);
        row.emplace_back(j, weight);
        total += weight;
      }
      for (auto& entry : row) entry.second /= total;
    }
  });
  if (k2 == 1) return assemble(v_rows, n);

  // Local query expansion: the mean of V over the k2 nearest rows.
  std::vector<std::vector<std::pair<int64_t, double>>> qe_rows(static_cast<std::size_t>(n));
  const double scale = 1.0 / static_cast<double>(k2);
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    std::vector<std::pair<int64_t, double>> merged;
    for (int64_t i = begin; i < end; ++i) {
      merged.clear();
      for (int64_t r = 0; r < k2; ++r) {
        const auto& source = v_rows[static_cast<std::size_t>(idx[i * stride + r])];
        merged.insert(merged.end(), source.begin(), source.end());
      }
      std::sort(merged.begin(), merged.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      auto& row = qe_rows[static_cast<std::size_t>(i)];
      for (std::size_t e = 0; e < merged.size();) {
        const int64_t c = merged[e].first;
        double sum = 0;
        for (; e < merged.size() && merged[e].first == c; ++e) sum += merged[e].second;
        row.emplace_back(c, sum * scale);
      }
    }
  });
  return assemble(qe_rows, n);
}

SparseRows transpose(const SparseRows& rows) {
  SparseRows out;
  out.rows = rows.cols;
  out.cols = rows.rows;
  out.row_ptr.assign(static_cast<std::size_t>(out.rows) + 1, 0);
  for (const int64_t c : rows.col) ++out.row_ptr[static_cast<std::size_t>(c) + 1];
  for (std::size_t c = 0; c < static_cast<std::size_t>(out.rows); ++c) {
    out.row_ptr[c + 1] += out.row_ptr[c];
  }
  out.col.resize(rows.col.size());
  out.value.resize(rows.col.size());
  std::vector<int64_t> next(out.row_ptr.begin(), out.row_ptr.end() - 1);
  for (int64_t r = 0; r < rows.rows; ++r) {  // rows ascending: columns stay sorted
    for (int64_t e = rows.row_ptr[static_cast<std::size_t>(r)];
         e < rows.row_ptr[static_cast<std::size_t>(r) + 1]; ++e) {
      const auto slot = static_cast<std::size_t>(next[static_cast<std::size_t>(rows.col[e])]++);
      out.col[slot] = r;
      out.value[slot] = rows.value[static_cast<std::size_t>(e)];
    }
  }
  return out;
}

}  // namespace tandem::clustering
