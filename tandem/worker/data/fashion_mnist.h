// Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017, arXiv:1708.07747) read from
// the gzip IDX files of the Debian package dataset-fashion-mnist, and a fixed,
// documented source → target domain shift built on it for the classification
// self-training jobs (Self-Ensemble, MCC, AFN).
//
// Source: the grey images replicated to RGB. Target: the same garments
// slightly rotated, blended with a colour texture as MNIST-M blends digits
// with photographs, and noised (FashionTargetShift::standard; the inverted,
// tinted FashionTargetShift::hard is the second, named shift; every
// parameter is in docs/fashion_mnist.md). Both are uint8 HWC RGB, 32 × 32 (28 × 28 padded
// by 2), so they go through the same transforms as photographs.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "tandem/worker/data/image.h"

namespace tandem::worker {

/// Where the Debian package dataset-fashion-mnist installs the four files.
constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";

/// Side of a Fashion-MNIST image as stored.
constexpr int64_t kFashionMnistSide = 28;
/// Number of classes; labels are 0..9.
constexpr int64_t kFashionMnistClasses = 10;

/// The class names, indexed by label (the order of the data set's README).
inline constexpr std::array<const char*, kFashionMnistClasses> kFashionMnistClassNames = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/// train-* (60,000 images) or t10k-* (10,000 images).
enum class FashionMnistSplit { kTrain, kTest };

/// One split, or its first `limit` samples.
struct FashionMnist {
  /// uint8 (n, 28, 28), 0 = background, 255 = ink.
  torch::Tensor images;
  /// int64 (n), in 0..9.
  torch::Tensor labels;

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

/// Path of the images (`labels == false`) or labels file of `split` in `dir`.
std::string fashion_mnist_path(const std::string& dir, FashionMnistSplit split, bool labels);

/// Number of samples in `split` (from the headers of both files, which are
/// checked as by load_fashion_mnist; no pixel is read).
int64_t fashion_mnist_count(const std::string& dir, FashionMnistSplit split);

/// Reads `split` from `dir` (gzip IDX: magic 2051 for images, 2049 for labels,
/// big-endian counts, 28 × 28 images). `limit` >= 0 reads only the first
/// `limit` samples (clamped to the split's size); < 0 reads all. Throws
/// std::runtime_error naming the file for a missing file, a bad magic, wrong
/// dimensions, image and label counts that disagree, a truncated or corrupt
/// stream, or a label outside 0..9.
FashionMnist load_fashion_mnist(const std::string& dir, FashionMnistSplit split,
                                int64_t limit = -1);

/// Which side of the source → target pair.
enum class FashionDomain { kSource, kTarget };

/// Padding added on every side of the 28 × 28 images by both domains (→ 32 × 32).
constexpr int64_t kFashionDomainPadding = 2;

/// The target domain's shift, applied per image in this order: rotate,
/// invert, tint, texture, noise. Two named shifts (docs/fashion_mnist.md):
///
///   standard (the default-constructed value): MNIST → MNIST-M style. A
///     rotation of at most 15°, then the garment blended with a random
///     colour texture as MNIST-M blends digits with photo patches,
///     v = |b − g| per channel, then noise. A source-only network stays
///     informative on it but clearly degraded, so adaptation has something
///     to build on.
///   hard: rotation 15°..30°, inversion, a flat tint from a palette of six,
///     noise. The inversion flips the sign of every intensity feature and a
///     network trained from scratch on the source is at chance on it.
///
/// Change the fields only for experiments, since a data set's target is
/// defined by them.
struct FashionTargetShift {
  /// Smallest rotation magnitude in degrees; the angle is uniform in
  /// [min, max] with a random sign, about the image centre, bilinear, with
  /// background (0) outside the source.
  double min_rotation_degrees = 0.0;
  /// Largest rotation magnitude in degrees.
  double max_rotation_degrees = 15.0;
  /// Inverts intensities (v → 255 − v) after the rotation: white background,
  /// dark garment.
  bool invert = false;
  /// Multiplicative tints, one drawn uniformly per image: channel c becomes
  /// v · tint[c] / 255, so the background takes the tint's colour. Empty: no tint.
  std::vector<std::array<uint8_t, 3>> palette = {};
  /// The MNIST-M blend with a random colour texture b (0: off): b is a
  /// coarse grid of texture_cells × texture_cells cells whose corners are
  /// uniform in [0, texture_max] per channel, plus a fine grid of
  /// 4 · texture_cells cells whose corners are uniform in
  /// [−texture_detail, texture_detail] per channel, both bilinearly
  /// interpolated, summed and clamped to 0..255; then every channel becomes
  /// |b_c − v_c|: the background shows the texture and the garment its
  /// complement.
  int64_t texture_cells = 4;
  double texture_max = 96.0;
  double texture_detail = 48.0;
  /// Standard deviation of the additive Gaussian noise, independent per pixel
  /// and channel, in grey levels (0 turns it off); results are rounded and clamped.
  double noise_stddev = 8.0;

  /// The default: mild rotation, MNIST-M texture blend, noise.
  static FashionTargetShift standard();
  /// The inverted, tinted, more rotated target (no texture).
  static FashionTargetShift hard();
};

/// The names of the two shifts: "standard" or "hard"; anything else is a
/// c10::Error listing them.
FashionTargetShift fashion_target_shift(const std::string& name);

/// Renders grey uint8 images (n, H, W) (Fashion-MNIST: H = W = 28) as uint8
/// RGB (n, H + 4, W + 4, 3) HWC in `domain`: the images are padded by 2 on
/// every side with background, then the source replicates grey to R, G and B
/// and the target applies `shift`. Image i draws its random parameters from a
/// generator seeded with (seed, i) only, so the result does not depend on the
/// number of threads, and rows 0..k−1 of a `limit = k` load match those of the
/// full split. Throws c10::Error for a tensor that is not uint8 (n, H, W).
torch::Tensor fashion_domain_images(const torch::Tensor& images_u8, FashionDomain domain,
                                    uint64_t seed, const FashionTargetShift& shift = {});

/// One image of fashion_domain_images: `image_u8` is uint8 (H, W) and `index`
/// its row in the split (the (seed, index) pair picks its random parameters).
Image fashion_domain_image(const torch::Tensor& image_u8, FashionDomain domain, uint64_t seed,
                           int64_t index, const FashionTargetShift& shift = {});

/// Copies uint8 (n, H, W, 3) HWC images into Image values.
std::vector<Image> fashion_images_to_list(const torch::Tensor& images_hwc_u8);

/// Writes the first `count` samples of `data` (all when count < 0) in `domain`
/// as an ImageList data set: `out_dir/images/NNNNN.png` (8-bit RGB PNG) and
/// `out_dir/list.txt` with one line `images/NNNNN.png label` per sample, in
/// order. Creates `out_dir` as needed; files already there are overwritten.
void write_fashion_image_list(const FashionMnist& data, FashionDomain domain, uint64_t seed,
                              const std::string& out_dir, int64_t count);

/// Rows of the built-in source → target pair (load_fashion_shift). Source
/// and target train come from disjoint halves of the train split (the
/// target's garments are others than the source's, as in a real unlabelled
/// domain), the held-out target test set from the test split.
struct FashionShiftSizes {
  /// Train rows [0, source), in the source domain (≤ 30000).
  int64_t source = 10000;
  /// Train rows [30000, 30000 + target_train), in the target domain (≤ 30000).
  int64_t target_train = 10000;
  /// Test rows [0, target_test), in the target domain (≤ 10000).
  int64_t target_test = 2000;
};

/// First train row of the target train set.
constexpr int64_t kFashionTargetTrainOffset = 30000;

/// The source → target pair, rendered with fixed seeds (source 1, target
/// train 2, target test 3) so every job and benchmark sees the same images.
struct FashionShift {
  torch::Tensor source, source_labels;
  /// Unlabelled for training; the labels are there for diagnostics only.
  torch::Tensor target_train, target_train_labels;
  torch::Tensor target_test, target_test_labels;
  /// The target test garments in the source domain (what the shift costs).
  torch::Tensor source_test;
};

/// Reads the rows of `sizes` from `dir` and renders them. Throws
/// std::invalid_argument for sizes outside the ranges above and the
/// reader's std::runtime_error for missing or bad files.
FashionShift load_fashion_shift(const std::string& dir, const FashionShiftSizes& sizes,
                                const FashionTargetShift& shift = {});

/// The source half of load_fashion_shift (source, source_labels only).
FashionShift load_fashion_source(const std::string& dir, int64_t source);
/// The target half of load_fashion_shift (target_train, target_test and
/// their labels, source_test).
FashionShift load_fashion_target(const std::string& dir, int64_t target_train, int64_t target_test,
                                 const FashionTargetShift& shift = {});

}  // namespace tandem::worker
