// Target accuracy of the classification self-training methods on the
// Fashion-MNIST source → target shift (data/fashion_mnist.h): for every
// seed, each of source only, Self-Ensemble, MCC and AFN trains a fresh
// network from that seed for N iterations (train/classification_trainer.h)
// and is evaluated on the held-out target test set.
//
//   bench_classification_adapt [--seeds 0,1,2] [--iterations N] [--source N]
//       [--target-train N] [--target-test N] [--batch-size B] [--threads T] [--jobs J]
//       [--methods source_only,self_ensemble,mcc,afn] [--dir DIR]
//       [--shift standard|hard] [--rotation DEG] [--texture-cells C]
//       [--texture-max M] [--texture-detail D] [--invert-augment P] [--color-jitter J] [--lr LR]
//       [--width W] [--warmup N] [--mcc-trade-off λ] [--afn-trade-off λ]
//       [--dump FILE.png]
//
// Data (load_fashion_shift): source = the first --source training images
// (grey → RGB); target train = --target-train training images from row
// 30000 on, in the target domain (other garments; their labels are never
// used); target test = the first --target-test images of the test split in
// the target domain, never trained on. `source_test_accuracy` is on the same
// test garments in the source domain (what the shift costs). Prints one JSON
// object: per method the target accuracy of every seed, their mean, and
// whether every seed beats source only.
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "tandem/worker/data/fashion_mnist.h"
#include "tandem/worker/data/image.h"
#include "tandem/worker/train/classification_trainer.h"

namespace {
using namespace tandem::worker;  // NOLINT(google-build-using-namespace): a bench program

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream stream(s);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

/// Rows of 16 source images over 16 target images, 32 × 32 each.
void dump_grid(const FashionShift& data, const std::string& path) {
  const int64_t n = std::min<int64_t>(16, data.source.size(0));
  const torch::Tensor top = data.source.narrow(0, 0, n).permute({1, 0, 2, 3}).reshape({32, -1, 3});
  const torch::Tensor bottom =
      data.target_train.narrow(0, 0, n).permute({1, 0, 2, 3}).reshape({32, -1, 3});
  const torch::Tensor grid = torch::cat({top, bottom}).contiguous();
  Image image(grid.size(0), grid.size(1));
  std::memcpy(image.pixels.data(), grid.data_ptr<uint8_t>(), image.pixels.size());
  write_file_bytes(path, encode_png(image));
}

struct Run {
  double target = 0, student = 0, source_test = 0, largest_share = 0, ce = 0, unsupervised = 0,
         confident = 0, seconds = 0, source_norm = 0, target_norm = 0;
};

Run run_method(ClassificationMethod method, const FashionShift& data,
               const ClassificationOptions& o) {
  ClassificationTrainer trainer(method, data.source, data.source_labels, data.target_train,
                                kFashionMnistClasses, o);
  Run r;
  const auto start = std::chrono::steady_clock::now();
  const ClassificationStepStats stats = trainer.train(o.iterations);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.target = trainer.accuracy(data.target_test, data.target_test_labels);
  r.student = trainer.student_accuracy(data.target_test, data.target_test_labels);
  r.source_test = trainer.accuracy(data.source_test, data.target_test_labels);
  // How many test images the most predicted class takes (1.0: collapse).
  const torch::Tensor counts =
      torch::bincount(trainer.predict(data.target_test), {}, kFashionMnistClasses);
  r.largest_share = counts.max().item<double>() / static_cast<double>(data.target_test.size(0));
  r.ce = stats.ce;
  r.unsupervised = stats.unsupervised;
  r.confident = stats.confident_share;
  r.source_norm = stats.source_feature_norm;
  r.target_norm = stats.target_feature_norm;
  return r;
}

void report(uint64_t seed, const std::string& name, const Run& r) {
  std::cerr << "seed " << seed << " " << name << ": target " << r.target << " (student "
            << r.student << "), source test " << r.source_test << ", " << r.seconds << " s\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = kFashionMnistDefaultDir, shift_name = "standard", dump;
  FashionShiftSizes sizes;
  int64_t threads = 1, jobs = 1;
  std::string methods = "source_only,self_ensemble,mcc,afn", seeds = "0,1,2";
  ClassificationOptions options;
  options.iterations = 1500;
  double rotation = -1, texture_detail = -1, texture_max = -1;
  int64_t texture_cells = -1;
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "bench_classification_adapt: " << flag << " needs a value\n";
      return 2;
    }
    const std::string value = argv[i + 1];
    if (flag == "--iterations")
      options.iterations = std::stoll(value);
    else if (flag == "--source")
      sizes.source = std::stoll(value);
    else if (flag == "--target-train")
      sizes.target_train = std::stoll(value);
    else if (flag == "--target-test")
      sizes.target_test = std::stoll(value);
    else if (flag == "--batch-size")
      options.batch_size = std::stoll(value);
    else if (flag == "--seeds" || flag == "--seed")
      seeds = value;
    else if (flag == "--threads")
      threads = std::stoll(value);
    else if (flag == "--jobs")
      jobs = std::stoll(value);
    else if (flag == "--methods")
      methods = value;
    else if (flag == "--shift")
      shift_name = value;
    else if (flag == "--rotation")
      rotation = std::stod(value);
    else if (flag == "--texture-cells")
      texture_cells = std::stoll(value);
    else if (flag == "--texture-max")
      texture_max = std::stod(value);
    else if (flag == "--texture-detail")
      texture_detail = std::stod(value);
    else if (flag == "--invert-augment")
      options.augment_invert_probability = std::stod(value);
    else if (flag == "--color-jitter")
      options.augment_color_jitter = std::stod(value);
    else if (flag == "--lr")
      options.lr = std::stod(value);
    else if (flag == "--mcc-trade-off")
      options.mcc_trade_off = std::stod(value);
    else if (flag == "--mcc-temperature")
      options.mcc_temperature = std::stod(value);
    else if (flag == "--afn-delta")
      options.afn_delta = std::stod(value);
    else if (flag == "--afn-dropout")
      options.afn_dropout = std::stod(value);
    else if (flag == "--afn-trade-off")
      options.afn_trade_off = std::stod(value);
    else if (flag == "--se-threshold")
      options.self_ensemble_confidence_threshold = std::stod(value);
    else if (flag == "--warmup")
      options.unsupervised_warmup_iterations = std::stoll(value);
    else if (flag == "--width")
      options.backbone_width = std::stoll(value);
    else if (flag == "--dir")
      dir = value;
    else if (flag == "--dump")
      dump = value;
    else {
      std::cerr << "bench_classification_adapt: unknown flag " << flag << "\n";
      return 2;
    }
  }
  try {
    torch::set_num_threads(static_cast<int>(threads));
    FashionTargetShift shift = fashion_target_shift(shift_name);
    if (rotation >= 0) shift.max_rotation_degrees = rotation;
    if (rotation >= 0) shift.min_rotation_degrees = std::min(shift.min_rotation_degrees, rotation);
    if (texture_cells >= 0) shift.texture_cells = texture_cells;
    if (texture_detail >= 0) shift.texture_detail = texture_detail;
    if (texture_max >= 0) shift.texture_max = texture_max;
    const FashionShift data = load_fashion_shift(dir, sizes, shift);
    if (!dump.empty()) dump_grid(data, dump);

    std::vector<uint64_t> seed_list;
    for (const std::string& s : split_commas(seeds)) seed_list.push_back(std::stoull(s));
    const std::vector<std::string> names = split_commas(methods);
    for (const std::string& name : names) parse_classification_method(name);  // fail early
    // Every (seed, method) run is independent: with --jobs J > 1 they are
    // spread over J forked processes (each with --threads threads), which
    // report one line per run through a pipe.
    std::vector<std::pair<size_t, std::string>> work;
    for (size_t s = 0; s < seed_list.size(); ++s) {
      for (const std::string& name : names) work.emplace_back(s, name);
    }
    std::map<std::string, std::vector<Run>> runs;
    for (const std::string& name : names) runs[name].resize(seed_list.size());
    const auto run_one = [&](size_t s, const std::string& name) {
      ClassificationOptions o = options;
      o.seed = seed_list[s];
      return run_method(parse_classification_method(name), data, o);
    };
    if (jobs <= 1) {
      for (const auto& [s, name] : work) {
        runs[name][s] = run_one(s, name);
        report(seed_list[s], name, runs[name][s]);
      }
    } else {
      std::vector<std::pair<pid_t, int>> children;
      for (int64_t k = 0; k < jobs; ++k) {
        int fds[2];
        if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
        const pid_t pid = ::fork();
        if (pid < 0) throw std::runtime_error("fork failed");
        if (pid == 0) {
          ::close(fds[0]);
          std::ostringstream lines;
          lines << std::setprecision(17);
          for (size_t w = static_cast<size_t>(k); w < work.size(); w += static_cast<size_t>(jobs)) {
            const auto& [s, name] = work[w];
            const Run r = run_one(s, name);
            report(seed_list[s], name, r);
            lines << s << " " << name << " " << r.target << " " << r.student << " " << r.source_test
                  << " " << r.largest_share << " " << r.ce << " " << r.unsupervised << " "
                  << r.confident << " " << r.seconds << " " << r.source_norm << " " << r.target_norm
                  << "\n";
          }
          const std::string text = lines.str();
          size_t done = 0;
          while (done < text.size()) {
            const ssize_t n = ::write(fds[1], text.data() + done, text.size() - done);
            if (n <= 0) ::_exit(1);
            done += static_cast<size_t>(n);
          }
          ::close(fds[1]);
          ::_exit(0);
        }
        ::close(fds[1]);
        children.emplace_back(pid, fds[0]);
      }
      for (const auto& [pid, fd] : children) {
        std::string text;
        char buffer[4096];
        for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) {
          text.append(buffer, static_cast<size_t>(n));
        }
        ::close(fd);
        int status = 0;
        ::waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
          throw std::runtime_error("a benchmark process failed");
        }
        std::istringstream in(text);
        size_t s = 0;
        std::string name;
        Run r;
        while (in >> s >> name >> r.target >> r.student >> r.source_test >> r.largest_share >>
               r.ce >> r.unsupervised >> r.confident >> r.seconds >> r.source_norm >>
               r.target_norm) {
          runs[name][s] = r;
        }
      }
    }

    std::ostringstream json;
    json << std::setprecision(4) << std::fixed;
    json << "{\"shift\": \"" << shift_name << "\", \"rotation\": " << shift.max_rotation_degrees
         << ", \"texture_cells\": " << shift.texture_cells
         << ", \"texture_max\": " << shift.texture_max
         << ", \"texture_detail\": " << shift.texture_detail
         << ", \"iterations\": " << options.iterations << ", \"batch_size\": " << options.batch_size
         << ", \"threads\": " << threads << ", \"jobs\": " << jobs
         << ", \"source\": " << sizes.source << ", \"target_train\": " << sizes.target_train
         << ", \"target_test\": " << sizes.target_test
         << ", \"invert_augment\": " << options.augment_invert_probability
         << ", \"color_jitter\": " << options.augment_color_jitter << ", \"lr\": " << options.lr
         << ", \"width\": " << options.backbone_width
         << ", \"warmup\": " << options.unsupervised_warmup_iterations
         << ", \"mcc_trade_off\": " << options.mcc_trade_off
         << ", \"afn_trade_off\": " << options.afn_trade_off << ", \"seeds\": [";
    for (size_t i = 0; i < seed_list.size(); ++i) json << (i ? ", " : "") << seed_list[i];
    json << "], \"methods\": {";
    const auto* baseline = runs.count("source_only") ? &runs.at("source_only") : nullptr;
    bool first = true;
    for (const std::string& name : names) {
      const std::vector<Run>& rs = runs.at(name);
      const auto list = [&](double Run::*field) {
        std::ostringstream out;
        out << std::setprecision(4) << std::fixed << "[";
        for (size_t i = 0; i < rs.size(); ++i) out << (i ? ", " : "") << rs[i].*field;
        out << "]";
        return out.str();
      };
      const auto mean = [&](double Run::*field) {
        double sum = 0;
        for (const Run& r : rs) sum += r.*field;
        return sum / static_cast<double>(rs.size());
      };
      json << (first ? "" : ", ") << "\"" << name
           << "\": {\"target_accuracy\": " << list(&Run::target)
           << ", \"mean_target_accuracy\": " << mean(&Run::target)
           << ", \"student_target_accuracy\": " << list(&Run::student)
           << ", \"source_test_accuracy\": " << list(&Run::source_test)
           << ", \"target_largest_predicted_class_share\": " << list(&Run::largest_share)
           << ", \"mean_ce\": " << list(&Run::ce)
           << ", \"mean_unsupervised\": " << list(&Run::unsupervised)
           << ", \"mean_confident_share\": " << list(&Run::confident)
           << ", \"source_feature_norm\": " << list(&Run::source_norm)
           << ", \"target_feature_norm\": " << list(&Run::target_norm)
           << ", \"train_seconds\": " << std::setprecision(1) << list(&Run::seconds)
           << std::setprecision(4);
      if (name != "source_only" && baseline != nullptr) {
        bool every = true;
        double gain = 0;
        for (size_t i = 0; i < rs.size(); ++i) {
          every = every && rs[i].target > (*baseline)[i].target;
          gain += rs[i].target - (*baseline)[i].target;
        }
        json << ", \"mean_gain_over_source_only\": " << gain / static_cast<double>(rs.size())
             << ", \"beats_source_only_every_seed\": " << (every ? "true" : "false");
      }
      json << "}";
      first = false;
    }
    json << "}}";
    std::cout << json.str() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_classification_adapt: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
