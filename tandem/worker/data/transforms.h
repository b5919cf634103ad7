// Image transforms of re-ID training and testing (MMT, notes §2):
//   train: Resize(H, W, bicubic) → RandomHorizontalFlip(0.5) → Pad(10) →
//          RandomCrop(H, W) → ToTensor → Normalize(ImageNet) →
//          RandomErasing(p 0.5, area 0.02–0.4, ratio 0.3, fill = mean)
//   test:  Resize(H, W, bicubic) → ToTensor → Normalize(ImageNet)
// The resize is PIL's antialiased bicubic (a = -0.5, support scaled when
// shrinking, 22-bit fixed-point weights, uint8 between the two passes), so
// tensors are within a grey level of torchvision-on-PIL's. Flip, pad, crop
// and normalisation are fused into one pass that writes the float CHW tensor.
#pragma once

#include <array>
#include <cstdint>

#include <torch/types.h>

#include "tandem/worker/data/image.h"
#include "tandem/worker/data/random.h"

namespace tandem::worker {

struct TransformOptions {
  /// Output height and width (re-ID: 256 × 128).
  int64_t height = 256;
  int64_t width = 128;
  /// Probability of a horizontal flip (0 disables).
  double flip_probability = 0.5;
  /// Zero padding on every side before the random crop (0 disables the crop).
  int64_t pad = 10;
  /// Random erasing (Zhong et al., AAAI 2020) as MMT's transforms.RandomErasing:
  /// probability, area fraction range and the smallest aspect ratio r1 (the
  /// ratio is drawn from [r1, 1/r1]). The erased box is filled with `mean`.
  double erase_probability = 0.5;
  double erase_area_min = 0.02;
  double erase_area_max = 0.4;
  double erase_ratio_min = 0.3;
  /// Normalisation (ImageNet statistics).
  std::array<float, 3> mean = {0.485F, 0.456F, 0.406F};
  std::array<float, 3> std = {0.229F, 0.224F, 0.225F};

  /// MMT's training transform at height × width.
  static TransformOptions train(int64_t height = 256, int64_t width = 128);
  /// MMT's test transform: resize and normalise only.
  static TransformOptions test(int64_t height = 256, int64_t width = 128);
  /// Throws c10::Error naming the first invalid field.
  void validate() const;
};

/// PIL-compatible antialiased bicubic resize of an RGB image.
Image resize_bicubic(const Image& image, int64_t height, int64_t width);

/// A transform from a decoded image to a normalised float32 3 × H × W tensor.
/// Stateless and thread-safe: all randomness comes from the caller's Rng.
class ImageTransform {
 public:
  explicit ImageTransform(TransformOptions options);

  /// Writes the 3 × H × W result (CHW, contiguous) to `out`.
  void apply(const Image& image, Rng& rng, float* out) const;
  /// The deterministic first step (the resize to H × W) and the random rest:
  /// apply(image) == apply_resized(resize(image)). Several views of one
  /// sample resize once.
  Image resize(const Image& image) const;
  void apply_resized(const Image& resized, Rng& rng, float* out) const;
  /// The same, returned as a new tensor.
  torch::Tensor operator()(const Image& image, Rng& rng) const;

  const TransformOptions& options() const { return options_; }

 private:
  TransformOptions options_;
  /// (v / 255 - mean[c]) / std[c] for every byte value v, per channel.
  std::array<std::array<float, 256>, 3> lut_{};
};

}  // namespace tandem::worker
