#include "tandem/worker/data/image.h"

#include <gtest/gtest.h>
#include <unistd.h>

#ifdef TANDEM_WITH_IMAGE_CODECS
#include <png.h>
#endif

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

namespace tandem::worker {
namespace {
namespace fs = std::filesystem;

#ifndef TANDEM_WITH_IMAGE_CODECS
TEST(Image, NeedsTheCodecs) {
  GTEST_SKIP() << "built without libjpeg-turbo/libpng (core-only build on a bare host)";
}
#else

Image smooth_image(int64_t h, int64_t w) {
  Image image(h, w);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      uint8_t* p = image.row(y) + 3 * x;
      p[0] = static_cast<uint8_t>(255 * y / h);
      p[1] = static_cast<uint8_t>(255 * x / w);
      p[2] = static_cast<uint8_t>(128 + 100 * std::sin(0.1 * double(x + y)));
    }
  }
  return image;
}

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const ImageError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("not an ImageError: ") + e.what();
  }
  return "";
}

TEST(Image, PngRoundTripIsExact) {
  const Image image = smooth_image(37, 23);
  const std::vector<uint8_t> png = encode_png(image);
  const Image decoded = decode_image(png.data(), png.size(), "mem.png");
  EXPECT_EQ(decoded.height, 37);
  EXPECT_EQ(decoded.width, 23);
  EXPECT_EQ(decoded.pixels, image.pixels);
}

TEST(Image, JpegRoundTripIsClose) {
  const Image image = smooth_image(128, 64);
  const std::vector<uint8_t> jpeg = encode_jpeg(image, 95);
  ASSERT_EQ(jpeg[0], 0xFF);
  ASSERT_EQ(jpeg[1], 0xD8);
  const Image decoded = decode_image(jpeg.data(), jpeg.size(), "mem.jpg");
  ASSERT_EQ(decoded.height, 128);
  ASSERT_EQ(decoded.width, 64);
  double total = 0;
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    total += std::abs(int(image.pixels[i]) - int(decoded.pixels[i]));
  }
  EXPECT_LT(total / double(image.pixels.size()), 2.0);
}

TEST(Image, GreyPngBecomesRgb) {
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  png.width = 3;
  png.height = 2;
  png.format = PNG_FORMAT_GRAY;
  const uint8_t grey[6] = {0, 50, 100, 150, 200, 250};
  png_alloc_size_t size = 1024;
  std::vector<uint8_t> bytes(size);
  ASSERT_NE(png_image_write_to_memory(&png, bytes.data(), &size, 0, grey, 0, nullptr), 0);
  bytes.resize(size);
  const Image image = decode_image(bytes.data(), bytes.size(), "grey.png");
  ASSERT_EQ(image.pixels.size(), 18u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(image.pixels[3 * i], grey[i]);
    EXPECT_EQ(image.pixels[3 * i + 1], grey[i]);
    EXPECT_EQ(image.pixels[3 * i + 2], grey[i]);
  }
}

/// A PNG written through libpng's simplified API.
std::vector<uint8_t> write_png(uint32_t format, int width, int height, const void* pixels) {
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  png.width = width;
  png.height = height;
  png.format = format;
  png_alloc_size_t size = 1 << 16;
  std::vector<uint8_t> bytes(size);
  EXPECT_NE(png_image_write_to_memory(&png, bytes.data(), &size, 0, pixels, 0, nullptr), 0);
  bytes.resize(size);
  return bytes;
}

TEST(Image, PngAlphaIsDroppedNotCompositedAnd16BitKeepsTheHighByte) {
  // PIL's convert('RGB') drops alpha: a transparent pixel keeps its colour.
  const uint8_t rgba[8] = {10, 20, 30, 0, 200, 100, 50, 128};
  std::vector<uint8_t> bytes = write_png(PNG_FORMAT_RGBA, 2, 1, rgba);
  Image image = decode_image(bytes.data(), bytes.size(), "alpha.png");
  EXPECT_EQ(image.pixels, (std::vector<uint8_t>{10, 20, 30, 200, 100, 50}));
  // 16-bit grey (written as linear, with a gAMA chunk): no gamma step, the
  // high byte of each sample, as PIL.
  const uint16_t grey16[3] = {0x0000, 0x8040, 0xFFFF};
  bytes = write_png(PNG_FORMAT_LINEAR_Y, 3, 1, grey16);
  image = decode_image(bytes.data(), bytes.size(), "grey16.png");
  EXPECT_EQ(image.pixels, (std::vector<uint8_t>{0, 0, 0, 0x80, 0x80, 0x80, 0xFF, 0xFF, 0xFF}));
}

TEST(Image, CorruptInputsAreImageErrorsNamingTheFile) {
  Image noisy = smooth_image(128, 64);
  for (size_t i = 0; i < noisy.pixels.size(); ++i) noisy.pixels[i] ^= static_cast<uint8_t>(i * 131);
  const std::vector<uint8_t> jpeg = encode_jpeg(noisy, 90);
  const std::vector<uint8_t> truncated(jpeg.begin(), jpeg.begin() + jpeg.size() / 2);
  std::string message =
      error_of([&] { decode_image(truncated.data(), truncated.size(), "cut.jpg"); });
  EXPECT_NE(message.find("cut.jpg: corrupt JPEG"), std::string::npos) << message;

  std::vector<uint8_t> header_only(jpeg.begin(), jpeg.begin() + 20);
  message = error_of([&] { decode_image(header_only.data(), header_only.size(), "head.jpg"); });
  EXPECT_NE(message.find("head.jpg"), std::string::npos) << message;
  // A failed decode leaves the thread's decompressor usable.
  EXPECT_EQ(decode_image(jpeg.data(), jpeg.size(), "whole.jpg").width, 64);

  const std::vector<uint8_t> png = encode_png(smooth_image(20, 20));
  const std::vector<uint8_t> png_cut(png.begin(), png.begin() + png.size() - 30);
  message = error_of([&] { decode_image(png_cut.data(), png_cut.size(), "cut.png"); });
  EXPECT_NE(message.find("cut.png"), std::string::npos) << message;

  const std::vector<uint8_t> text = {'h', 'e', 'l', 'l', 'o'};
  message = error_of([&] { decode_image(text.data(), text.size(), "note.jpg"); });
  EXPECT_NE(message.find("note.jpg: neither JPEG nor PNG"), std::string::npos) << message;
  message = error_of([&] { decode_image(text.data(), 0, "empty.jpg"); });
  EXPECT_NE(message.find("empty.jpg: empty file"), std::string::npos) << message;
  message = error_of([&] { read_image("/nonexistent/dir/x.jpg"); });
  EXPECT_NE(message.find("/nonexistent/dir/x.jpg: cannot open"), std::string::npos) << message;
}

TEST(Image, WriteFileBytesIsAtomicAndReadable) {
  const fs::path dir = fs::temp_directory_path() / ("tandem_image_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path path = dir / "a.jpg";
  const Image image = smooth_image(16, 8);
  write_file_bytes(path.string(), encode_jpeg(image));
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
  EXPECT_EQ(read_image(path.string()).width, 8);
  EXPECT_NE(error_of([&] {
              write_file_bytes((dir / "missing" / "b.jpg").string(), {1, 2});
            }).find("cannot create"),
            std::string::npos);
  EXPECT_NE(error_of([] { encode_jpeg(Image(), 90); }).find("cannot encode"), std::string::npos);
  EXPECT_NE(error_of([&] { encode_jpeg(image, 0); }).find("quality"), std::string::npos);
  fs::remove_all(dir);
}

#endif  // TANDEM_WITH_IMAGE_CODECS

}  // namespace
}  // namespace tandem::worker
