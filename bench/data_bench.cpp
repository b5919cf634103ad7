// Throughput of the training data pipeline: read + decode (libjpeg-turbo) +
// MMT's training transform at 256 x 128, in images per second.
//
//   bench_data --dir DIR [--seconds S] [--threads T] [--views V]
//
// Prints one JSON object: `single_thread` is the per-image pipeline on the
// calling thread (the per-core figure, comparable with one Python process);
// `loader` is the DataLoader with T threads and batches of 64 (its per-core
// figure divides by T). Driven by bench/data_side_by_side.py, which runs the
// Python (torchvision + PIL) twin in the same session.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "tandem/worker/data/loader.h"
#include "tandem/worker/data/transforms.h"

namespace {
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
using namespace tandem::worker;  // NOLINT(google-build-using-namespace): a bench program

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  double seconds = 5.0;
  int64_t threads = 2;
  int64_t views = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--dir")
      dir = argv[i + 1];
    else if (flag == "--seconds")
      seconds = std::stod(argv[i + 1]);
    else if (flag == "--threads")
      threads = std::stoll(argv[i + 1]);
    else if (flag == "--views")
      views = std::stoll(argv[i + 1]);
    else {
      std::cerr << "bench_data: unknown flag " << flag << "\n";
      return 2;
    }
  }
  if (dir.empty()) {
    std::cerr << "usage: bench_data --dir DIR [--seconds S] [--threads T] [--views V]\n";
    return 2;
  }
  std::vector<std::string> paths;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".jpg") paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  if (paths.size() < 64) {
    std::cerr << "bench_data: need at least 64 .jpg files in " << dir << "\n";
    return 1;
  }
  torch::set_num_threads(1);
  const ImageTransform transform(TransformOptions::train(256, 128));

  // Single thread: read, decode and transform one image after another.
  std::vector<float> out(3 * 256 * 128);
  int64_t done = 0;
  auto start = Clock::now();
  while (seconds_since(start) < seconds) {
    for (size_t i = 0; i < paths.size() && seconds_since(start) < seconds; ++i, ++done) {
      Rng rng(1, {static_cast<uint64_t>(done)});
      for (int64_t v = 0; v < views; ++v) transform.apply(read_image(paths[i]), rng, out.data());
    }
  }
  const double single = static_cast<double>(done) / seconds_since(start);

  // The loader with `threads` threads, batches of 64.
  LoaderOptions options;
  options.num_threads = threads;
  options.views = views;
  DataLoader loader(std::make_shared<FileImageSource>(paths), transform, options);
  std::vector<std::vector<int64_t>> batches;
  for (size_t b = 0; b + 64 <= paths.size(); b += 64) {
    batches.emplace_back();
    for (size_t i = b; i < b + 64; ++i) batches.back().push_back(static_cast<int64_t>(i));
  }
  int64_t loaded = 0;
  start = Clock::now();
  for (int64_t epoch = 0; seconds_since(start) < seconds; ++epoch) {
    loader.start_epoch(epoch, batches);
    while (auto batch = loader.next()) loaded += batch->views[0].size(0);
  }
  const double loader_rate = static_cast<double>(loaded) / seconds_since(start);
  std::cout << "{\"images\": " << paths.size() << ", \"views\": " << views
            << ", \"single_thread\": " << single << ", \"loader_threads\": " << threads
            << ", \"loader\": " << loader_rate << "}" << std::endl;
  return 0;
}
