#include "tandem/worker/data/transforms.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace tandem::worker {
namespace {

// PIL's fixed-point precision for 8-bit resampling (Resample.c).
constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

/// Per output position: first input index, tap count and fixed-point weights.
struct Coefficients {
  int64_t taps = 0;  // stride of `weights`
  std::vector<int32_t> first;
  std::vector<int32_t> count;
  std::vector<int32_t> weights;
};

Coefficients precompute(int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filter_scale = std::max(scale, 1.0);
  const double support = 2.0 * filter_scale;
  Coefficients c;
  c.taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size * c.taps), 0);
  std::vector<double> w(static_cast<size_t>(c.taps));
  for (int64_t o = 0; o < out_size; ++o) {
    const double center = (static_cast<double>(o) + 0.5) * scale;
    auto lo = static_cast<int64_t>(center - support + 0.5);
    auto hi = static_cast<int64_t>(center + support + 0.5);
    lo = std::max<int64_t>(lo, 0);
    hi = std::min(hi, in_size);
    const int64_t n = hi - lo;
    double total = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      w[k] = bicubic((static_cast<double>(k + lo) - center + 0.5) / filter_scale);
      total += w[k];
    }
    for (int64_t k = 0; k < n; ++k) {
      const double v = total != 0.0 ? w[k] / total : w[k];
      c.weights[o * c.taps + k] = static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits)
                                                             : 0.5 + v * (1 << kPrecisionBits));
    }
    c.first[o] = static_cast<int32_t>(lo);
    c.count[o] = static_cast<int32_t>(n);
  }
  return c;
}

inline uint8_t clip8(int32_t sum) {
  const int32_t v = sum >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

/// Pads every output position's weights to `taps` entries (zeros), moving
/// `first` left where needed so that first + taps stays inside the input:
/// the inner loops then have one fixed trip count (same sums, zeros added).
void pad_to_fixed_taps(Coefficients& c, int64_t in_size) {
  const auto taps = static_cast<int32_t>(std::min<int64_t>(c.taps, in_size));
  for (size_t o = 0; o < c.first.size(); ++o) {
    int32_t* w = &c.weights[o * c.taps];
    const int32_t shift = std::max<int32_t>(0, c.first[o] + taps - static_cast<int32_t>(in_size));
    if (shift > 0) {
      for (int32_t t = c.count[o] - 1; t >= 0; --t) w[t + shift] = w[t];
      for (int32_t t = 0; t < shift; ++t) w[t] = 0;
      c.first[o] -= shift;
    }
    c.count[o] = taps;
  }
}

/// Four 32-bit lanes (GCC/Clang vector extension): one RGB pixel plus a
/// spare lane, so each filter tap is one vector multiply-add (PIL also keeps
/// RGB pixels in 4 bytes).
using Lanes = int32_t __attribute__((vector_size(16)));

/// The output pixels of one row: `kTaps` fixed (unrolled) or 0 for any.
template <int kTaps>
[[gnu::always_inline]] inline void horizontal_pixels(const Coefficients& c, const Lanes* pixels,
                                                     int64_t out_width, uint8_t* dst) {
  const int32_t taps = kTaps > 0 ? kTaps : c.count[0];  // fixed (pad_to_fixed_taps)
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  for (int64_t x = 0; x < out_width; ++x) {
    const int32_t* k = &c.weights[x * c.taps];
    const Lanes* p = pixels + c.first[x];
    Lanes sum = {kHalf, kHalf, kHalf, kHalf};
    for (int32_t t = 0; t < taps; ++t) sum += p[t] * k[t];
    Lanes v = sum >> kPrecisionBits;
    v = v < 0 ? 0 : v;
    v = v > 255 ? 255 : v;
    dst[3 * x] = static_cast<uint8_t>(v[0]);
    dst[3 * x + 1] = static_cast<uint8_t>(v[1]);
    dst[3 * x + 2] = static_cast<uint8_t>(v[2]);
  }
}

/// One output row of the horizontal pass, for AVX2 and baseline x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
[[gnu::target_clones("avx2", "default")]]
#endif
void horizontal_row(const uint8_t* src, int64_t in_width, const Coefficients& c,
                    int64_t out_width, Lanes* pixels, uint8_t* dst) {
  for (int64_t x = 0; x < in_width; ++x) {
    pixels[x] = Lanes{src[3 * x], src[3 * x + 1], src[3 * x + 2], 0};
  }
  switch (c.count[0]) {  // 5 taps when enlarging (MMT's 128 x 64 → 256 x 128)
    case 5: horizontal_pixels<5>(c, pixels, out_width, dst); break;
    case 7: horizontal_pixels<7>(c, pixels, out_width, dst); break;
    default: horizontal_pixels<0>(c, pixels, out_width, dst); break;
  }
}

Image resize_horizontal(const Image& in, int64_t width) {
  Coefficients c = precompute(in.width, width);
  pad_to_fixed_taps(c, in.width);
  Image out(in.height, width);
  std::vector<Lanes> pixels(static_cast<size_t>(in.width));
  for (int64_t y = 0; y < in.height; ++y) {
    horizontal_row(in.row(y), in.width, c, width, pixels.data(), out.row(y));
  }
  return out;
}

/// One output row of the vertical pass: the weighted sum of `taps` input rows
/// in PIL's fixed point. Compiled for AVX2 and for baseline x86-64, chosen at
/// load time: AVX2 multiplies eight 32-bit lanes at once (SSE2 has no 32-bit
/// multiply), with the same integer results.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
[[gnu::target_clones("avx2", "default")]]
#endif
void vertical_row(const uint8_t* first_row, int64_t stride, const int32_t* weights, int32_t taps,
                  int64_t row_bytes, int32_t* acc, uint8_t* dst) {
  for (int64_t i = 0; i < row_bytes; ++i) acc[i] = 1 << (kPrecisionBits - 1);
  for (int32_t t = 0; t < taps; ++t) {
    const uint8_t* src = first_row + t * stride;
    const int32_t w = weights[t];
    for (int64_t i = 0; i < row_bytes; ++i) acc[i] += static_cast<int32_t>(src[i]) * w;
  }
  for (int64_t i = 0; i < row_bytes; ++i) dst[i] = clip8(acc[i]);
}

Image resize_vertical(const Image& in, int64_t height) {
  const Coefficients c = precompute(in.height, height);
  Image out(height, in.width);
  const int64_t row_bytes = in.width * 3;
  std::vector<int32_t> acc(static_cast<size_t>(row_bytes));
  for (int64_t y = 0; y < height; ++y) {
    vertical_row(in.row(c.first[y]), row_bytes, &c.weights[y * c.taps], c.count[y], row_bytes,
                 acc.data(), out.row(y));
  }
  return out;
}

}  // namespace

TransformOptions TransformOptions::train(int64_t height, int64_t width) {
  TransformOptions options;
  options.height = height;
  options.width = width;
  return options;
}

TransformOptions TransformOptions::test(int64_t height, int64_t width) {
  TransformOptions options;
  options.height = height;
  options.width = width;
  options.flip_probability = 0.0;
  options.pad = 0;
  options.erase_probability = 0.0;
  return options;
}

void TransformOptions::validate() const {
  TORCH_CHECK(height >= 1 && width >= 1 && height <= 16384 && width <= 16384,
              "TransformOptions: height and width must be in [1, 16384], got ", height, " x ",
              width);
  TORCH_CHECK(flip_probability >= 0.0 && flip_probability <= 1.0,
              "TransformOptions: flip_probability must be in [0, 1], got ", flip_probability);
  TORCH_CHECK(pad >= 0 && pad <= 4096, "TransformOptions: pad must be in [0, 4096], got ", pad);
  TORCH_CHECK(erase_probability >= 0.0 && erase_probability <= 1.0,
              "TransformOptions: erase_probability must be in [0, 1], got ", erase_probability);
  TORCH_CHECK(erase_area_min > 0.0 && erase_area_min <= erase_area_max && erase_area_max < 1.0,
              "TransformOptions: erase area range must satisfy 0 < min <= max < 1, got [",
              erase_area_min, ", ", erase_area_max, "]");
  TORCH_CHECK(erase_ratio_min > 0.0 && erase_ratio_min <= 1.0,
              "TransformOptions: erase_ratio_min must be in (0, 1], got ", erase_ratio_min);
  for (int c = 0; c < 3; ++c) {
    TORCH_CHECK(std[c] > 0.0F, "TransformOptions: std[", c, "] must be positive, got ", std[c]);
  }
}

Image resize_bicubic(const Image& image, int64_t height, int64_t width) {
  TORCH_CHECK(!image.empty(), "resize_bicubic: empty image");
  TORCH_CHECK(height >= 1 && width >= 1, "resize_bicubic: size must be positive, got ", height,
              " x ", width);
  if (image.width == width && image.height == height) return image;
  if (image.width == width) return resize_vertical(image, height);
  Image horizontal = resize_horizontal(image, width);
  if (image.height == height) return horizontal;
  return resize_vertical(horizontal, height);
}

ImageTransform::ImageTransform(TransformOptions options) : options_(options) {
  options_.validate();
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      lut_[c][v] = (static_cast<float>(v) / 255.0F - options_.mean[c]) / options_.std[c];
    }
  }
}

Image ImageTransform::resize(const Image& image) const {
  return resize_bicubic(image, options_.height, options_.width);
}

void ImageTransform::apply(const Image& image, Rng& rng, float* out) const {
  apply_resized(resize(image), rng, out);
}

void ImageTransform::apply_resized(const Image& resized, Rng& rng, float* out) const {
  const int64_t H = options_.height, W = options_.width;
  TORCH_CHECK(resized.height == H && resized.width == W, "ImageTransform: expected a ", H, " x ", W,
              " image, got ", resized.height, " x ", resized.width);
  // Random draws in torchvision's order: flip, crop offsets, erasing.
  const bool flip = options_.flip_probability > 0.0 && rng.bernoulli(options_.flip_probability);
  const int64_t pad = options_.pad;
  int64_t top = pad, left = pad;  // crop offsets in the padded image
  if (pad > 0) {
    top = rng.integer(0, 2 * pad);
    left = rng.integer(0, 2 * pad);
  }
  // Fused flip → pad → crop → ToTensor → Normalize: output (y, x) reads the
  // flipped resized image at (y + top - pad, x + left - pad), zero outside.
  const int64_t plane = H * W;
  for (int64_t y = 0; y < H; ++y) {
    const int64_t sy = y + top - pad;
    float* r = out + y * W;
    float* g = r + plane;
    float* b = g + plane;
    if (sy < 0 || sy >= H) {
      std::fill(r, r + W, lut_[0][0]);
      std::fill(g, g + W, lut_[1][0]);
      std::fill(b, b + W, lut_[2][0]);
      continue;
    }
    const uint8_t* src = resized.row(sy);
    // Columns [x0, x1) read the image, the rest the zero padding.
    const int64_t shift = left - pad;
    const int64_t x0 = std::max<int64_t>(0, -shift), x1 = std::min<int64_t>(W, W - shift);
    for (const int64_t x : {int64_t{0}, x1}) {
      const int64_t end = x == 0 ? x0 : W;
      std::fill(r + x, r + end, lut_[0][0]);
      std::fill(g + x, g + end, lut_[1][0]);
      std::fill(b + x, b + end, lut_[2][0]);
    }
    const float* lut_r = lut_[0].data();
    const float* lut_g = lut_[1].data();
    const float* lut_b = lut_[2].data();
    // Source column of output x: x + shift, mirrored when flipped.
    const int64_t step = flip ? -3 : 3;
    const uint8_t* p = src + 3 * (flip ? W - 1 - (x0 + shift) : x0 + shift);
    for (int64_t x = x0; x < x1; ++x, p += step) {
      r[x] = lut_r[p[0]];
      g[x] = lut_g[p[1]];
      b[x] = lut_b[p[2]];
    }
  }
  // RandomErasing exactly as MMT's: up to 100 attempts to place a box.
  if (options_.erase_probability > 0.0 && rng.uniform() < options_.erase_probability) {
    const double area = static_cast<double>(H * W);
    for (int attempt = 0; attempt < 100; ++attempt) {
      const double target = rng.uniform(options_.erase_area_min, options_.erase_area_max) * area;
      const double ratio = rng.uniform(options_.erase_ratio_min, 1.0 / options_.erase_ratio_min);
      const auto h = static_cast<int64_t>(std::round(std::sqrt(target * ratio)));
      const auto w = static_cast<int64_t>(std::round(std::sqrt(target / ratio)));
      if (w < W && h < H) {
        const int64_t y0 = rng.integer(0, H - h);
        const int64_t x0 = rng.integer(0, W - w);
        for (int c = 0; c < 3; ++c) {
          for (int64_t y = y0; y < y0 + h; ++y) {
            float* row = out + c * plane + y * W + x0;
            std::fill(row, row + w, options_.mean[c]);
          }
        }
        break;
      }
    }
  }
}

torch::Tensor ImageTransform::operator()(const Image& image, Rng& rng) const {
  torch::Tensor out = torch::empty({3, options_.height, options_.width}, torch::kFloat32);
  apply(image, rng, out.data_ptr<float>());
  return out;
}

}  // namespace tandem::worker
