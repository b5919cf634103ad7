#include "tandem/worker/data/fashion_mnist.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <utility>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#ifdef TANDEM_WITH_IMAGE_CODECS
#include <zlib.h>
#endif

namespace tandem::worker {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::runtime_error file_error(const std::string& path, const std::string& what) {
  return std::runtime_error("Fashion-MNIST file " + path + ": " + what);
}

#ifndef TANDEM_WITH_IMAGE_CODECS
constexpr const char* kWithoutZlib =
    "cannot be read: Tandem was built without zlib (scripts/setup installs zlib1g-dev; "
    "reconfigure after installing it)";
#else
constexpr uint32_t kImagesMagic = 2051;  // 0x00000803: unsigned byte, 3 dimensions
constexpr uint32_t kLabelsMagic = 2049;  // 0x00000801: unsigned byte, 1 dimension

// A gzip stream read with zlib, every failure an error naming the file.
class GzReader {
 public:
  explicit GzReader(std::string path) : path_(std::move(path)) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path_, ec)) {
      throw file_error(path_,
                       "missing (scripts/setup installs the Debian package dataset-fashion-mnist, "
                       "which puts the files in " +
                           std::string(kFashionMnistDefaultDir) + ")");
    }
    file_ = gzopen(path_.c_str(), "rb");
    if (file_ == nullptr) {
      throw file_error(path_, std::string("cannot open: ") + std::strerror(errno));
    }
    gzbuffer(file_, 1 << 17);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;
  ~GzReader() { gzclose(file_); }

  // Reads exactly `size` bytes of `what` (for the message) into `out`.
  void read(void* out, size_t size, const std::string& what) {
    auto* bytes = static_cast<uint8_t*>(out);
    size_t done = 0;
    while (done < size) {
      const auto chunk = static_cast<unsigned>(std::min<size_t>(size - done, size_t{1} << 30));
      const int got = gzread(file_, bytes + done, chunk);
      if (got < 0) {
        int errnum = Z_OK;
        const char* message = gzerror(file_, &errnum);
        const std::string kind =
            errnum == Z_BUF_ERROR ? "truncated (the gzip stream ends early)" : "corrupt gzip data";
        throw file_error(path_, kind + " while reading " + what + " at byte " +
                                    std::to_string(offset_ + done) + " (zlib: " + message + ")");
      }
      if (got == 0) {
        throw file_error(path_, "truncated: " + what + " needs " + std::to_string(size) +
                                    " bytes from byte " + std::to_string(offset_) +
                                    ", the file ends after " + std::to_string(done));
      }
      done += static_cast<size_t>(got);
    }
    offset_ += size;
  }

  // Reads one big-endian 32-bit header field.
  uint32_t read_u32(const std::string& what) {
    uint8_t b[4];
    read(b, 4, what);
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  gzFile file_ = nullptr;
  size_t offset_ = 0;
};

void check_magic(const GzReader& reader, uint32_t magic, uint32_t expected, const char* kind) {
  if (magic != expected) {
    throw file_error(reader.path(), "bad magic number " + std::to_string(magic) + " (expected " +
                                        std::to_string(expected) + " for an IDX " + kind +
                                        " file)");
  }
}
#endif  // TANDEM_WITH_IMAGE_CODECS

// Deterministic per-image generator: SplitMix64 (Steele, Lea and Flood,
// OOPSLA 2014) seeded from (seed, index). Hand-written rather than
// std::*_distribution, whose outputs differ between standard libraries.
class ImageRng {
 public:
  ImageRng(uint64_t seed, int64_t index)
      : state_(mix(seed) ^ mix(static_cast<uint64_t>(index) + 0x9E3779B97F4A7C15ULL)) {}

  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ULL;
    return mix(state_);
  }
  /// Uniform in [0, 1) with 53 bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Standard normal, Box–Muller, both values of a pair used in turn.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = 1.0 - uniform();  // (0, 1]: log is finite
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    spare_ = radius * std::sin(2.0 * kPi * u2);
    has_spare_ = true;
    return radius * std::cos(2.0 * kPi * u2);
  }

 private:
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

void check_shift(const FashionTargetShift& shift) {
  TORCH_CHECK(shift.min_rotation_degrees >= 0.0 &&
                  shift.min_rotation_degrees <= shift.max_rotation_degrees &&
                  shift.max_rotation_degrees <= 180.0,
              "FashionTargetShift: need 0 <= min_rotation_degrees <= max_rotation_degrees <= 180, "
              "got ",
              shift.min_rotation_degrees, " and ", shift.max_rotation_degrees);
  TORCH_CHECK(shift.noise_stddev >= 0.0 && std::isfinite(shift.noise_stddev),
              "FashionTargetShift: noise_stddev must be finite and >= 0, got ", shift.noise_stddev);
  TORCH_CHECK(shift.texture_cells >= 0 && shift.texture_cells <= 64,
              "FashionTargetShift: texture_cells must be in 0..64, got ", shift.texture_cells);
  TORCH_CHECK(shift.texture_max >= 0.0 && shift.texture_max <= 255.0,
              "FashionTargetShift: texture_max must be in [0, 255], got ", shift.texture_max);
  TORCH_CHECK(shift.texture_detail >= 0.0 && shift.texture_detail <= 255.0,
              "FashionTargetShift: texture_detail must be in [0, 255], got ", shift.texture_detail);
}

// A value-noise grid: (cells + 1)² corners of 3 channels, drawn row-major,
// R, G, B per corner, each lo + (hi − lo) · uniform.
std::vector<double> draw_grid(ImageRng& rng, int64_t cells, double lo, double hi) {
  std::vector<double> grid(static_cast<size_t>((cells + 1) * (cells + 1) * 3));
  for (double& v : grid) v = lo + (hi - lo) * rng.uniform();
  return grid;
}

// Channel c of a grid at output pixel (y, x) of an out_h × out_w image:
// bilinear between the corners, the grid spanning the whole image.
double sample_grid(const std::vector<double>& grid, int64_t cells, int64_t out_h, int64_t out_w,
                   int64_t y, int64_t x, int c) {
  const double gy = static_cast<double>(y) * static_cast<double>(cells) /
                    static_cast<double>(std::max<int64_t>(1, out_h - 1));
  const double gx = static_cast<double>(x) * static_cast<double>(cells) /
                    static_cast<double>(std::max<int64_t>(1, out_w - 1));
  const auto iy = std::min<int64_t>(cells - 1, static_cast<int64_t>(gy));
  const auto ix = std::min<int64_t>(cells - 1, static_cast<int64_t>(gx));
  const double fy = gy - static_cast<double>(iy);
  const double fx = gx - static_cast<double>(ix);
  const auto at = [&](int64_t yy, int64_t xx) {
    return grid[static_cast<size_t>((yy * (cells + 1) + xx) * 3 + c)];
  };
  return (1 - fy) * ((1 - fx) * at(iy, ix) + fx * at(iy, ix + 1)) +
         fy * ((1 - fx) * at(iy + 1, ix) + fx * at(iy + 1, ix + 1));
}

uint8_t to_byte(double v) {
  return static_cast<uint8_t>(std::clamp(std::floor(v + 0.5), 0.0, 255.0));
}

// Renders one grey h × w image into (h + 4) × (w + 4) × 3 at `out`.
void render(const uint8_t* grey, int64_t h, int64_t w, FashionDomain domain, uint64_t seed,
            int64_t index, const FashionTargetShift& shift, uint8_t* out) {
  const int64_t p = kFashionDomainPadding;
  const int64_t out_h = h + 2 * p;
  const int64_t out_w = w + 2 * p;
  // The padded canvas: ink inside, background (0) in the padding and beyond.
  auto canvas = [&](int64_t y, int64_t x) -> double {
    y -= p;
    x -= p;
    return (y < 0 || y >= h || x < 0 || x >= w) ? 0.0 : static_cast<double>(grey[y * w + x]);
  };
  if (domain == FashionDomain::kSource) {
    for (int64_t y = 0; y < out_h; ++y) {
      for (int64_t x = 0; x < out_w; ++x) {
        const auto g = static_cast<uint8_t>(canvas(y, x));
        uint8_t* px = out + (y * out_w + x) * 3;
        px[0] = px[1] = px[2] = g;
      }
    }
    return;
  }

  // Draw order (documented in docs/fashion_mnist.md): sign, magnitude, tint,
  // the texture's coarse then fine grid, then the noise of each pixel's
  // R, G, B in row-major order.
  ImageRng rng(seed, index);
  const double sign = rng.uniform() < 0.5 ? -1.0 : 1.0;
  const double magnitude =
      shift.min_rotation_degrees +
      (shift.max_rotation_degrees - shift.min_rotation_degrees) * rng.uniform();
  const double angle = sign * magnitude * kPi / 180.0;
  std::array<uint8_t, 3> tint = {255, 255, 255};
  if (!shift.palette.empty()) {
    const auto n = shift.palette.size();
    tint = shift.palette[std::min(n - 1, static_cast<size_t>(rng.uniform() * n))];
  }
  const int64_t coarse_cells = shift.texture_cells;
  const int64_t fine_cells = 4 * shift.texture_cells;
  std::vector<double> coarse, fine;
  if (coarse_cells > 0) {
    coarse = draw_grid(rng, coarse_cells, 0.0, shift.texture_max);
    fine = draw_grid(rng, fine_cells, -shift.texture_detail, shift.texture_detail);
  }
  const double cos_a = std::cos(angle);
  const double sin_a = std::sin(angle);
  const double cy = static_cast<double>(out_h - 1) / 2.0;
  const double cx = static_cast<double>(out_w - 1) / 2.0;
  for (int64_t y = 0; y < out_h; ++y) {
    for (int64_t x = 0; x < out_w; ++x) {
      // Inverse map: the output pixel samples the canvas rotated by −angle.
      const double dx = static_cast<double>(x) - cx;
      const double dy = static_cast<double>(y) - cy;
      const double sx = cos_a * dx + sin_a * dy + cx;
      const double sy = -sin_a * dx + cos_a * dy + cy;
      const double x0 = std::floor(sx);
      const double y0 = std::floor(sy);
      const double fx = sx - x0;
      const double fy = sy - y0;
      const auto ix = static_cast<int64_t>(x0);
      const auto iy = static_cast<int64_t>(y0);
      const double g = (1 - fy) * ((1 - fx) * canvas(iy, ix) + fx * canvas(iy, ix + 1)) +
                       fy * ((1 - fx) * canvas(iy + 1, ix) + fx * canvas(iy + 1, ix + 1));
      const double t = shift.invert ? 255.0 - g : g;
      uint8_t* px = out + (y * out_w + x) * 3;
      for (int c = 0; c < 3; ++c) {
        double v = t * tint[c] / 255.0;
        if (coarse_cells > 0) {
          const double b = std::clamp(sample_grid(coarse, coarse_cells, out_h, out_w, y, x, c) +
                                          sample_grid(fine, fine_cells, out_h, out_w, y, x, c),
                                      0.0, 255.0);
          v = std::abs(b - v);
        }
        if (shift.noise_stddev > 0.0) v += shift.noise_stddev * rng.normal();
        px[c] = to_byte(v);
      }
    }
  }
}

}  // namespace

FashionTargetShift FashionTargetShift::standard() {
  return {};
}

FashionTargetShift FashionTargetShift::hard() {
  FashionTargetShift shift;
  shift.min_rotation_degrees = 15.0;
  shift.max_rotation_degrees = 30.0;
  shift.invert = true;
  shift.palette = {
      {255, 200, 80},   // amber
      {90, 200, 255},   // sky blue
      {255, 120, 170},  // pink
      {120, 230, 120},  // green
      {190, 140, 255},  // violet
      {255, 150, 90},   // orange
  };
  shift.texture_cells = 0;
  shift.noise_stddev = 8.0;
  return shift;
}

FashionTargetShift fashion_target_shift(const std::string& name) {
  if (name == "standard") return FashionTargetShift::standard();
  if (name == "hard") return FashionTargetShift::hard();
  TORCH_CHECK(false, "unknown Fashion-MNIST target shift '", name, "' (one of standard, hard)");
  return {};  // unreachable
}

std::string fashion_mnist_path(const std::string& dir, FashionMnistSplit split, bool labels) {
  const char* prefix = split == FashionMnistSplit::kTrain ? "train" : "t10k";
  const char* suffix = labels ? "-labels-idx1-ubyte.gz" : "-images-idx3-ubyte.gz";
  return (std::filesystem::path(dir) / (std::string(prefix) + suffix)).string();
}

#ifdef TANDEM_WITH_IMAGE_CODECS
namespace {

// Both files of one split, opened and their headers checked; positioned at
// the first image and the first label.
struct SplitFiles {
  SplitFiles(const std::string& dir, FashionMnistSplit split)
      : images(fashion_mnist_path(dir, split, /*labels=*/false)),
        labels(fashion_mnist_path(dir, split, /*labels=*/true)) {
    check_magic(images, images.read_u32("the magic number"), kImagesMagic, "images");
    count = images.read_u32("the image count");
    const uint32_t rows = images.read_u32("the row count");
    const uint32_t cols = images.read_u32("the column count");
    if (rows != kFashionMnistSide || cols != kFashionMnistSide) {
      throw file_error(images.path(), "images are " + std::to_string(rows) + " x " +
                                          std::to_string(cols) + ", expected 28 x 28");
    }
    check_magic(labels, labels.read_u32("the magic number"), kLabelsMagic, "labels");
    const uint32_t label_count = labels.read_u32("the label count");
    if (label_count != count) {
      throw file_error(labels.path(), "holds " + std::to_string(label_count) + " labels but " +
                                          images.path() + " holds " + std::to_string(count) +
                                          " images");
    }
  }

  GzReader images;
  GzReader labels;
  uint32_t count = 0;
};

}  // namespace
#endif  // TANDEM_WITH_IMAGE_CODECS

int64_t fashion_mnist_count(const std::string& dir, FashionMnistSplit split) {
#ifdef TANDEM_WITH_IMAGE_CODECS
  return SplitFiles(dir, split).count;
#else
  throw file_error(fashion_mnist_path(dir, split, /*labels=*/false), kWithoutZlib);
#endif
}

FashionMnist load_fashion_mnist(const std::string& dir, FashionMnistSplit split, int64_t limit) {
#ifdef TANDEM_WITH_IMAGE_CODECS
  SplitFiles files(dir, split);
  const int64_t n = limit < 0 ? int64_t{files.count} : std::min<int64_t>(limit, files.count);
  FashionMnist data;
  data.images = torch::empty({n, kFashionMnistSide, kFashionMnistSide}, torch::kUInt8);
  files.images.read(data.images.data_ptr<uint8_t>(),
                    static_cast<size_t>(n * kFashionMnistSide * kFashionMnistSide),
                    std::to_string(n) + " images");
  auto labels_u8 = torch::empty({n}, torch::kUInt8);
  files.labels.read(labels_u8.data_ptr<uint8_t>(), static_cast<size_t>(n),
                    std::to_string(n) + " labels");
  const uint8_t* labels = labels_u8.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] >= kFashionMnistClasses) {
      throw file_error(files.labels.path(), "label " + std::to_string(labels[i]) + " of sample " +
                                                std::to_string(i) + " is outside 0..9");
    }
  }
  data.labels = labels_u8.to(torch::kInt64);
  return data;
#else
  (void)limit;
  throw file_error(fashion_mnist_path(dir, split, /*labels=*/false), kWithoutZlib);
#endif
}

torch::Tensor fashion_domain_images(const torch::Tensor& images_u8, FashionDomain domain,
                                    uint64_t seed, const FashionTargetShift& shift) {
  TORCH_CHECK(
      images_u8.defined() && images_u8.dim() == 3 && images_u8.scalar_type() == torch::kUInt8,
      "fashion_domain_images: images must be uint8 (n, H, W), got ",
      images_u8.defined() ? images_u8.sizes() : at::IntArrayRef{}, " ",
      images_u8.defined() ? images_u8.scalar_type() : torch::kUInt8);
  if (domain == FashionDomain::kTarget) check_shift(shift);
  const auto grey = images_u8.to(torch::kCPU).contiguous();
  const int64_t n = grey.size(0);
  const int64_t h = grey.size(1);
  const int64_t w = grey.size(2);
  const int64_t p = kFashionDomainPadding;
  auto out = torch::empty({n, h + 2 * p, w + 2 * p, 3}, torch::kUInt8);
  const uint8_t* in_data = grey.data_ptr<uint8_t>();
  uint8_t* out_data = out.data_ptr<uint8_t>();
  const int64_t out_stride = (h + 2 * p) * (w + 2 * p) * 3;
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      render(in_data + i * h * w, h, w, domain, seed, i, shift, out_data + i * out_stride);
    }
  });
  return out;
}

Image fashion_domain_image(const torch::Tensor& image_u8, FashionDomain domain, uint64_t seed,
                           int64_t index, const FashionTargetShift& shift) {
  TORCH_CHECK(image_u8.defined() && image_u8.dim() == 2 && image_u8.scalar_type() == torch::kUInt8,
              "fashion_domain_image: image must be uint8 (H, W)");
  TORCH_CHECK(index >= 0, "fashion_domain_image: index must be >= 0, got ", index);
  if (domain == FashionDomain::kTarget) check_shift(shift);
  const auto grey = image_u8.to(torch::kCPU).contiguous();
  const int64_t h = grey.size(0);
  const int64_t w = grey.size(1);
  const int64_t p = kFashionDomainPadding;
  Image image(h + 2 * p, w + 2 * p);
  render(grey.data_ptr<uint8_t>(), h, w, domain, seed, index, shift, image.pixels.data());
  return image;
}

std::vector<Image> fashion_images_to_list(const torch::Tensor& images_hwc_u8) {
  TORCH_CHECK(images_hwc_u8.defined() && images_hwc_u8.dim() == 4 && images_hwc_u8.size(3) == 3 &&
                  images_hwc_u8.scalar_type() == torch::kUInt8,
              "fashion_images_to_list: images must be uint8 (n, H, W, 3)");
  const auto images = images_hwc_u8.to(torch::kCPU).contiguous();
  const int64_t n = images.size(0);
  const int64_t h = images.size(1);
  const int64_t w = images.size(2);
  std::vector<Image> list;
  list.reserve(static_cast<size_t>(n));
  const uint8_t* data = images.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    Image image(h, w);
    std::memcpy(image.pixels.data(), data + i * h * w * 3, image.pixels.size());
    list.push_back(std::move(image));
  }
  return list;
}

void write_fashion_image_list(const FashionMnist& data, FashionDomain domain, uint64_t seed,
                              const std::string& out_dir, int64_t count) {
  TORCH_CHECK(
      data.images.defined() && data.labels.defined() && data.images.size(0) == data.labels.size(0),
      "write_fashion_image_list: images and labels must be set and of one length");
  const int64_t n = count < 0 ? data.size() : std::min(count, data.size());
  const std::filesystem::path root(out_dir);
  std::error_code ec;
  std::filesystem::create_directories(root / "images", ec);
  if (ec) {
    throw std::runtime_error("write_fashion_image_list: cannot create " +
                             (root / "images").string() + ": " + ec.message());
  }
  const auto images = fashion_domain_images(data.images.narrow(0, 0, n), domain, seed);
  const auto labels = data.labels.to(torch::kCPU).to(torch::kInt64).contiguous();
  const int64_t* label_data = labels.data_ptr<int64_t>();
  // Zero-padded to at least 5 digits, so names sort in sample order.
  const size_t width = std::max<size_t>(5, std::to_string(std::max<int64_t>(n - 1, 0)).size());
  const auto list = fashion_images_to_list(images);
  std::string text;
  for (int64_t i = 0; i < n; ++i) {
    const std::string digits = std::to_string(i);
    const std::string name =
        "images/" + std::string(width - std::min(width, digits.size()), '0') + digits + ".png";
    write_file_bytes((root / name).string(), encode_png(list[static_cast<size_t>(i)]));
    text += name;
    text += ' ';
    text += std::to_string(label_data[i]);
    text += '\n';
  }
  write_file_bytes((root / "list.txt").string(), std::vector<uint8_t>(text.begin(), text.end()));
}

namespace {

void check_rows(int64_t v, int64_t most, const char* field) {
  if (v < 1 || v > most) {
    throw std::invalid_argument(std::string("Fashion-MNIST shift: ") + field + " must be in 1.." +
                                std::to_string(most) + ", got " + std::to_string(v));
  }
}

FashionMnist load_at_least(const std::string& dir, FashionMnistSplit split, int64_t rows) {
  FashionMnist data = load_fashion_mnist(dir, split, rows);
  if (data.size() < rows) {
    throw std::invalid_argument(
        "Fashion-MNIST shift: " + fashion_mnist_path(dir, split, /*labels=*/false) + " holds " +
        std::to_string(data.size()) + " images, " + std::to_string(rows) + " needed");
  }
  return data;
}

}  // namespace

FashionShift load_fashion_source(const std::string& dir, int64_t source) {
  check_rows(source, kFashionTargetTrainOffset, "source");
  const FashionMnist train = load_at_least(dir, FashionMnistSplit::kTrain, source);
  FashionShift out;
  out.source = fashion_domain_images(train.images, FashionDomain::kSource, 1);
  out.source_labels = train.labels;
  return out;
}

FashionShift load_fashion_target(const std::string& dir, int64_t target_train, int64_t target_test,
                                 const FashionTargetShift& shift) {
  check_rows(target_train, kFashionTargetTrainOffset, "target_train");
  check_rows(target_test, 10000, "target_test");
  const FashionMnist train =
      load_at_least(dir, FashionMnistSplit::kTrain, kFashionTargetTrainOffset + target_train);
  const FashionMnist test = load_at_least(dir, FashionMnistSplit::kTest, target_test);
  FashionShift out;
  out.target_train =
      fashion_domain_images(train.images.narrow(0, kFashionTargetTrainOffset, target_train),
                            FashionDomain::kTarget, 2, shift);
  out.target_train_labels =
      train.labels.narrow(0, kFashionTargetTrainOffset, target_train).contiguous();
  out.target_test = fashion_domain_images(test.images, FashionDomain::kTarget, 3, shift);
  out.target_test_labels = test.labels;
  out.source_test = fashion_domain_images(test.images, FashionDomain::kSource, 3);
  return out;
}

FashionShift load_fashion_shift(const std::string& dir, const FashionShiftSizes& sizes,
                                const FashionTargetShift& shift) {
  FashionShift out = load_fashion_target(dir, sizes.target_train, sizes.target_test, shift);
  FashionShift source = load_fashion_source(dir, sizes.source);
  out.source = std::move(source.source);
  out.source_labels = std::move(source.source_labels);
  return out;
}

}  // namespace tandem::worker
