// Throughput of one MMT iteration, in images per second: exactly the step of
// worker/train/mmt_trainer.cpp, which is one tandem::worker::MmtStep::run
// (worker/train/mmt_step.h): two EMA teachers forward under InferenceMode,
// two students forward + backward on their views with the four loss terms
// and the cross pairing, an Adam step per student, the warm-up EMA update of
// both teachers, the loss terms read back. By default (as in the trainer)
// the two student/teacher pairs run on two threads with half of the intra-op
// threads each; --sequential runs them one after the other. Random views and
// P x K labels, so that the figure is the training core's alone (no loader).
//
//   bench_mmt_step [--backbone resnet50|resnet18|small] [--batch 64]
//                  [--ids-per-batch 16] [--height 256] [--width 128]
//                  [--iters 10] [--warmup 2] [--threads T] [--classes 500]
//                  [--device cpu|cuda] [--bf16] [--channels-last]
//                  [--sequential] [--seed 1]
//
// Prints one JSON line: images_per_second (= batch / seconds_per_iter, the
// trainer's train_images_per_second), seconds_per_iter (mean of the timed
// iterations), their median and minimum, every timed iteration (`times`),
// the total loss of the first and the last iteration, and the
// configuration. --bf16 runs the four forward passes under CUDA autocast
// (bfloat16); the losses are computed in float32 from the outputs and the
// backward runs outside autocast. --channels-last stores the 4-d weights and
// the views as NHWC. On CUDA the line also holds the rank's peak GPU memory
// (peak_gpu_memory_bytes: allocated, as torch.cuda.max_memory_allocated;
// peak_gpu_reserved_bytes: held by the caching allocator).
// Driven by bench/mmt_step_side_by_side.py (Python twin:
// bench/mmt_step_reference.py) and by bench/gpu/run.sh.
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#ifdef TANDEM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "tandem/methods/ema_teacher.h"
#include "tandem/methods/models/reidentifier.h"
#include "tandem/methods/models/resnet.h"
#include "tandem/worker/train/mmt_step.h"

namespace {
using Clock = std::chrono::steady_clock;
namespace models = tandem::methods::models;
using Model = models::ReIdentifier;
using Teacher = tandem::methods::EmaTeacher<Model>;

constexpr const char* kUsage =
    "usage: bench_mmt_step [--backbone resnet50|resnet18|small] [--batch B] [--ids-per-batch P]\n"
    "                      [--height H] [--width W] [--iters N] [--warmup W] [--threads T]\n"
    "                      [--classes C] [--device cpu|cuda] [--bf16] [--channels-last]\n"
    "                      [--sequential] [--seed S]\n";

struct Args {
  std::string backbone = "resnet50";
  int64_t batch = 64;
  int64_t ids_per_batch = 16;
  int64_t height = 256;
  int64_t width = 128;
  int64_t iters = 10;
  int64_t warmup = 2;
  int64_t threads = 0;  // 0: LibTorch's default
  int64_t classes = 500;
  std::string device = "cpu";
  bool bf16 = false;
  bool channels_last = false;
  bool sequential = false;
  int64_t seed = 1;
};

// Throws std::invalid_argument (caught in main) naming the flag.
Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--bf16") {
      a.bf16 = true;
      continue;
    }
    if (flag == "--channels-last") {
      a.channels_last = true;
      continue;
    }
    if (flag == "--sequential") {
      a.sequential = true;
      continue;
    }
    if (flag == "--help" || flag == "-h") throw std::invalid_argument("");
    if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
    const std::string value = argv[++i];
    const auto integer = [&]() -> int64_t {
      size_t used = 0;
      int64_t v = 0;
      try {
        v = std::stoll(value, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != value.size()) {
        throw std::invalid_argument(flag + ": not an integer: " + value);
      }
      return v;
    };
    const std::map<std::string, int64_t*> integers = {
        {"--batch", &a.batch},     {"--ids-per-batch", &a.ids_per_batch},
        {"--height", &a.height},   {"--width", &a.width},
        {"--iters", &a.iters},     {"--warmup", &a.warmup},
        {"--threads", &a.threads}, {"--classes", &a.classes},
        {"--seed", &a.seed}};
    if (flag == "--backbone") {
      a.backbone = value;
    } else if (flag == "--device") {
      a.device = value;
    } else if (const auto it = integers.find(flag); it != integers.end()) {
      *it->second = integer();
    } else {
      throw std::invalid_argument("unknown flag " + flag);
    }
  }
  if (a.backbone != "resnet50" && a.backbone != "resnet18" && a.backbone != "small") {
    throw std::invalid_argument("--backbone must be resnet50, resnet18 or small, got " +
                                a.backbone);
  }
  if (a.ids_per_batch < 2 || a.batch < 2 * a.ids_per_batch || a.batch % a.ids_per_batch != 0) {
    throw std::invalid_argument(
        "--batch must be a multiple of --ids-per-batch with at least 2 "
        "instances per identity (P >= 2, K >= 2)");
  }
  if (a.classes < a.ids_per_batch) {
    throw std::invalid_argument("--classes must be at least --ids-per-batch");
  }
  if (a.height < 32 || a.width < 32) throw std::invalid_argument("--height and --width >= 32");
  if (a.iters < 1 || a.warmup < 0) throw std::invalid_argument("--iters >= 1, --warmup >= 0");
  if (a.threads < 0) throw std::invalid_argument("--threads must be >= 0");
  if (a.device != "cpu" && a.device != "cuda") {
    throw std::invalid_argument("--device must be cpu or cuda, got " + a.device);
  }
  if (a.bf16 && a.device != "cuda") {
    throw std::invalid_argument("--bf16 (CUDA autocast) needs --device cuda");
  }
  return a;
}

Model make_model(const std::string& backbone, int64_t classes) {
  if (backbone == "resnet50" || backbone == "resnet18") {
    auto net = backbone == "resnet50" ? models::reid_resnet50() : models::reid_resnet18();
    const int64_t features = net->out_features();
    return Model(torch::nn::AnyModule(net), features, classes);
  }
  models::SmallReidNet net;
  const int64_t features = net->out_features();
  return Model(torch::nn::AnyModule(net), features, classes);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse(argc, argv);
  } catch (const std::exception& e) {
    if (*e.what() != '\0') std::cerr << "bench_mmt_step: " << e.what() << "\n";
    std::cerr << kUsage;
    return 2;
  }
  const bool cuda = args.device == "cuda";
  if (cuda && !torch::cuda::is_available()) {
    std::cerr << "bench_mmt_step: --device cuda, but this LibTorch " << TORCH_VERSION
              << " has no usable CUDA device (a CPU build, or no GPU visible)\n";
    return 1;
  }
  if (args.threads > 0) torch::set_num_threads(static_cast<int>(args.threads));
  if (cuda) at::globalContext().setBenchmarkCuDNN(true);  // as MMT: cudnn.benchmark = True
  const torch::Device device(cuda ? torch::kCUDA : torch::kCPU);
  const auto memory_format =
      args.channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;

  // Two differently initialised students (MMT's two seeds), their teachers.
  torch::manual_seed(static_cast<uint64_t>(args.seed));
  Model model_1 = make_model(args.backbone, args.classes);
  torch::manual_seed(static_cast<uint64_t>(args.seed) + 1);
  Model model_2 = make_model(args.backbone, args.classes);
  for (Model* m : {&model_1, &model_2}) (*m)->to(device);
  Teacher teacher_1(model_1, 0.999);
  Teacher teacher_2(model_2, 0.999);
  const int64_t features_dim = model_1->features_dim;

  // What an epoch start does (trainer step 3): every head from the
  // L2-normalised centroids of `classes` clusters.
  torch::manual_seed(static_cast<uint64_t>(args.seed) + 2);
  const torch::Tensor centres =
      torch::nn::functional::normalize(torch::randn({args.classes, features_dim}),
                                       torch::nn::functional::NormalizeFuncOptions().dim(1));
  for (Model* m : {&model_1, &model_2, &teacher_1.module(), &teacher_2.module()}) {
    (*m)->reset_classifier(centres.to(device));
  }

  // The batch: two views of B images, P identities x K instances.
  const int64_t k = args.batch / args.ids_per_batch;
  const torch::Tensor x1 =
      torch::randn({args.batch, 3, args.height, args.width}).to(device).contiguous(memory_format);
  const torch::Tensor x2 =
      torch::randn({args.batch, 3, args.height, args.width}).to(device).contiguous(memory_format);
  const torch::Tensor labels =
      torch::arange(args.ids_per_batch, torch::kInt64).repeat_interleave(k).to(device);

  // Trainer steps 4 and 5: the trainer's MmtStep (Adam per student, the pair
  // threads), and one iteration = one MmtStep::run, the loop body of
  // MmtTrainer::train_epoch.
  tandem::worker::MmtStepOptions step_options;
  step_options.num_classes = args.classes;
  step_options.lr = 3.5e-4;
  step_options.weight_decay = 5e-4;
  step_options.soft_ce_weight = 0.5;
  step_options.soft_triplet_weight = 0.8;
  step_options.label_smoothing = 0.1;
  step_options.parallel_pairs = !args.sequential;
  step_options.bf16_autocast = args.bf16;
  step_options.channels_last = args.channels_last;
  model_1->train();
  model_2->train();
  teacher_1.train();
  teacher_2.train();
  tandem::worker::MmtStep mmt_step(model_1, model_2, teacher_1, teacher_2, step_options);
  double last_total = 0;
  const auto step = [&]() { last_total = mmt_step.run(x1, x2, labels).total; };
  const auto sync = [&]() {
    if (cuda) torch::cuda::synchronize();
  };

  double first_total = 0;
  for (int64_t i = 0; i < args.warmup; ++i) {
    step();
    if (i == 0) first_total = last_total;
  }
  sync();
  std::vector<double> times;
  for (int64_t i = 0; i < args.iters; ++i) {
    const auto start = Clock::now();
    step();
    sync();
    times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    if (args.warmup == 0 && i == 0) first_total = last_total;
  }
  const double mean =
      std::accumulate(times.begin(), times.end(), 0.0) / static_cast<double>(times.size());
  const auto batch = static_cast<double>(args.batch);

  // One JSON object on one line; keys in the order of the Python twin's.
  std::ostringstream out;
  out << std::setprecision(8) << std::boolalpha << "{";
  const char* separator = "";
  const auto key = [&](const char* name) -> std::ostream& {
    out << separator << '"' << name << "\": ";
    separator = ", ";
    return out;
  };
  const auto text = [&](const char* name, const std::string& value) {
    key(name) << '"' << value << '"';
  };
  text("side", "cpp");
  text("backbone", args.backbone);
  key("batch") << args.batch;
  key("ids_per_batch") << args.ids_per_batch;
  key("height") << args.height;
  key("width") << args.width;
  key("classes") << args.classes;
  key("iters") << args.iters;
  key("warmup") << args.warmup;
  key("threads") << torch::get_num_threads();
  text("device", args.device);
  key("bf16") << args.bf16;
  key("channels_last") << args.channels_last;
  key("parallel_pairs") << mmt_step.parallel();
  key("pair_threads") << "[" << mmt_step.pair_threads().first << ", "
                      << mmt_step.pair_threads().second << "]";
  text("torch", TORCH_VERSION);
  key("images_per_second") << batch / mean;
  key("seconds_per_iter") << mean;
  key("median_seconds_per_iter") << median(times);
  key("min_seconds_per_iter") << *std::min_element(times.begin(), times.end());
  key("first_loss") << first_total;
  key("last_loss") << last_total;
  key("times") << "[";
  for (size_t i = 0; i < times.size(); ++i) out << (i > 0 ? ", " : "") << times[i];
  out << "]";
#ifdef TANDEM_WITH_CUDA
  if (cuda) {
    // The GPU memory of this one rank: peak bytes handed out by the caching
    // allocator (torch.cuda.max_memory_allocated) and held from the driver.
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
    constexpr auto kAll = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    key("peak_gpu_memory_bytes") << stats.allocated_bytes[kAll].peak;
    key("peak_gpu_reserved_bytes") << stats.reserved_bytes[kAll].peak;
  }
#endif
  out << "}";
  std::cout << out.str() << std::endl;
  return 0;
}
