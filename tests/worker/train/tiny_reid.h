// Test support for the trainers: a tiny re-ID target (6 identities, 2
// cameras, 3 images each, 32 × 16) and a tiny model over SmallReidNet.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "tandem/methods/models/reidentifier.h"
#include "tandem/methods/models/resnet.h"
#include "tandem/worker/data/loader.h"

namespace tandem::worker::testing {
using methods::models::ReIdentifier;
using methods::models::SmallReidNet;
using methods::models::SmallReidNetOptions;

constexpr int64_t kIds = 6, kCameras = 2, kPerCamera = 3;

/// 6 identities × 2 cameras × 3 images of 32 × 16: each identity a colour,
/// each image with its own noise.
struct TinyTarget {
  std::shared_ptr<MemoryImageSource> source;
  std::vector<int64_t> pids, cameras;
};

inline TinyTarget tiny_target() {
  TinyTarget t;
  std::vector<Image> images;
  torch::manual_seed(3);
  for (int64_t pid = 0; pid < kIds; ++pid) {
    for (int64_t cam = 0; cam < kCameras; ++cam) {
      for (int64_t i = 0; i < kPerCamera; ++i) {
        Image image(32, 16);
        for (size_t k = 0; k < image.pixels.size(); ++k) {
          const int64_t base =
              (k % 3 == 0 ? pid * 40 : (k % 3 == 1 ? 200 - pid * 30 : 60 + cam * 50));
          image.pixels[k] = static_cast<uint8_t>((base + (k * 7919 + i * 31) % 23) % 256);
        }
        images.push_back(std::move(image));
        t.pids.push_back(pid);
        t.cameras.push_back(cam);
      }
    }
  }
  t.source = std::make_shared<MemoryImageSource>(std::move(images));
  return t;
}

inline ReIdentifier tiny_model(uint64_t seed) {
  torch::manual_seed(seed);
  return ReIdentifier(torch::nn::AnyModule(SmallReidNet(SmallReidNetOptions().width(4))), 32, kIds);
}

/// Largest ‖a − b‖ / ‖b‖ over the tensors of two states (pairs with ‖b‖ = 0
/// skipped): how far a data-parallel run is from a one-rank run.
inline double max_relative_error(const std::vector<torch::Tensor>& a,
                                 const std::vector<torch::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const torch::Tensor x = a[i].to(torch::kFloat64), y = b[i].to(torch::kFloat64);
    const double norm = y.norm().item<double>();
    if (norm > 0) worst = std::max(worst, (x - y).norm().item<double>() / norm);
  }
  return worst;
}

}  // namespace tandem::worker::testing
