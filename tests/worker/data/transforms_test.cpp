#include "tandem/worker/data/transforms.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

namespace tandem::worker {
namespace {

/// The procedural input of tests/golden/generate_resize_golden.py.
Image pattern(int64_t h, int64_t w) {
  Image image(h, w);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      for (int64_t c = 0; c < 3; ++c) {
        image.row(y)[3 * x + c] =
            static_cast<uint8_t>((x * 37 + y * 11 + c * 71 + ((x * y) % 17) * 9) % 256);
      }
    }
  }
  return image;
}

int32_t read_int(std::ifstream& in) {
  int32_t v = 0;
  in.read(reinterpret_cast<char*>(&v), 4);
  return v;
}

TEST(ResizeBicubic, MatchesPilOnEveryGoldenCase) {
  std::ifstream in(std::string(TANDEM_SOURCE_DIR) + "/tests/golden/resize_golden.bin",
                   std::ios::binary);
  ASSERT_TRUE(in) << "tests/golden/resize_golden.bin missing";
  const int32_t cases = read_int(in);
  ASSERT_EQ(cases, 8);
  for (int32_t i = 0; i < cases; ++i) {
    const int32_t in_h = read_int(in), in_w = read_int(in), out_h = read_int(in),
                  out_w = read_int(in);
    std::vector<uint8_t> expected(static_cast<size_t>(out_h * out_w * 3));
    in.read(reinterpret_cast<char*>(expected.data()),
            static_cast<std::streamsize>(expected.size()));
    ASSERT_TRUE(in);
    const Image ours = resize_bicubic(pattern(in_h, in_w), out_h, out_w);
    ASSERT_EQ(ours.height, out_h);
    ASSERT_EQ(ours.width, out_w);
    int64_t max_diff = 0, differing = 0;
    for (size_t k = 0; k < expected.size(); ++k) {
      const int64_t d = std::abs(int64_t(ours.pixels[k]) - int64_t(expected[k]));
      max_diff = std::max(max_diff, d);
      differing += d != 0;
    }
    EXPECT_EQ(max_diff, 0) << in_h << "x" << in_w << " -> " << out_h << "x" << out_w << ": "
                           << differing << " bytes differ";
  }
}

torch::Tensor to_tensor(const Image& image) {
  return torch::from_blob(const_cast<uint8_t*>(image.pixels.data()), {image.height, image.width, 3},
                          torch::kUInt8)
      .permute({2, 0, 1})
      .to(torch::kFloat32)
      .div(255.0);
}

torch::Tensor normalise(const torch::Tensor& chw, const TransformOptions& o) {
  const auto mean = torch::tensor({o.mean[0], o.mean[1], o.mean[2]}).view({3, 1, 1});
  const auto std = torch::tensor({o.std[0], o.std[1], o.std[2]}).view({3, 1, 1});
  return (chw - mean) / std;
}

TEST(ImageTransform, TestTransformIsResizeThenNormalise) {
  const TransformOptions options = TransformOptions::test(256, 128);
  ImageTransform transform(options);
  const Image image = pattern(128, 64);
  Rng rng(0);
  const torch::Tensor out = transform(image, rng);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{3, 256, 128}));
  const torch::Tensor expected = normalise(to_tensor(resize_bicubic(image, 256, 128)), options);
  EXPECT_LT((out - expected).abs().max().item<float>(), 1e-6);
}

TEST(ImageTransform, FlipPadAndCropAreAShiftedMirror) {
  const Image image = pattern(256, 128);  // no resize
  TransformOptions options = TransformOptions::test(256, 128);
  const torch::Tensor plain = ImageTransform(options)(image, *std::make_unique<Rng>(0));
  options.flip_probability = 1.0;
  Rng rng(1);
  EXPECT_TRUE(torch::equal(ImageTransform(options)(image, rng), plain.flip({2})));

  options.flip_probability = 0.0;
  options.pad = 10;
  ImageTransform crop(options);
  const float zero_r = (0.0F - options.mean[0]) / options.std[0];
  std::map<int64_t, int> offsets;
  for (int trial = 0; trial < 400; ++trial) {
    Rng r(trial);
    const torch::Tensor out = crop(image, r);
    // Find the shift (dy, dx) in [-10, 10]^2 that explains the output.
    bool found = false;
    for (int64_t dy = -10; dy <= 10 && !found; ++dy) {
      for (int64_t dx = -10; dx <= 10 && !found; ++dx) {
        const int64_t y0 = std::max<int64_t>(0, -dy), y1 = std::min<int64_t>(256, 256 - dy);
        const int64_t x0 = std::max<int64_t>(0, -dx), x1 = std::min<int64_t>(128, 128 - dx);
        const auto inside = out.slice(1, y0, y1).slice(2, x0, x1);
        const auto source = plain.slice(1, y0 + dy, y1 + dy).slice(2, x0 + dx, x1 + dx);
        if (torch::equal(inside, source)) {
          found = true;
          offsets[dy * 100 + dx]++;
          if (dy > 0) {  // rows shifted in from the padding are zero (black)
            EXPECT_TRUE(
                torch::allclose(out[0].slice(0, 256 - dy, 256), torch::full({dy, 128}, zero_r)));
          }
        }
      }
    }
    ASSERT_TRUE(found) << "trial " << trial;
  }
  EXPECT_GT(offsets.size(), 150u) << "offsets spread over the 21 x 21 choices";
}

TEST(ImageTransform, FlipAndErasingRatesAndErasedBoxes) {
  const Image image = pattern(256, 128);
  TransformOptions options = TransformOptions::train(256, 128);
  options.pad = 0;
  ImageTransform transform(options);
  const torch::Tensor plain =
      ImageTransform(TransformOptions::test(256, 128))(image, *std::make_unique<Rng>(0));
  int flips = 0, erased = 0;
  const int trials = 2000;
  double min_area = 1, max_area = 0, aspect_sum = 0;
  for (int trial = 0; trial < trials; ++trial) {
    Rng rng(1000 + trial);
    const torch::Tensor out = transform(image, rng);
    // Pixels that differ from both the plain and the mirrored image are erased.
    const bool flipped = (out - plain.flip({2})).abs().lt(1e-6).sum().item<int64_t>() >
                         (out - plain).abs().lt(1e-6).sum().item<int64_t>();
    flips += flipped;
    const torch::Tensor reference = flipped ? plain.flip({2}) : plain;
    const torch::Tensor changed = (out - reference).abs().gt(1e-6).any(0);
    const int64_t n = changed.sum().item<int64_t>();
    if (n > 0) {
      ++erased;
      // The erased box holds exactly the fill value (ImageNet mean) per channel.
      const auto where = changed.nonzero();
      const int64_t y0 = where.select(1, 0).min().item<int64_t>();
      const int64_t y1 = where.select(1, 0).max().item<int64_t>() + 1;
      const int64_t x0 = where.select(1, 1).min().item<int64_t>();
      const int64_t x1 = where.select(1, 1).max().item<int64_t>() + 1;
      for (int c = 0; c < 3; ++c) {
        EXPECT_TRUE(torch::allclose(out[c].slice(0, y0, y1).slice(1, x0, x1),
                                    torch::full({y1 - y0, x1 - x0}, options.mean[c])));
      }
      const double area = double((y1 - y0) * (x1 - x0)) / (256.0 * 128.0);
      aspect_sum += double(y1 - y0) / double(x1 - x0);
      min_area = std::min(min_area, area);
      max_area = std::max(max_area, area);
    }
  }
  // h = sqrt(area · r), w = sqrt(area / r) with r in [0.3, 1/0.3]: boxes are
  // taller than wide on average (mean h / w near 1.8; swapping h and w gives
  // about 0.6).
  EXPECT_GT(aspect_sum / std::max(erased, 1), 1.4);
  EXPECT_NEAR(flips / double(trials), 0.5, 0.05);
  // p = 0.5, and a few of the 100 attempts can all fail (never here at 256 x 128).
  EXPECT_NEAR(erased / double(trials), 0.5, 0.05);
  EXPECT_GE(min_area, 0.015);  // 0.02 of the area, up to rounding of h and w
  EXPECT_LE(max_area, 0.42);
  EXPECT_GT(max_area, 0.3);
}

TEST(ImageTransform, DeterministicForAnRngAndValidated) {
  const Image image = pattern(128, 64);
  ImageTransform transform(TransformOptions::train());
  Rng a(77), b(77), c(78);
  const auto x = transform(image, a), y = transform(image, b), z = transform(image, c);
  EXPECT_TRUE(torch::equal(x, y));
  EXPECT_FALSE(torch::equal(x, z));
  TransformOptions bad = TransformOptions::train();
  bad.erase_area_min = 0.5;
  bad.erase_area_max = 0.4;
  try {
    ImageTransform{bad};
    FAIL() << "accepted an empty area range";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("erase area range"), std::string::npos);
  }
  bad = TransformOptions::train();
  bad.height = 0;
  EXPECT_THROW(ImageTransform{bad}, c10::Error);
  bad = TransformOptions::train();
  bad.std[1] = 0;
  EXPECT_THROW(ImageTransform{bad}, c10::Error);
}

}  // namespace
}  // namespace tandem::worker
