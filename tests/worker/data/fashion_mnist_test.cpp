#include "tandem/worker/data/fashion_mnist.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#if __has_include(<zlib.h>)
#include <zlib.h>
#define TANDEM_TEST_HAS_ZLIB 1
#endif

#include "tandem/worker/data/image.h"

namespace tandem::worker {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr double kPi = 3.14159265358979323846;

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool built_without_zlib() {
  return error_of([] {
           load_fashion_mnist("/nonexistent", FashionMnistSplit::kTest, 0);
         }).find("built without zlib") != std::string::npos;
}

// Skips the test when the package or zlib is missing; both are part of
// scripts/setup, so this only happens on a bare core-only host.
#define SKIP_WITHOUT_PACKAGE()                                                              \
  do {                                                                                      \
    if (built_without_zlib()) GTEST_SKIP() << "built without zlib";                         \
    if (!fs::exists(fashion_mnist_path(kFashionMnistDefaultDir, FashionMnistSplit::kTest,   \
                                       /*labels=*/true))) {                                 \
      GTEST_SKIP() << "dataset-fashion-mnist is not installed (scripts/setup installs it)"; \
    }                                                                                       \
  } while (0)

class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "tandem_fashion_XXXXXX";
    const char* made = ::mkdtemp(pattern.data());
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void put_u32(std::vector<uint8_t>* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<uint8_t>(v >> shift));
}

// IDX bytes: images (magic, n, rows, cols, pixels) and labels (magic, n, labels).
std::vector<uint8_t> idx_images(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols,
                                uint32_t stored) {
  std::vector<uint8_t> bytes;
  put_u32(&bytes, magic);
  put_u32(&bytes, n);
  put_u32(&bytes, rows);
  put_u32(&bytes, cols);
  for (uint32_t i = 0; i < stored * rows * cols; ++i) bytes.push_back(static_cast<uint8_t>(i));
  return bytes;
}

std::vector<uint8_t> idx_labels(uint32_t magic, uint32_t n, const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> bytes;
  put_u32(&bytes, magic);
  put_u32(&bytes, n);
  bytes.insert(bytes.end(), labels.begin(), labels.end());
  return bytes;
}

#ifdef TANDEM_TEST_HAS_ZLIB
void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(file), Z_OK);
}

// A fixture split "t10k" in a temp dir; each test breaks one thing.
class FashionMnistCorrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    if (built_without_zlib()) GTEST_SKIP() << "built without zlib";
  }
  std::string images_path() const {
    return fashion_mnist_path(dir_.path(), FashionMnistSplit::kTest, false);
  }
  std::string labels_path() const {
    return fashion_mnist_path(dir_.path(), FashionMnistSplit::kTest, true);
  }
  void write(const std::vector<uint8_t>& images, const std::vector<uint8_t>& labels) {
    write_gz(images_path(), images);
    write_gz(labels_path(), labels);
  }
  std::string load_error() {
    return error_of([&] { load_fashion_mnist(dir_.path(), FashionMnistSplit::kTest); });
  }

  TempDir dir_;
};

TEST_F(FashionMnistCorrupt, ValidFixtureLoads) {
  write(idx_images(2051, 3, 28, 28, 3), idx_labels(2049, 3, {0, 9, 4}));
  const auto data = load_fashion_mnist(dir_.path(), FashionMnistSplit::kTest);
  ASSERT_EQ(data.size(), 3);
  EXPECT_EQ(data.images.sizes(), (std::vector<int64_t>{3, 28, 28}));
  EXPECT_EQ(data.images[1][0][0].item<int64_t>(), (784 * 1) % 256);
  EXPECT_EQ(data.labels[1].item<int64_t>(), 9);
  EXPECT_EQ(fashion_mnist_count(dir_.path(), FashionMnistSplit::kTest), 3);
}

TEST_F(FashionMnistCorrupt, BadImagesMagicNamesTheFile) {
  write(idx_images(2049, 3, 28, 28, 3), idx_labels(2049, 3, {0, 1, 2}));
  const auto error = load_error();
  EXPECT_THAT(error, HasSubstr(images_path()));
  EXPECT_THAT(error, HasSubstr("bad magic number 2049"));
  EXPECT_THAT(error, HasSubstr("expected 2051"));
}

TEST_F(FashionMnistCorrupt, BadLabelsMagicNamesTheFile) {
  write(idx_images(2051, 3, 28, 28, 3), idx_labels(2051, 3, {0, 1, 2}));
  const auto error = load_error();
  EXPECT_THAT(error, HasSubstr(labels_path()));
  EXPECT_THAT(error, HasSubstr("bad magic number 2051"));
  EXPECT_THAT(error, HasSubstr("expected 2049"));
}

TEST_F(FashionMnistCorrupt, CountMismatchNamesBothFiles) {
  write(idx_images(2051, 3, 28, 28, 3), idx_labels(2049, 4, {0, 1, 2, 3}));
  const auto error = load_error();
  EXPECT_THAT(error, HasSubstr(labels_path()));
  EXPECT_THAT(error, HasSubstr(images_path()));
  EXPECT_THAT(error, HasSubstr("holds 4 labels"));
  EXPECT_THAT(error, HasSubstr("3 images"));
}

TEST_F(FashionMnistCorrupt, WrongDimensionsNameTheFile) {
  write(idx_images(2051, 2, 32, 32, 2), idx_labels(2049, 2, {0, 1}));
  const auto error = load_error();
  EXPECT_THAT(error, HasSubstr(images_path()));
  EXPECT_THAT(error, HasSubstr("32 x 32, expected 28 x 28"));
}

TEST_F(FashionMnistCorrupt, TruncatedPixelsNameTheFile) {
  // The header promises 5 images; the stream holds 3.
  write(idx_images(2051, 5, 28, 28, 3), idx_labels(2049, 5, {0, 1, 2, 3, 4}));
  const auto error = load_error();
  EXPECT_THAT(error, HasSubstr(images_path()));
  EXPECT_THAT(error, HasSubstr("truncated"));
  // The first 3 are there, so a limit within them still reads.
  EXPECT_EQ(load_fashion_mnist(dir_.path(), FashionMnistSplit::kTest, 3).size(), 3);
}

TEST_F(FashionMnistCorrupt, TruncatedGzipStreamNamesTheFile) {
  write(idx_images(2051, 20, 28, 28, 20), idx_labels(2049, 20, std::vector<uint8_t>(20, 1)));
  // Cut the compressed file in half: the deflate stream ends early.
  const auto size = fs::file_size(images_path());
  fs::resize_file(images_path(), size / 2);
  const auto error = load_error();
  EXPECT_THAT(error, HasSubstr(images_path()));
  EXPECT_THAT(error, HasSubstr("truncated"));
}

TEST_F(FashionMnistCorrupt, EmptyFileIsTruncated) {
  write({}, idx_labels(2049, 0, {}));
  const auto error = load_error();
  EXPECT_THAT(error, HasSubstr(images_path()));
  EXPECT_THAT(error, HasSubstr("truncated"));
  EXPECT_THAT(error, HasSubstr("magic number"));
}

TEST_F(FashionMnistCorrupt, LabelOutOfRangeNamesTheFile) {
  write(idx_images(2051, 3, 28, 28, 3), idx_labels(2049, 3, {0, 10, 2}));
  const auto error = load_error();
  EXPECT_THAT(error, HasSubstr(labels_path()));
  EXPECT_THAT(error, HasSubstr("label 10 of sample 1 is outside 0..9"));
}

TEST_F(FashionMnistCorrupt, MissingLabelsFileSaysHowToInstall) {
  write_gz(images_path(), idx_images(2051, 1, 28, 28, 1));
  const auto error = load_error();
  EXPECT_THAT(error, HasSubstr(labels_path()));
  EXPECT_THAT(error, HasSubstr("missing"));
  EXPECT_THAT(error, HasSubstr("scripts/setup"));
  EXPECT_THAT(error, HasSubstr("dataset-fashion-mnist"));
}
#endif  // TANDEM_TEST_HAS_ZLIB

TEST(FashionMnistReader, MissingDirectorySaysHowToInstall) {
  if (built_without_zlib()) GTEST_SKIP() << "built without zlib";
  const auto error =
      error_of([] { load_fashion_mnist("/nonexistent/fashion", FashionMnistSplit::kTrain, 1); });
  EXPECT_THAT(error, HasSubstr("/nonexistent/fashion/train-images-idx3-ubyte.gz"));
  EXPECT_THAT(error, HasSubstr("missing"));
  EXPECT_THAT(error, HasSubstr("scripts/setup"));
  EXPECT_THAT(error, HasSubstr("dataset-fashion-mnist"));
}

TEST(FashionMnistReader, PathsFollowThePackage) {
  EXPECT_EQ(fashion_mnist_path("/d", FashionMnistSplit::kTrain, false),
            "/d/train-images-idx3-ubyte.gz");
  EXPECT_EQ(fashion_mnist_path("/d", FashionMnistSplit::kTest, true),
            "/d/t10k-labels-idx1-ubyte.gz");
}

TEST(FashionMnistReader, CountsAreTheKnownFigures) {
  SKIP_WITHOUT_PACKAGE();
  EXPECT_EQ(fashion_mnist_count(kFashionMnistDefaultDir, FashionMnistSplit::kTrain), 60000);
  EXPECT_EQ(fashion_mnist_count(kFashionMnistDefaultDir, FashionMnistSplit::kTest), 10000);
}

TEST(FashionMnistReader, ReadsTheFirstTrainSamples) {
  SKIP_WITHOUT_PACKAGE();
  const auto data = load_fashion_mnist(kFashionMnistDefaultDir, FashionMnistSplit::kTrain, 12);
  ASSERT_EQ(data.size(), 12);
  EXPECT_EQ(data.images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(data.images.sizes(), (std::vector<int64_t>{12, 28, 28}));
  EXPECT_EQ(data.labels.scalar_type(), torch::kInt64);
  // The first labels of train-labels-idx1-ubyte (read with Python's gzip).
  const std::vector<int64_t> expected = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9};
  EXPECT_EQ(
      std::vector<int64_t>(data.labels.data_ptr<int64_t>(), data.labels.data_ptr<int64_t>() + 12),
      expected);
  EXPECT_EQ(kFashionMnistClassNames[9], std::string("Ankle boot"));
  // The first image's ink and one of its rows, also from Python.
  EXPECT_EQ(data.images[0].sum().item<int64_t>(), 76247);
  EXPECT_EQ(data.images[0][14][3].item<int64_t>(), 0x04);
  EXPECT_EQ(data.images[0][14][5].item<int64_t>(), 0x07);
  EXPECT_EQ(data.images[0][14][12].item<int64_t>(), 0xed);
}

TEST(FashionMnistReader, LimitReadsAPrefix) {
  SKIP_WITHOUT_PACKAGE();
  const auto few = load_fashion_mnist(kFashionMnistDefaultDir, FashionMnistSplit::kTest, 5);
  const auto more = load_fashion_mnist(kFashionMnistDefaultDir, FashionMnistSplit::kTest, 50);
  ASSERT_EQ(few.size(), 5);
  ASSERT_EQ(more.size(), 50);
  EXPECT_TRUE(torch::equal(few.images, more.images.narrow(0, 0, 5)));
  EXPECT_TRUE(torch::equal(few.labels, more.labels.narrow(0, 0, 5)));
  const auto none = load_fashion_mnist(kFashionMnistDefaultDir, FashionMnistSplit::kTest, 0);
  EXPECT_EQ(none.size(), 0);
  EXPECT_EQ(none.images.sizes(), (std::vector<int64_t>{0, 28, 28}));
}

TEST(FashionMnistReader, TestSplitIsBalanced) {
  SKIP_WITHOUT_PACKAGE();
  const auto data = load_fashion_mnist(kFashionMnistDefaultDir, FashionMnistSplit::kTest);
  ASSERT_EQ(data.size(), 10000);
  const auto counts = torch::bincount(data.labels, {}, kFashionMnistClasses);
  for (int64_t c = 0; c < kFashionMnistClasses; ++c) {
    EXPECT_EQ(counts[c].item<int64_t>(), 1000) << kFashionMnistClassNames[c];
  }
  const std::vector<int64_t> first = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5};
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(data.labels[static_cast<int64_t>(i)].item<int64_t>(), first[i]) << i;
  }
}

// Domain tests on synthetic grey images run without the package.
torch::Tensor synthetic_grey(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto images = torch::zeros({n, 28, 28}, torch::kUInt8);
  // A vertical bar (a "trouser") plus a little texture.
  images.slice(1, 4, 24).slice(2, 11, 17).fill_(150);
  images += torch::randint(0, 20, {n, 28, 28}, gen, torch::kUInt8);
  return images;
}

// Real images where the package is there, synthetic ones otherwise.
FashionMnist sample(int64_t n) {
  if (!built_without_zlib() &&
      fs::exists(fashion_mnist_path(kFashionMnistDefaultDir, FashionMnistSplit::kTest, true))) {
    return load_fashion_mnist(kFashionMnistDefaultDir, FashionMnistSplit::kTest, n);
  }
  return {synthetic_grey(n, 3), torch::arange(n, torch::kInt64) % 10};
}

TEST(FashionMnistDomain, SourceIsPaddedGrey) {
  const auto data = sample(40);
  const auto rgb = fashion_domain_images(data.images, FashionDomain::kSource, 7);
  ASSERT_EQ(rgb.sizes(), (std::vector<int64_t>{40, 32, 32, 3}));
  EXPECT_EQ(rgb.scalar_type(), torch::kUInt8);
  const auto r = rgb.select(3, 0);
  EXPECT_TRUE(torch::equal(r, rgb.select(3, 1)));
  EXPECT_TRUE(torch::equal(r, rgb.select(3, 2)));
  EXPECT_TRUE(torch::equal(r.slice(1, 2, 30).slice(2, 2, 30), data.images));
  EXPECT_EQ(r.slice(1, 0, 2).sum().item<int64_t>(), 0);
  EXPECT_EQ(r.slice(2, 30, 32).sum().item<int64_t>(), 0);
  // The seed plays no part in the source.
  EXPECT_TRUE(torch::equal(rgb, fashion_domain_images(data.images, FashionDomain::kSource, 8)));
}

TEST(FashionMnistDomain, InversionAloneIsExact) {
  const auto data = sample(8);
  FashionTargetShift shift = FashionTargetShift::hard();
  shift.min_rotation_degrees = shift.max_rotation_degrees = 0.0;
  shift.palette.clear();
  shift.noise_stddev = 0.0;
  const auto target = fashion_domain_images(data.images, FashionDomain::kTarget, 1, shift);
  const auto source = fashion_domain_images(data.images, FashionDomain::kSource, 1);
  EXPECT_TRUE(torch::equal(target.to(torch::kInt32), 255 - source.to(torch::kInt32)));
}

TEST(FashionMnistDomain, HardTargetInvertsTintsAndIsNotGrey) {
  const auto data = sample(200);
  const auto source = fashion_domain_images(data.images, FashionDomain::kSource, 11);
  const auto target =
      fashion_domain_images(data.images, FashionDomain::kTarget, 11, fashion_target_shift("hard"));
  ASSERT_EQ(target.sizes(), source.sizes());
  const auto s = source.to(torch::kFloat32);
  const auto t = target.to(torch::kFloat32);
  // Dark background and bright garment become the opposite.
  const double source_mean = s.mean().item<double>();
  const double target_mean = t.mean().item<double>();
  EXPECT_LT(source_mean, 90.0);
  EXPECT_GT(target_mean, 120.0);
  // Per image, target luminance anti-correlates with the source.
  const auto sl = s.mean(3).flatten(1);
  const auto tl = t.mean(3).flatten(1);
  const auto sc = sl - sl.mean(1, true);
  const auto tc = tl - tl.mean(1, true);
  const auto corr = (sc * tc).sum(1) / (sc.norm(2, 1) * tc.norm(2, 1) + 1e-6);
  EXPECT_LT(corr.max().item<double>(), 0.0);
  EXPECT_LT(corr.mean().item<double>(), -0.4);

  // Colour: channel means differ within images, and the tint varies between them.
  const auto channel_means = t.mean({1, 2});  // (n, 3)
  const auto spread = std::get<0>(channel_means.max(1)) - std::get<0>(channel_means.min(1));
  EXPECT_GT(spread.min().item<double>(), 10.0);
  // The corner pixel is background: the tint plus noise.
  const FashionTargetShift shift = FashionTargetShift::hard();
  std::set<size_t> tints_seen;
  for (int64_t i = 0; i < target.size(0); ++i) {
    const auto corner = target[i][0][0];
    size_t best = 0;
    double best_distance = 1e9;
    for (size_t k = 0; k < shift.palette.size(); ++k) {
      double d = 0;
      for (int c = 0; c < 3; ++c) {
        d = std::max(d, std::abs(corner[c].item<double>() - shift.palette[k][c]));
      }
      if (d < best_distance) best_distance = d, best = k;
    }
    EXPECT_LT(best_distance, 4.5 * shift.noise_stddev) << "image " << i;
    tints_seen.insert(best);
  }
  EXPECT_EQ(tints_seen.size(), shift.palette.size());
}

TEST(FashionMnistDomain, NamedShifts) {
  const FashionTargetShift standard = fashion_target_shift("standard");
  const FashionTargetShift defaults;
  EXPECT_EQ(standard.max_rotation_degrees, defaults.max_rotation_degrees);
  EXPECT_EQ(standard.texture_cells, defaults.texture_cells);
  EXPECT_EQ(standard.texture_max, defaults.texture_max);
  EXPECT_FALSE(standard.invert);
  EXPECT_TRUE(standard.palette.empty());
  EXPECT_GT(standard.texture_cells, 0);
  EXPECT_LE(standard.max_rotation_degrees, 15.0);
  const FashionTargetShift hard = fashion_target_shift("hard");
  EXPECT_TRUE(hard.invert);
  EXPECT_EQ(hard.palette.size(), 6u);
  EXPECT_EQ(hard.texture_cells, 0);
  EXPECT_EQ(hard.min_rotation_degrees, 15.0);
  EXPECT_EQ(hard.max_rotation_degrees, 30.0);
  EXPECT_THAT(error_of([] { fashion_target_shift("easy"); }), HasSubstr("standard, hard"));
  FashionTargetShift bad;
  bad.texture_max = 300;
  EXPECT_THAT(error_of([&] {
                fashion_domain_images(torch::zeros({1, 28, 28}, torch::kUInt8),
                                      FashionDomain::kTarget, 0, bad);
              }),
              HasSubstr("texture_max"));
}

// The texture B of the standard shift, from a blank image (no ink: |B − 0| = B).
torch::Tensor texture_of(int64_t n, uint64_t seed, const FashionTargetShift& shift) {
  return fashion_domain_images(torch::zeros({n, 28, 28}, torch::kUInt8), FashionDomain::kTarget,
                               seed, shift)
      .to(torch::kInt32);
}

TEST(FashionMnistDomain, StandardTargetIsTheMnistMBlendWithATexture) {
  const auto data = sample(100);
  FashionTargetShift blend_only;  // the standard shift without rotation and noise
  blend_only.max_rotation_degrees = 0.0;
  blend_only.noise_stddev = 0.0;
  // The texture depends only on (seed, index), not on the garment, so a
  // blank image of the same index shows it.
  const auto b = texture_of(100, 21, blend_only);
  const auto g = fashion_domain_images(data.images, FashionDomain::kSource, 21).to(torch::kInt32);
  const auto t =
      fashion_domain_images(data.images, FashionDomain::kTarget, 21, blend_only).to(torch::kInt32);
  EXPECT_TRUE(torch::equal(t, (b - g).abs())) << "v = |b − g| per channel";
  // The texture: coarse colours in [0, texture_max] plus fine detail of at
  // most texture_detail, coloured (channels differ) and different per image.
  EXPECT_LE(b.max().item<int>(),
            static_cast<int>(blend_only.texture_max + blend_only.texture_detail) + 1);
  const auto bf = b.to(torch::kFloat32);
  const double mean = bf.mean().item<double>();
  EXPECT_NEAR(mean, blend_only.texture_max / 2, 0.15 * blend_only.texture_max);
  const auto channel_means = bf.mean({1, 2});  // (n, 3)
  const auto spread = std::get<0>(channel_means.max(1)) - std::get<0>(channel_means.min(1));
  EXPECT_GT(spread.mean().item<double>(), 0.1 * blend_only.texture_max);
  EXPECT_GT(bf.std({0}).mean().item<double>(), 0.15 * blend_only.texture_max)
      << "textures differ between images";
  // Within one image the texture varies (it is not a flat colour).
  EXPECT_GT(bf.flatten(1, 2).std(1).mean().item<double>(), 0.05 * blend_only.texture_max);

  // The full standard shift keeps the garment brighter than its
  // surroundings (luminance correlates with the source's, unlike the hard
  // shift), and it is coloured.
  const auto full = fashion_domain_images(data.images, FashionDomain::kTarget, 21);
  const auto sl = g.to(torch::kFloat32).mean(3).flatten(1);
  const auto tl = full.to(torch::kFloat32).mean(3).flatten(1);
  const auto sc = sl - sl.mean(1, true);
  const auto tc = tl - tl.mean(1, true);
  const auto corr = (sc * tc).sum(1) / (sc.norm(2, 1) * tc.norm(2, 1) + 1e-6);
  EXPECT_GT(corr.mean().item<double>(), 0.5);
  // (A garment darker than most, e.g. a black dress, can come out the other way.)
  EXPECT_GT((corr > 0).to(torch::kFloat32).mean().item<double>(), 0.9);
  EXPECT_FALSE(torch::equal(full.select(3, 0), full.select(3, 1)));
}

TEST(FashionMnistShift, RowsSeedsAndSizes) {
  SKIP_WITHOUT_PACKAGE();
  FashionShiftSizes sizes;
  sizes.source = 30;
  sizes.target_train = 20;
  sizes.target_test = 10;
  const FashionShift s = load_fashion_shift(kFashionMnistDefaultDir, sizes);
  EXPECT_EQ(s.source.sizes(), (std::vector<int64_t>{30, 32, 32, 3}));
  EXPECT_EQ(s.target_train.sizes(), (std::vector<int64_t>{20, 32, 32, 3}));
  EXPECT_EQ(s.target_test.sizes(), (std::vector<int64_t>{10, 32, 32, 3}));
  const FashionMnist train = load_fashion_mnist(kFashionMnistDefaultDir, FashionMnistSplit::kTrain,
                                                kFashionTargetTrainOffset + 20);
  const FashionMnist test =
      load_fashion_mnist(kFashionMnistDefaultDir, FashionMnistSplit::kTest, 10);
  // Source: train rows 0.., seed 1; target train: rows 30000.., seed 2; test: seed 3.
  EXPECT_TRUE(torch::equal(
      s.source, fashion_domain_images(train.images.narrow(0, 0, 30), FashionDomain::kSource, 1)));
  EXPECT_TRUE(torch::equal(s.source_labels, train.labels.narrow(0, 0, 30)));
  EXPECT_TRUE(torch::equal(
      s.target_train, fashion_domain_images(train.images.narrow(0, kFashionTargetTrainOffset, 20),
                                            FashionDomain::kTarget, 2)));
  EXPECT_TRUE(
      torch::equal(s.target_train_labels, train.labels.narrow(0, kFashionTargetTrainOffset, 20)));
  EXPECT_TRUE(
      torch::equal(s.target_test, fashion_domain_images(test.images, FashionDomain::kTarget, 3)));
  EXPECT_TRUE(torch::equal(s.target_test_labels, test.labels));
  EXPECT_TRUE(
      torch::equal(s.source_test, fashion_domain_images(test.images, FashionDomain::kSource, 3)));
  // The halves agree with the whole.
  EXPECT_TRUE(torch::equal(load_fashion_source(kFashionMnistDefaultDir, 30).source, s.source));
  EXPECT_TRUE(torch::equal(
      load_fashion_target(kFashionMnistDefaultDir, 20, 10, FashionTargetShift::hard()).target_test,
      fashion_domain_images(test.images, FashionDomain::kTarget, 3, FashionTargetShift::hard())));
  sizes.source = 30001;
  EXPECT_THAT(error_of([&] { load_fashion_shift(kFashionMnistDefaultDir, sizes); }),
              HasSubstr("source must be in 1..30000, got 30001"));
  EXPECT_THAT(error_of([] { load_fashion_target(kFashionMnistDefaultDir, 5, 0); }),
              HasSubstr("target_test must be in 1..10000, got 0"));
}

// Orientation of an image's mass from its central second moments, degrees.
double orientation_degrees(const torch::Tensor& grey) {
  const auto g = grey.to(torch::kFloat64);
  const int64_t h = g.size(0);
  const int64_t w = g.size(1);
  const auto ys = torch::arange(h, torch::kFloat64).unsqueeze(1).expand({h, w});
  const auto xs = torch::arange(w, torch::kFloat64).unsqueeze(0).expand({h, w});
  const double m = g.sum().item<double>();
  const double cx = (g * xs).sum().item<double>() / m;
  const double cy = (g * ys).sum().item<double>() / m;
  const double mu20 = (g * (xs - cx) * (xs - cx)).sum().item<double>() / m;
  const double mu02 = (g * (ys - cy) * (ys - cy)).sum().item<double>() / m;
  const double mu11 = (g * (xs - cx) * (ys - cy)).sum().item<double>() / m;
  return 0.5 * std::atan2(2 * mu11, mu20 - mu02) * 180.0 / kPi;
}

TEST(FashionMnistDomain, RotationMovesMassByTheDocumentedAngle) {
  // The hard shift's 15°..30°.
  FashionTargetShift rotate_only = FashionTargetShift::hard();
  rotate_only.invert = false;
  rotate_only.palette.clear();
  rotate_only.noise_stddev = 0.0;
  const auto data = sample(300);
  const auto source = fashion_domain_images(data.images, FashionDomain::kSource, 5);
  const auto target = fashion_domain_images(data.images, FashionDomain::kTarget, 5, rotate_only);
  int checked = 0;
  double moved_sum = 0.0;
  double moved_min = 1e9;
  for (int64_t i = 0; i < data.size(); ++i) {
    const auto s = source[i].select(2, 0).to(torch::kFloat64);
    const auto t = target[i].select(2, 0).to(torch::kFloat64);
    // Mass moves: a large share of it changes place.
    const double moved = (s - t).abs().sum().item<double>() / s.sum().item<double>();
    moved_sum += moved;
    moved_min = std::min(moved_min, moved);
    // Trousers (label 1) are elongated: their axis turns by 15..30 degrees.
    if (data.labels[i].item<int64_t>() == 1) {
      double turn = std::abs(orientation_degrees(t) - orientation_degrees(s));
      if (turn > 90) turn = 180 - turn;
      EXPECT_GT(turn, 12.0) << "image " << i;
      EXPECT_LT(turn, 33.0) << "image " << i;
      ++checked;
    }
  }
  EXPECT_GT(moved_sum / static_cast<double>(data.size()), 0.3);
  EXPECT_GT(moved_min, 0.1);
  EXPECT_GT(checked, 10);
}

TEST(FashionMnistDomain, NoiseHasTheDocumentedSpread) {
  FashionTargetShift noise_only;
  noise_only.min_rotation_degrees = noise_only.max_rotation_degrees = 0.0;
  noise_only.invert = false;
  noise_only.palette.clear();
  noise_only.texture_cells = 0;
  const auto data = sample(50);
  const auto source = fashion_domain_images(data.images, FashionDomain::kSource, 2);
  const auto target = fashion_domain_images(data.images, FashionDomain::kTarget, 2, noise_only);
  const auto s = source.to(torch::kFloat64);
  const auto diff = target.to(torch::kFloat64) - s;
  // Away from 0 and 255, where clamping cuts the noise.
  const auto inside = (s > 40) & (s < 215);
  const auto d = diff.masked_select(inside);
  ASSERT_GT(d.numel(), 1000);
  EXPECT_NEAR(d.mean().item<double>(), 0.0, 0.5);
  EXPECT_NEAR(d.std().item<double>(), noise_only.noise_stddev, 0.5);
}

TEST(FashionMnistDomain, DeterministicPerSeedAndIndex) {
  const auto data = sample(30);
  const auto a = fashion_domain_images(data.images, FashionDomain::kTarget, 42);
  const auto b = fashion_domain_images(data.images, FashionDomain::kTarget, 42);
  const auto c = fashion_domain_images(data.images, FashionDomain::kTarget, 43);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  // A prefix renders as the rows of the whole, and one image alone as its row.
  EXPECT_TRUE(
      torch::equal(fashion_domain_images(data.images.narrow(0, 0, 7), FashionDomain::kTarget, 42),
                   a.narrow(0, 0, 7)));
  for (int64_t i : {0, 13, 29}) {
    const Image one = fashion_domain_image(data.images[i], FashionDomain::kTarget, 42, i);
    ASSERT_EQ(one.height, 32);
    ASSERT_EQ(one.width, 32);
    const auto row = a[i].contiguous();
    EXPECT_EQ(std::vector<uint8_t>(row.data_ptr<uint8_t>(), row.data_ptr<uint8_t>() + 32 * 32 * 3),
              one.pixels)
        << "image " << i;
  }
  // The index, not only the seed, picks the random parameters.
  const Image moved = fashion_domain_image(data.images[0], FashionDomain::kTarget, 42, 1);
  const auto first = a[0].contiguous();
  EXPECT_NE(
      std::vector<uint8_t>(first.data_ptr<uint8_t>(), first.data_ptr<uint8_t>() + 32 * 32 * 3),
      moved.pixels);
}

TEST(FashionMnistDomain, RejectsBadInput) {
  EXPECT_THAT(error_of([] {
                fashion_domain_images(torch::zeros({2, 28, 28}), FashionDomain::kSource, 0);
              }),
              HasSubstr("uint8 (n, H, W)"));
  EXPECT_THAT(
      error_of([] {
        fashion_domain_images(torch::zeros({28, 28}, torch::kUInt8), FashionDomain::kSource, 0);
      }),
      HasSubstr("uint8 (n, H, W)"));
  FashionTargetShift bad;
  bad.min_rotation_degrees = 40;
  EXPECT_THAT(error_of([&] {
                fashion_domain_images(torch::zeros({1, 28, 28}, torch::kUInt8),
                                      FashionDomain::kTarget, 0, bad);
              }),
              HasSubstr("min_rotation_degrees"));
}

TEST(FashionMnistDomain, ConvertsToImages) {
  const auto data = sample(3);
  const auto rgb = fashion_domain_images(data.images, FashionDomain::kTarget, 9);
  const auto list = fashion_images_to_list(rgb);
  ASSERT_EQ(list.size(), 3u);
  const auto second = rgb[1].contiguous();
  EXPECT_EQ(list[1].height, 32);
  EXPECT_EQ(list[1].width, 32);
  EXPECT_EQ(list[1].pixels, std::vector<uint8_t>(second.data_ptr<uint8_t>(),
                                                 second.data_ptr<uint8_t>() + 32 * 32 * 3));
}

TEST(FashionMnistImageList, WritesPngsAndAList) {
  const auto data = sample(12);
  TempDir dir;
  const std::string out = dir.path() + "/target";
  try {
    write_fashion_image_list(data, FashionDomain::kTarget, 4, out, 10);
  } catch (const ImageError& e) {
    // encode_png reports a build without libpng.
    GTEST_SKIP() << e.what();
  }
  std::ifstream list(out + "/list.txt");
  ASSERT_TRUE(list.good());
  std::vector<std::string> paths;
  std::vector<int64_t> labels;
  std::string path;
  int64_t label = 0;
  while (list >> path >> label) {
    paths.push_back(path);
    labels.push_back(label);
  }
  ASSERT_EQ(paths.size(), 10u);
  EXPECT_EQ(paths[0], "images/00000.png");
  EXPECT_EQ(paths[9], "images/00009.png");
  const auto rgb = fashion_domain_images(data.images, FashionDomain::kTarget, 4);
  for (size_t i = 0; i < paths.size(); ++i) {
    const auto idx = static_cast<int64_t>(i);
    EXPECT_EQ(labels[i], data.labels[idx].item<int64_t>());
    const Image image = read_image(out + "/" + paths[i]);
    ASSERT_EQ(image.height, 32);
    ASSERT_EQ(image.width, 32);
    const auto row = rgb[idx].contiguous();
    EXPECT_EQ(image.pixels,
              std::vector<uint8_t>(row.data_ptr<uint8_t>(), row.data_ptr<uint8_t>() + 32 * 32 * 3))
        << paths[i];
  }
}

}  // namespace
}  // namespace tandem::worker
