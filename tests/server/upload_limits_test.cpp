#include "tandem/server/upload_limits.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#ifdef TANDEM_WITH_IMAGE_CODECS
#include "tandem/worker/data/image.h"
#endif

namespace tandem::server {
namespace {

std::string bytes_of(std::initializer_list<int> values) {
  std::string out;
  for (int value : values) out.push_back(static_cast<char>(value));
  return out;
}

std::string be16(uint32_t value) {
  return bytes_of({int(value >> 8), int(value & 0xFF)});
}
std::string be32(uint32_t value) {
  return be16(value >> 16) + be16(value & 0xFFFF);
}

const std::string kPngSignature = bytes_of({0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'});

/// A PNG's signature and IHDR claiming width × height (no pixel data).
std::string png_header(uint32_t width, uint32_t height) {
  return kPngSignature + be32(13) + "IHDR" + be32(width) + be32(height) +
         bytes_of({8, 2, 0, 0, 0}) + be32(0 /* CRC, not checked */);
}

/// A JPEG segment: FF, `marker`, length, `payload`.
std::string segment(int marker, const std::string& payload) {
  return bytes_of({0xFF, marker}) + be16(static_cast<uint32_t>(payload.size() + 2)) + payload;
}

/// A frame header payload: precision 8, height, width, 3 components.
std::string frame(uint32_t width, uint32_t height) {
  return bytes_of({8}) + be16(height) + be16(width) +
         bytes_of({3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1});
}

const std::string kSoi = bytes_of({0xFF, 0xD8});

/// SOI, a JFIF APP0, fill bytes, an EXIF-like APP1, a DQT, a DHT (C4), a
/// JPG (C8) and a DAC (CC) segment, then SOF`n` claiming width × height.
std::string jpeg_header(int sof, uint32_t width, uint32_t height) {
  return kSoi + segment(0xE0, std::string("JFIF\0\1\1\0\0\1\0\1\0\0", 14)) +
         bytes_of({0xFF, 0xFF, 0xFF}) + segment(0xE1, "Exif" + std::string(40, '\xC0')) +
         segment(0xDB, std::string(65, '\1')) + segment(0xC4, std::string(30, '\xC0')) +
         segment(0xC8, "x") + segment(0xCC, "xy") + segment(sof, frame(width, height)) +
         segment(0xDA, std::string(10, '\0'));
}

TEST(UploadLimits, ReadsTheSizeFromHandBuiltHeaders) {
  auto png = image_size_from_header(png_header(50000, 40000));
  ASSERT_TRUE(png.ok()) << png.status();
  EXPECT_EQ(png->width, 50000);
  EXPECT_EQ(png->height, 40000);
  // Baseline, extended, progressive and lossless frames; never C4/C8/CC.
  for (int sof : {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC7, 0xC9, 0xCB, 0xCD, 0xCF}) {
    auto jpeg = image_size_from_header(jpeg_header(sof, 50000, 30000));
    ASSERT_TRUE(jpeg.ok()) << std::hex << sof << ": " << jpeg.status();
    EXPECT_EQ(jpeg->width, 50000) << std::hex << sof;
    EXPECT_EQ(jpeg->height, 30000) << std::hex << sof;
  }
  // Standalone markers (TEM, RST) carry no length.
  const std::string standalone =
      kSoi + bytes_of({0xFF, 0x01, 0xFF, 0xD3}) + segment(0xC0, frame(7, 5));
  auto jpeg = image_size_from_header(standalone);
  ASSERT_TRUE(jpeg.ok()) << jpeg.status();
  EXPECT_EQ(jpeg->width, 7);
  EXPECT_EQ(jpeg->height, 5);
}

TEST(UploadLimits, RefusesClaimsAboveThePixelLimitBeforeDecoding) {
  const int64_t max_pixels = 4096LL * 4096;
  for (const std::string& bytes : {png_header(50000, 50000), jpeg_header(0xC0, 50000, 50000),
                                   jpeg_header(0xC2, 50000, 50000)}) {
    const absl::Status status = check_uploaded_image(bytes, 1 << 20, max_pixels);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(),
              "image: 50000x50000 pixels, above the server's limit of 16777216 "
              "(--max-image-pixels)");
  }
  EXPECT_EQ(check_uploaded_image(png_header(20000, 20000), 1 << 20, max_pixels).message(),
            "image: 20000x20000 pixels, above the server's limit of 16777216 "
            "(--max-image-pixels)");
  // Exactly at the limit; and 0: no limit.
  EXPECT_TRUE(check_uploaded_image(png_header(4096, 4096), 1 << 20, max_pixels).ok());
  EXPECT_FALSE(check_uploaded_image(png_header(4097, 4096), 1 << 20, max_pixels).ok());
  EXPECT_TRUE(check_uploaded_image(png_header(50000, 50000), 0, 0).ok());
  // The largest PNG claim does not overflow the product.
  const absl::Status huge = check_uploaded_image(png_header(0xFFFFFFFFU, 0xFFFFFFFFU), 0,
                                                 std::numeric_limits<int64_t>::max());
  EXPECT_EQ(huge.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(huge.message().find("4294967295x4294967295 pixels"), std::string::npos) << huge;
}

TEST(UploadLimits, RefusesUploadsAboveTheByteLimitFirst) {
  const std::string bytes = png_header(10, 10) + std::string(1000, '\0');
  const int64_t size = static_cast<int64_t>(bytes.size());
  EXPECT_TRUE(check_uploaded_image(bytes, size, 100).ok());
  EXPECT_EQ(check_uploaded_image(bytes, size - 1, 100).message(),
            "image: " + std::to_string(size) + " bytes, above the server's limit of " +
                std::to_string(size - 1) + " (--max-image-bytes)");
  EXPECT_NE(check_uploaded_image(std::string(2000, 'x'), 1000, 100).message().find("2000 bytes"),
            std::string::npos);
}

TEST(UploadLimits, TruncatedGarbageAndZeroSizedHeadersAreClearErrors) {
  const auto message_of = [](const std::string& bytes) {
    return std::string(check_uploaded_image(bytes, 0, 1 << 24).message());
  };
  for (const std::string& garbage :
       {std::string(), std::string("GIF89a\1\0\1\0"), std::string("BM\0\0\0\0", 6),
        std::string("hello, world"), bytes_of({0xFF, 0xD9, 0, 0}), bytes_of({0x89, 'P', 'X'})}) {
    EXPECT_EQ(message_of(garbage), "image: not a JPEG or PNG") << garbage;
  }
  const std::string png = png_header(10, 10);
  const std::string jpeg = jpeg_header(0xC0, 10, 10);
  const size_t sof_at = jpeg.find(bytes_of({0xFF, 0xC0}));
  ASSERT_NE(sof_at, std::string::npos);
  for (const std::string& truncated :
       {bytes_of({0x89}), bytes_of({0x89, 'P', 'N'}), kPngSignature, png.substr(0, 20),
        bytes_of({0xFF}), kSoi, kSoi + bytes_of({0xFF}), kSoi + bytes_of({0xFF, 0xFF, 0xFF}),
        kSoi + bytes_of({0xFF, 0xE0, 0}), jpeg.substr(0, 30), jpeg.substr(0, sof_at + 8)}) {
    EXPECT_EQ(message_of(truncated), "image: truncated header") << truncated.size() << " bytes";
  }
  EXPECT_EQ(message_of(kPngSignature + be32(13) + "IDAT" + std::string(12, '\0')),
            "image: malformed PNG header (the first chunk is not IHDR)");
  EXPECT_NE(message_of(kSoi + segment(0xDA, "x") + segment(0xC0, frame(1, 1)))
                .find("start of scan before the frame header"),
            std::string::npos);
  EXPECT_NE(message_of(kSoi + bytes_of({0xFF, 0xD9})).find("end of image before the frame header"),
            std::string::npos);
  EXPECT_NE(message_of(kSoi + bytes_of({0xFF, 0xE0, 0, 1}) + segment(0xC0, frame(1, 1)))
                .find("segment length 1"),
            std::string::npos);
  EXPECT_NE(message_of(kSoi + "junk" + segment(0xC0, frame(1, 1))).find("no marker at byte 2"),
            std::string::npos);
  EXPECT_NE(message_of(kSoi + bytes_of({0xFF, 0x00})).find("FF 00"), std::string::npos);
  // Zero dimensions (a JPEG height of 0 defers it to a DNL marker: refused).
  for (const std::string& zero :
       {png_header(0, 10), png_header(10, 0), jpeg_header(0xC0, 10, 0), jpeg_header(0xC2, 0, 5)}) {
    const absl::Status status = check_uploaded_image(zero, 0, 1 << 24);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(status.message().find("zero dimension"), std::string::npos) << status;
  }
}

#ifdef TANDEM_WITH_IMAGE_CODECS
TEST(UploadLimits, RealEncodedImagesPassAndStateTheDecodedSize) {
  worker::Image image(23, 37);  // height × width
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>(i * 7);
  const std::vector<std::vector<uint8_t>> encoded = {worker::encode_png(image),
                                                     worker::encode_jpeg(image, 90)};
  for (const std::vector<uint8_t>& bytes : encoded) {
    const std::string upload(bytes.begin(), bytes.end());
    auto size = image_size_from_header(upload);
    ASSERT_TRUE(size.ok()) << size.status();
    EXPECT_EQ(size->width, 37);
    EXPECT_EQ(size->height, 23);
    // The decoder agrees with the header.
    const worker::Image decoded = worker::decode_image(bytes.data(), bytes.size(), "<bytes>");
    EXPECT_EQ(decoded.width, size->width);
    EXPECT_EQ(decoded.height, size->height);
    EXPECT_TRUE(check_uploaded_image(upload, 1 << 20, 37 * 23).ok());
    EXPECT_EQ(check_uploaded_image(upload, 1 << 20, 37 * 23 - 1).message(),
              "image: 37x23 pixels, above the server's limit of 850 (--max-image-pixels)");
    // Cut inside the header: truncated, never a size.
    EXPECT_EQ(check_uploaded_image(upload.substr(0, 12), 0, 0).message(),
              "image: truncated header");
  }
}
#else
TEST(UploadLimits, RealEncodedImagesPassAndStateTheDecodedSize) {
  GTEST_SKIP() << "built without libjpeg-turbo and libpng (TANDEM_WITH_IMAGE_CODECS off)";
}
#endif

}  // namespace
}  // namespace tandem::server
