// The clustering benchmark: one workload per process run, so that the
// driver (bench/clustering_side_by_side.py) can read each one's peak RSS.
// Prints one JSON line. Workloads:
//   jaccard  --n N [--d D] [--search exact|ivf] [--lists L] [--probe P] [--save PREFIX]
//            Jaccard distance + adaptive eps + DBSCAN on synthetic features
//   knn      --n N [--d D] [--k K]      FAISS exact k-NN search alone (the floor)
//   compare  --a PREFIX --b PREFIX      neighbour recall and label agreement
//   evaluate --q Q --g G [--d D]        evaluate() on a given distance matrix, and
//                                       evaluate_features() with the distances
// The features are generated with the same torch calls as in
// bench/clustering_reference.py, so both sides see identical data.
#include <faiss/IndexFlat.h>
#include <malloc.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <unordered_map>

#include "tandem/clustering/dbscan.h"
#include "tandem/clustering/evaluation.h"
#include "tandem/clustering/jaccard.h"
#include "tandem/clustering/neighbors.h"
#include "tandem/methods/serialization.h"

namespace {

using namespace tandem::clustering;  // NOLINT(google-build-using-namespace): benchmark program
using Clock = std::chrono::steady_clock;

// Current resident set size in MiB (for the phase breakdown).
double rss_mib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * 4096.0 / (1 << 20);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Identities of 16 images around unit centres, noise σ per dimension, then
// L2-normalised: the shape of averaged re-ID teacher features. Generated in
// chunks of rows so that no temporary inflates the peak RSS being measured.
torch::Tensor synthetic_features(int64_t n, int64_t d, int64_t seed, double sigma) {
  torch::manual_seed(seed);
  const int64_t ids = std::max<int64_t>(1, n / 16);
  auto centres = torch::randn({ids, d});
  centres = centres / centres.norm(2, {1}, true);
  auto features = torch::empty({n, d});
  constexpr int64_t kChunk = 1024;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t rows = std::min(kChunk, n - start);
    const auto labels = torch::arange(start, start + rows) % ids;
    auto chunk = centres.index_select(0, labels) + sigma * torch::randn({rows, d});
    features.narrow(0, start, rows).copy_(chunk / chunk.norm(2, {1}, true));
  }
  return features;
}

std::map<std::string, std::string> parse(int argc, char** argv, int first) {
  std::map<std::string, std::string> flags;
  for (int i = first; i + 1 < argc; i += 2) flags[argv[i]] = argv[i + 1];
  return flags;
}

int64_t flag_int(const std::map<std::string, std::string>& flags, const std::string& name,
                 int64_t fallback) {
  auto it = flags.find(name);
  return it == flags.end() ? fallback : std::stoll(it->second);
}

std::string flag_str(const std::map<std::string, std::string>& flags, const std::string& name,
                     const std::string& fallback) {
  auto it = flags.find(name);
  return it == flags.end() ? fallback : it->second;
}

int run_jaccard(const std::map<std::string, std::string>& flags) {
  const int64_t n = flag_int(flags, "--n", 12936);
  const int64_t d = flag_int(flags, "--d", 2048);
  const auto features = synthetic_features(n, d, flag_int(flags, "--seed", 0), 0.02);
  JaccardOptions options;
  if (flag_str(flags, "--search", "exact") == "ivf") options.search = NeighborSearch::kIvf;
  options.ivf_lists = flag_int(flags, "--lists", 0);
  options.ivf_probe = flag_int(flags, "--probe", 64);

  const double rss_features = rss_mib();
  const auto start = Clock::now();
  NeighborOptions neighbor_options;
  neighbor_options.k = std::min(std::max(options.k1 + 1, options.k2), n);
  neighbor_options.search = options.search;
  neighbor_options.ivf_lists = options.ivf_lists;
  neighbor_options.ivf_probe = options.ivf_probe;
  const auto table = find_neighbors(features, neighbor_options);
  const double t_neighbors = seconds_since(start);
  const double rss_neighbors = rss_mib();
  const auto distance = jaccard_distance_from_neighbors(features, table, options);
  const double t_jaccard = seconds_since(start) - t_neighbors;
  const double rss_jaccard = rss_mib();
  const double eps = adaptive_eps(distance, 1.6e-3);
  const double t_eps = seconds_since(start) - t_neighbors - t_jaccard;
  DbscanOptions dbscan_options;
  dbscan_options.eps = eps;
  const auto labels = dbscan(distance, dbscan_options);
  const double total = seconds_since(start);
  const auto stats = cluster_stats(labels);

  const std::string save = flag_str(flags, "--save", "");
  if (!save.empty()) {
    tandem::methods::StateDict out;
    out.insert("labels", labels);
    out.insert("neighbors", table.index);
    tandem::methods::save_state_dict(out, save + ".pt");
  }
  std::printf(
      "{\"workload\": \"jaccard\", \"n\": %ld, \"d\": %ld, \"search\": \"%s\", \"seconds\": %.3f, "
      "\"neighbors_s\": %.3f, \"jaccard_s\": %.3f, \"eps_s\": %.3f, \"dbscan_s\": %.3f, "
      "\"nnz\": %ld, \"eps\": %.6f, \"clusters\": %ld, \"noise\": %ld, \"estimated_recall\": %.4f, "
      "\"rss_after_features_mib\": "
      "%.0f, \"rss_after_neighbors_mib\": %.0f, \"rss_after_jaccard_mib\": %.0f}\n",
      static_cast<long>(n), static_cast<long>(d), flag_str(flags, "--search", "exact").c_str(),
      total, t_neighbors, t_jaccard, t_eps, total - t_neighbors - t_jaccard - t_eps,
      static_cast<long>(distance.nnz()), eps, static_cast<long>(stats.clusters),
      static_cast<long>(stats.noise), table.estimated_recall, rss_features, rss_neighbors,
      rss_jaccard);
  return 0;
}

int run_knn(const std::map<std::string, std::string>& flags) {
  const int64_t n = flag_int(flags, "--n", 12936);
  const int64_t d = flag_int(flags, "--d", 2048);
  const int64_t k = flag_int(flags, "--k", 21);
  const auto features = synthetic_features(n, d, flag_int(flags, "--seed", 0), 0.02);
  const auto start = Clock::now();
  faiss::IndexFlatIP index(d);
  index.add(n, features.data_ptr<float>());
  std::vector<float> distances(static_cast<std::size_t>(n * k));
  std::vector<faiss::Index::idx_t> labels(static_cast<std::size_t>(n * k));
  index.search(n, features.data_ptr<float>(), k, distances.data(), labels.data());
  std::printf("{\"workload\": \"knn\", \"n\": %ld, \"d\": %ld, \"k\": %ld, \"seconds\": %.3f}\n",
              static_cast<long>(n), static_cast<long>(d), static_cast<long>(k),
              seconds_since(start));
  return 0;
}

// Adjusted Rand index of two labelings (noise −1 treated as one more label).
double adjusted_rand_index(const torch::Tensor& a, const torch::Tensor& b) {
  const int64_t n = a.size(0);
  const int64_t* x = a.data_ptr<int64_t>();
  const int64_t* y = b.data_ptr<int64_t>();
  std::unordered_map<int64_t, double> rows, cols;
  std::map<std::pair<int64_t, int64_t>, double> cells;
  for (int64_t i = 0; i < n; ++i) {
    rows[x[i]] += 1;
    cols[y[i]] += 1;
    cells[{x[i], y[i]}] += 1;
  }
  const auto pairs = [](double c) { return c * (c - 1) / 2; };
  double index = 0, row_sum = 0, col_sum = 0;
  for (const auto& [key, c] : cells) index += pairs(c);
  for (const auto& [key, c] : rows) row_sum += pairs(c);
  for (const auto& [key, c] : cols) col_sum += pairs(c);
  const double expected = row_sum * col_sum / pairs(static_cast<double>(n));
  const double maximum = (row_sum + col_sum) / 2;
  return maximum == expected ? 1.0 : (index - expected) / (maximum - expected);
}

int run_compare(const std::map<std::string, std::string>& flags) {
  const auto a =
      tandem::methods::load_torch_file(flag_str(flags, "--a", "") + ".pt").toGenericDict();
  const auto b =
      tandem::methods::load_torch_file(flag_str(flags, "--b", "") + ".pt").toGenericDict();
  const auto na = a.at("neighbors").toTensor();  // approximate
  const auto nb = b.at("neighbors").toTensor();  // exact
  const int64_t n = na.size(0);
  const int64_t k = na.size(1);
  int64_t found = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t* row_a = na[i].data_ptr<int64_t>();
    const int64_t* row_b = nb[i].data_ptr<int64_t>();
    for (int64_t r = 0; r < k; ++r) {
      found += std::find(row_a, row_a + k, row_b[r]) != row_a + k;
    }
  }
  const auto la = a.at("labels").toTensor().contiguous();
  const auto lb = b.at("labels").toTensor().contiguous();
  std::printf(
      "{\"workload\": \"compare\", \"n\": %ld, \"recall\": %.5f, \"adjusted_rand_index\": %.5f, "
      "\"same_label_fraction\": %.5f}\n",
      static_cast<long>(n), static_cast<double>(found) / static_cast<double>(n * k),
      adjusted_rand_index(la, lb), (la == lb).to(torch::kFloat64).mean().item<double>());
  return 0;
}

int run_evaluate(const std::map<std::string, std::string>& flags) {
  const int64_t q = flag_int(flags, "--q", 3368);
  const int64_t g = flag_int(flags, "--g", 15913);
  const int64_t d = flag_int(flags, "--d", 2048);
  // Market-like: 750 identities, 6 cameras.
  torch::manual_seed(flag_int(flags, "--seed", 0));
  auto centres = torch::randn({750, d});
  centres = centres / centres.norm(2, {1}, true);
  const auto qid = torch::arange(q) % 750;
  const auto gid = torch::arange(g) % 750;
  const auto qcam = torch::arange(q) % 6;
  const auto gcam = torch::div(torch::arange(g), 750, "floor") % 6;
  auto query = centres.index_select(0, qid) + 0.09 * torch::randn({q, d});
  auto gallery = centres.index_select(0, gid) + 0.09 * torch::randn({g, d});
  query = (query / query.norm(2, {1}, true)).contiguous();
  gallery = (gallery / gallery.norm(2, {1}, true)).contiguous();
  const auto distances =
      (query.pow(2).sum(1, true) + gallery.pow(2).sum(1).unsqueeze(0) - 2 * query.mm(gallery.t()))
          .contiguous();
  auto start = Clock::now();
  const auto given = evaluate(distances, qid, qcam, gid, gcam);
  const double t_given = seconds_since(start);
  start = Clock::now();
  const auto all_in = evaluate_features(query, gallery, qid, qcam, gid, gcam);
  const double t_all_in = seconds_since(start);
  std::printf(
      "{\"workload\": \"evaluate\", \"q\": %ld, \"g\": %ld, \"given_s\": %.3f, \"all_in_s\": "
      "%.3f, \"mean_ap\": %.6f, \"rank1\": %.6f, \"all_in_mean_ap\": %.6f}\n",
      static_cast<long>(q), static_cast<long>(g), t_given, t_all_in, given.mean_ap, given.cmc[0],
      all_in.mean_ap);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: bench_clustering jaccard|knn|compare|evaluate [--flag value ...]\n";
    return 2;
  }
  const std::string workload = argv[1];
  const auto flags = parse(argc, argv, 2);
  // As `tandem cluster` does: large blocks go back to the system when freed.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // Every core (this machine's OpenMP default is one thread); FAISS shares
  // the OpenMP runtime, so this sets its threads too.
  const char* threads = std::getenv("TANDEM_BENCH_THREADS");
  torch::set_num_threads(threads ? std::atoi(threads)
                                 : static_cast<int>(std::thread::hardware_concurrency()));
  try {
    if (workload == "jaccard") return run_jaccard(flags);
    if (workload == "knn") return run_knn(flags);
    if (workload == "compare") return run_compare(flags);
    if (workload == "evaluate") return run_evaluate(flags);
  } catch (const c10::Error& error) {
    std::cerr << "bench_clustering: " << error.what_without_backtrace() << "\n";
    return 1;
  }
  std::cerr << "bench_clustering: unknown workload '" << workload << "'\n";
  return 2;
}
