// An MMT job end to end on each device, and whether the devices agree: a
// synthetic re-ID target (worker/data/synth.h, rendered in memory), two
// small students, pseudo labels every epoch from clustering::pseudo_labels
// (Jaccard distance + DBSCAN with MMT's adaptive eps at epoch 0, reused after,
// as `tandem train`'s mmt job does), worker::MmtTrainer for a few epochs.
// The same seed on every device: the same images, augmentations, initial
// weights and batches, so the losses of iteration i agree up to floating
// point. Needs only tandem::worker, tandem::methods and tandem::clustering
// (no gRPC, FAISS or Google Benchmark): it builds in a core-only build on a
// GPU machine (bench/gpu/run.sh), and its CPU run is the smoke test CI runs.
//
//   bench_mmt_job_check [--devices cpu,cuda] [--epochs 2] [--iters 4]
//                       [--ids 16] [--cameras 3] [--images-per-camera 4]
//                       [--height 32] [--width 16] [--net-width 8]
//                       [--identities 4] [--instances 4] [--rho 0.1]
//                       [--min-samples 4] [--k1 6] [--k2 2] [--seed 1]
//                       [--compare-iters 0] [--tolerance 1e-3] [--threads T]
//                       [--bf16] [--channels-last] [--tf32]
//
// --devices defaults to cpu,cuda where LibTorch sees a GPU, else cpu. Prints
// every iteration's loss terms per device, the iterations side by side, and
// one JSON line {"check": "mmt_job", ...}: per device the images/s of the
// training iterations, the clusters and eps of every epoch and (CUDA) the
// peak GPU memory; against the first device, the largest relative
// difference of the total loss over the compared iterations (all, or the
// first --compare-iters of the run; only epochs whose pseudo labels agree)
// and `pass` (<= --tolerance). fp32 compares with TF32 off on the GPU
// (cuDNN's default is TF32 convolutions), unless --tf32. Exit status 0:
// passed (or a single device ran), 1: the devices disagree, 2: bad flags,
// 3: the job failed.
#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#ifdef TANDEM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tandem/clustering/label_agreement.h"
#include "tandem/clustering/pseudo_labels.h"
#include "tandem/methods/models/reidentifier.h"
#include "tandem/methods/models/resnet.h"
#include "tandem/worker/data/loader.h"
#include "tandem/worker/data/synth.h"
#include "tandem/worker/train/mmt_trainer.h"

namespace {
using Clock = std::chrono::steady_clock;
namespace models = tandem::methods::models;
namespace worker = tandem::worker;
namespace clustering = tandem::clustering;

constexpr const char* kUsage =
    "usage: bench_mmt_job_check [--devices cpu,cuda] [--epochs E] [--iters N] [--ids I]\n"
    "                           [--cameras C] [--images-per-camera M] [--height H] [--width W]\n"
    "                           [--net-width w] [--identities P] [--instances K] [--rho R]\n"
    "                           [--min-samples S] [--k1 K1] [--k2 K2] [--seed S]\n"
    "                           [--compare-iters N] [--tolerance T] [--threads T]\n"
    "                           [--bf16] [--channels-last] [--tf32]\n";

struct Args {
  std::vector<std::string> devices;
  int64_t epochs = 2;
  int64_t iters = 4;
  int64_t ids = 16;  // half train, half test: the train half is the target
  int64_t cameras = 3;
  int64_t images_per_camera = 4;
  int64_t height = 32;
  int64_t width = 16;
  int64_t net_width = 8;
  int64_t identities = 4;
  int64_t instances = 4;
  // Clustering of a tiny target: MMT's min_samples; k1, k2 and rho scaled
  // down from MMT's (20, 6, 1.6e-3 for ~13,000 images) to 72 images, where
  // the untrained students' features give several clusters and some noise.
  double rho = 0.1;
  int64_t min_samples = 4;
  int64_t k1 = 6;
  int64_t k2 = 2;
  int64_t seed = 1;
  int64_t compare_iters = 0;
  double tolerance = 1e-3;
  int64_t threads = 0;
  bool bf16 = false;
  bool channels_last = false;
  bool tf32 = false;
};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Throws std::invalid_argument (caught in main) naming the flag.
Args parse(int argc, char** argv) {
  Args a;
  std::optional<std::string> devices;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--bf16" || flag == "--channels-last" || flag == "--tf32") {
      (flag == "--bf16" ? a.bf16 : flag == "--tf32" ? a.tf32 : a.channels_last) = true;
      continue;
    }
    if (flag == "--help" || flag == "-h") throw std::invalid_argument("");
    if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
    const std::string value = argv[++i];
    const auto number = [&](bool integral) -> double {
      size_t used = 0;
      double v = 0;
      try {
        v = integral ? static_cast<double>(std::stoll(value, &used)) : std::stod(value, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != value.size()) {
        throw std::invalid_argument(flag + ": not " + (integral ? "an integer" : "a number") +
                                    ": " + value);
      }
      return v;
    };
    const std::map<std::string, int64_t*> integers = {{"--epochs", &a.epochs},
                                                      {"--iters", &a.iters},
                                                      {"--ids", &a.ids},
                                                      {"--cameras", &a.cameras},
                                                      {"--images-per-camera", &a.images_per_camera},
                                                      {"--height", &a.height},
                                                      {"--width", &a.width},
                                                      {"--net-width", &a.net_width},
                                                      {"--identities", &a.identities},
                                                      {"--instances", &a.instances},
                                                      {"--min-samples", &a.min_samples},
                                                      {"--k1", &a.k1},
                                                      {"--k2", &a.k2},
                                                      {"--seed", &a.seed},
                                                      {"--compare-iters", &a.compare_iters},
                                                      {"--threads", &a.threads}};
    const std::map<std::string, double*> reals = {{"--rho", &a.rho}, {"--tolerance", &a.tolerance}};
    if (flag == "--devices") {
      devices = value;
    } else if (const auto it = integers.find(flag); it != integers.end()) {
      *it->second = static_cast<int64_t>(number(true));
    } else if (const auto real = reals.find(flag); real != reals.end()) {
      *real->second = number(false);
    } else {
      throw std::invalid_argument("unknown flag " + flag);
    }
  }
  a.devices = split_list(devices.value_or(torch::cuda::is_available() ? "cpu,cuda" : "cpu"));
  if (a.devices.empty()) throw std::invalid_argument("--devices names no device");
  for (const auto& d : a.devices) {
    if (d != "cpu" && d != "cuda" && d.rfind("cuda:", 0) != 0) {
      throw std::invalid_argument("--devices: cpu, cuda or cuda:N, got " + d);
    }
  }
  if (a.epochs < 1 || a.iters < 1) throw std::invalid_argument("--epochs and --iters >= 1");
  if (a.net_width < 1) throw std::invalid_argument("--net-width >= 1");
  if (a.rho <= 0 || a.tolerance <= 0) throw std::invalid_argument("--rho, --tolerance > 0");
  if (a.compare_iters < 0 || a.threads < 0) {
    throw std::invalid_argument("--compare-iters, --threads >= 0");
  }
  return a;
}

// The target train split of a synthetic Market-1501 domain, decoded in
// memory (no JPEG round trip: the check needs no image codecs).
struct Target {
  std::shared_ptr<worker::MemoryImageSource> source;
  std::vector<int64_t> cameras;
  torch::Tensor pids;  // the true identities, only to score the pseudo labels
};

Target synthetic_target(const Args& a) {
  worker::SynthOptions options;
  options.ids = a.ids;
  options.cameras = a.cameras;
  options.images_per_camera = a.images_per_camera;
  options.height = a.height;
  options.width = a.width;
  options.seed = static_cast<uint64_t>(a.seed);
  options.distractor_fraction = 0;
  options.threads = 1;
  std::vector<worker::Image> images;
  std::vector<int64_t> pids;
  Target target;
  for (const auto& planned : worker::plan_market_dataset(options)) {
    if (planned.split != worker::SynthSplit::kTrain) continue;
    images.push_back(worker::render_synth_image(options, planned));
    pids.push_back(planned.pid);
    target.cameras.push_back(planned.camera - 1);
  }
  target.source = std::make_shared<worker::MemoryImageSource>(std::move(images));
  target.pids = torch::tensor(pids, torch::kInt64);
  return target;
}

models::ReIdentifier small_model(int64_t net_width, uint64_t seed) {
  torch::manual_seed(seed);
  models::SmallReidNet net(models::SmallReidNetOptions().width(net_width));
  const int64_t features = net->out_features();
  // The head is replaced by the centroids at every epoch start.
  return models::ReIdentifier(torch::nn::AnyModule(net), features, 1);
}

struct Iteration {
  int64_t epoch = 0, iteration = 0;
  std::vector<std::pair<std::string, double>> losses;  // ce, tri, soft_ce, soft_tri
  double total = 0;                                    // the minimised weighted sum
};

// The loss MmtStep minimises, from the terms IterationProgress reports:
// (1 − λ_id)·ce + (1 − λ_tri)·tri + λ_id·soft_ce + λ_tri·soft_tri.
double weighted_total(const std::vector<std::pair<std::string, double>>& losses,
                      const worker::MmtOptions& o) {
  double total = 0;
  for (const auto& [name, value] : losses) {
    if (name == "ce") total += (1 - o.soft_ce_weight) * value;
    if (name == "tri") total += (1 - o.soft_triplet_weight) * value;
    if (name == "soft_ce") total += o.soft_ce_weight * value;
    if (name == "soft_tri") total += o.soft_triplet_weight * value;
  }
  return total;
}

struct Epoch {
  int64_t clusters = 0, noise = 0;
  double eps = 0, images_per_second = 0, pair_precision = 0, pair_recall = 0, seconds = 0;
  torch::Tensor labels;
};

struct DeviceRun {
  std::string device;
  std::vector<Iteration> iterations;
  std::vector<Epoch> epochs;
  double train_images_per_second = 0;  // mean over the epochs
  double seconds = 0;
  int64_t peak_memory_bytes = -1, peak_reserved_bytes = -1;  // CUDA only
};

DeviceRun run_on(const std::string& device_name, const Args& a, const Target& target) {
  const torch::Device device(device_name);
  DeviceRun run;
  run.device = device_name;
  worker::MmtOptions options;
  options.epochs = a.epochs;
  options.iters = a.iters;
  options.num_identities = a.identities;
  options.num_instances = a.instances;
  options.train_transform = worker::TransformOptions::train(a.height, a.width);
  options.train_transform.pad = 2;
  options.loader_threads = 2;
  options.extract_batch = 32;
  options.seed = static_cast<uint64_t>(a.seed);
  options.bn_group_size = 0;
  options.device = device;
  options.bf16 = a.bf16;
  options.channels_last = a.channels_last;
  const worker::MmtOptions weights = options;
  options.on_iteration = [&run, weights](const worker::IterationProgress& p) {
    run.iterations.push_back({p.epoch, p.iteration, p.losses, weighted_total(p.losses, weights)});
    std::ostringstream line;
    line << std::setprecision(7) << "[" << run.device << "] epoch " << p.epoch + 1 << " iter "
         << p.iteration << "/" << p.iterations << " loss " << run.iterations.back().total;
    for (const auto& [name, value] : p.losses) line << " " << name << " " << value;
    std::cout << line.str() << std::endl;
  };

  // As `tandem train`'s mmt job: DBSCAN on the Jaccard distance, MMT's
  // adaptive eps from epoch 0's features, that eps for every later epoch.
  clustering::PseudoLabelOptions cluster_options;
  cluster_options.algorithm = clustering::PseudoLabelOptions::Algorithm::kDbscan;
  cluster_options.jaccard.k1 = a.k1;
  cluster_options.jaccard.k2 = a.k2;
  cluster_options.dbscan.min_samples = a.min_samples;
  cluster_options.rho = a.rho;
  auto fixed_eps = std::make_shared<double>(0.0);
  auto epochs = std::make_shared<std::vector<Epoch>>();
  const torch::Tensor truth = target.pids;
  const auto pseudo_labels = [cluster_options, fixed_eps, epochs, truth](
                                 const torch::Tensor& features, int64_t) {
    clustering::PseudoLabelOptions o = cluster_options;
    if (*fixed_eps > 0) {
      o.rho = std::nullopt;
      o.dbscan.eps = *fixed_eps;
    }
    const auto result = clustering::pseudo_labels(features, o);
    *fixed_eps = result.eps;
    const auto agreement = clustering::label_agreement(result.labels, truth);
    Epoch e;
    e.clusters = result.stats.clusters;
    e.noise = result.stats.noise;
    e.eps = result.eps;
    e.labels = result.labels;
    e.pair_precision = agreement.pair_precision;
    e.pair_recall = agreement.pair_recall;
    epochs->push_back(e);
    worker::PseudoLabels out;
    out.labels = result.labels;
    out.centroids = result.centroids;
    out.eps = result.eps;
    return out;
  };

  const auto start = Clock::now();
  worker::MmtTrainer trainer(small_model(a.net_width, static_cast<uint64_t>(a.seed)),
                             small_model(a.net_width, static_cast<uint64_t>(a.seed) + 1),
                             target.source, target.cameras, options, pseudo_labels);
  for (int64_t epoch = 0; epoch < a.epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    const worker::MmtEpochStats stats = trainer.train_epoch(epoch);
    Epoch& e = epochs->at(static_cast<size_t>(epoch));
    e.images_per_second = stats.train_images_per_second;
    e.seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    run.train_images_per_second += stats.train_images_per_second / static_cast<double>(a.epochs);
    std::cout << std::setprecision(6) << "[" << device_name << "] epoch " << epoch + 1 << "/"
              << a.epochs << ": " << stats.clusters << " clusters, " << stats.noise
              << " noise, eps " << stats.eps << ", pair precision " << e.pair_precision
              << ", recall " << e.pair_recall << ", loss " << stats.losses.total << ", "
              << stats.train_images_per_second << " images/s, " << e.seconds << " s" << std::endl;
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  run.epochs = *epochs;
#ifdef TANDEM_WITH_CUDA
  if (device.is_cuda()) {
    torch::cuda::synchronize();
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    constexpr auto kAll = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    run.peak_memory_bytes = stats.allocated_bytes[kAll].peak;
    run.peak_reserved_bytes = stats.reserved_bytes[kAll].peak;
  }
#endif
  return run;
}

// The comparison of one device with the reference (the first device).
struct Comparison {
  std::string device;
  int64_t compared = 0;
  double max_relative = 0;         // total loss
  double max_relative_terms = 0;   // every term
  std::vector<bool> labels_equal;  // per epoch
  bool pass = false;
};

double relative(double a, double b) {
  const double scale = std::max(std::abs(b), 1e-12);
  return std::abs(a - b) / scale;
}

Comparison compare(const DeviceRun& run, const DeviceRun& reference, const Args& a) {
  Comparison c;
  c.device = run.device;
  // Epochs compared: up to the first whose pseudo labels differ (from there
  // on the two jobs train on different labels, which is not an error of
  // the arithmetic: a feature a rounding apart can fall on either side of eps).
  int64_t agreeing_epochs = 0;
  for (size_t e = 0; e < run.epochs.size() && e < reference.epochs.size(); ++e) {
    const bool equal = torch::equal(run.epochs[e].labels, reference.epochs[e].labels);
    c.labels_equal.push_back(equal);
    if (equal && agreeing_epochs == static_cast<int64_t>(e)) ++agreeing_epochs;
  }
  const size_t n = std::min(run.iterations.size(), reference.iterations.size());
  for (size_t i = 0; i < n; ++i) {
    if (a.compare_iters > 0 && static_cast<int64_t>(i) >= a.compare_iters) break;
    const Iteration& x = run.iterations[i];
    const Iteration& y = reference.iterations[i];
    if (x.epoch >= agreeing_epochs) break;
    c.max_relative = std::max(c.max_relative, relative(x.total, y.total));
    for (size_t t = 0; t < x.losses.size() && t < y.losses.size(); ++t) {
      c.max_relative_terms =
          std::max(c.max_relative_terms, relative(x.losses[t].second, y.losses[t].second));
    }
    ++c.compared;
  }
  c.pass = c.compared > 0 && c.max_relative <= a.tolerance;
  return c;
}

std::string json_string(const std::string& s) {
  return "\"" + s + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse(argc, argv);
  } catch (const std::exception& e) {
    if (*e.what() != '\0') std::cerr << "bench_mmt_job_check: " << e.what() << "\n";
    std::cerr << kUsage;
    return 2;
  }
  for (const auto& d : args.devices) {
    if (d != "cpu" && !torch::cuda::is_available()) {
      std::cerr << "bench_mmt_job_check: --devices names " << d << ", but this LibTorch "
                << TORCH_VERSION << " has no usable CUDA device (a CPU build, or no GPU visible)\n";
      return 2;
    }
  }
  if (args.threads > 0) torch::set_num_threads(static_cast<int>(args.threads));
  // fp32 means fp32: cuDNN's convolutions default to TF32 on Ampere and later.
  // (The legacy setters: mixing them with setFloat32Precision makes
  // LibTorch's own legacy queries throw.)
  at::globalContext().setAllowTF32CuDNN(args.tf32);
  at::globalContext().setAllowTF32CuBLAS(args.tf32);

  std::vector<DeviceRun> runs;
  Target target;
  try {
    target = synthetic_target(args);
    std::cout << "bench_mmt_job_check: " << target.source->size() << " synthetic target images ("
              << args.height << " x " << args.width << ", " << (args.ids + 1) / 2 << " identities, "
              << args.cameras << " cameras), SmallReidNet width " << args.net_width << ", "
              << args.epochs << " epochs x " << args.iters << " iterations of " << args.identities
              << " x " << args.instances << (args.bf16 ? ", bf16 autocast" : ", fp32") << std::endl;
    for (const auto& device : args.devices) runs.push_back(run_on(device, args, target));
  } catch (const std::exception& e) {
    std::cerr << "bench_mmt_job_check: the job failed: " << e.what() << "\n";
    return 3;
  }

  // The iterations side by side.
  std::cout << "\niteration";
  for (const auto& r : runs) std::cout << "  total[" << r.device << "]";
  std::cout << (runs.size() > 1 ? "  max relative difference\n" : "\n");
  for (size_t i = 0; i < runs[0].iterations.size(); ++i) {
    const Iteration& it = runs[0].iterations[i];
    std::cout << std::setprecision(8) << "e" << it.epoch + 1 << ".i" << it.iteration;
    double worst = 0;
    for (const auto& r : runs) {
      if (i < r.iterations.size()) {
        std::cout << "  " << r.iterations[i].total;
        worst = std::max(worst, relative(r.iterations[i].total, it.total));
      }
    }
    if (runs.size() > 1) std::cout << "  " << std::setprecision(3) << worst;
    std::cout << "\n";
  }

  std::vector<Comparison> comparisons;
  for (size_t r = 1; r < runs.size(); ++r) comparisons.push_back(compare(runs[r], runs[0], args));
  bool finite = true;
  for (const auto& r : runs) {
    for (const auto& it : r.iterations) finite = finite && std::isfinite(it.total);
  }
  bool pass = finite;
  for (const auto& c : comparisons) pass = pass && c.pass;

  std::ostringstream out;
  out << std::setprecision(8) << std::boolalpha
      << "{\"check\": \"mmt_job\", \"torch\": " << json_string(TORCH_VERSION) << ", \"devices\": [";
  for (size_t r = 0; r < runs.size(); ++r) out << (r ? ", " : "") << json_string(runs[r].device);
  out << "], \"images\": " << target.source->size() << ", \"height\": " << args.height
      << ", \"width\": " << args.width
      << ", \"backbone\": \"small\", \"net_width\": " << args.net_width
      << ", \"epochs\": " << args.epochs << ", \"iters\": " << args.iters
      << ", \"batch\": " << args.identities * args.instances << ", \"bf16\": " << args.bf16
      << ", \"channels_last\": " << args.channels_last << ", \"tf32\": " << args.tf32
      << ", \"seed\": " << args.seed << ", \"per_device\": {";
  std::map<std::string, int> seen;  // a device named twice: "cpu", "cpu#2"
  for (size_t r = 0; r < runs.size(); ++r) {
    const DeviceRun& run = runs[r];
    const int count = ++seen[run.device];
    out << (r ? ", " : "")
        << json_string(run.device + (count > 1 ? "#" + std::to_string(count) : ""))
        << ": {\"images_per_second\": " << run.train_images_per_second
        << ", \"seconds\": " << run.seconds << ", \"clusters\": [";
    for (size_t e = 0; e < run.epochs.size(); ++e) out << (e ? ", " : "") << run.epochs[e].clusters;
    out << "], \"eps\": [";
    for (size_t e = 0; e < run.epochs.size(); ++e) out << (e ? ", " : "") << run.epochs[e].eps;
    out << "], \"first_loss\": " << (run.iterations.empty() ? 0.0 : run.iterations.front().total)
        << ", \"last_loss\": " << (run.iterations.empty() ? 0.0 : run.iterations.back().total);
    if (run.peak_memory_bytes >= 0) {
      out << ", \"peak_gpu_memory_bytes\": " << run.peak_memory_bytes
          << ", \"peak_gpu_reserved_bytes\": " << run.peak_reserved_bytes;
    }
    out << "}";
  }
  out << "}";
  if (!comparisons.empty()) {
    // One comparison per further device; the headline figures are the worst.
    double worst = 0;
    int64_t compared = comparisons.front().compared;
    for (const auto& c : comparisons) {
      worst = std::max(worst, c.max_relative);
      compared = std::min(compared, c.compared);
    }
    out << ", \"reference\": " << json_string(runs[0].device)
        << ", \"compared_iterations\": " << compared
        << ", \"max_relative_loss_difference\": " << worst << ", \"tolerance\": " << args.tolerance
        << ", \"comparisons\": [";
    for (size_t i = 0; i < comparisons.size(); ++i) {
      const Comparison& c = comparisons[i];
      out << (i ? ", " : "") << "{\"device\": " << json_string(c.device)
          << ", \"compared_iterations\": " << c.compared
          << ", \"max_relative_loss_difference\": " << c.max_relative
          << ", \"max_relative_term_difference\": " << c.max_relative_terms
          << ", \"labels_equal\": [";
      for (size_t e = 0; e < c.labels_equal.size(); ++e) {
        out << (e ? ", " : "") << c.labels_equal[e];
      }
      out << "], \"pass\": " << c.pass << "}";
    }
    out << "]";
  }
  out << ", \"pass\": " << pass << "}";
  std::cout << "\n" << out.str() << std::endl;
  if (!pass) {
    std::cerr << "bench_mmt_job_check: FAILED: "
              << (finite ? "the devices' losses differ by more than the tolerance, or no "
                           "iteration could be compared"
                         : "a loss is not finite")
              << "\n";
    return 1;
  }
  return 0;
}
