// Decoded RGB images, and JPEG/PNG decoding and encoding.
//
// JPEG goes through libjpeg-turbo's TurboJPEG API, PNG through libpng's
// simplified API (both Debian packages). Every failure, whether a missing
// file, a truncated or corrupt stream, or an unknown format, is an ImageError
// naming the file, so the loader can skip the image and count it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::worker {

/// An 8-bit RGB image, row-major height × width × 3 (HWC), as PIL holds it.
struct Image {
  int64_t height = 0;
  int64_t width = 0;
  /// height · width · 3 bytes, R G B per pixel.
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int64_t height, int64_t width)
      : height(height), width(width), pixels(static_cast<size_t>(height * width * 3), 0) {}
  bool empty() const { return height == 0 || width == 0; }
  uint8_t* row(int64_t y) { return pixels.data() + y * width * 3; }
  const uint8_t* row(int64_t y) const { return pixels.data() + y * width * 3; }
};

/// Raised for an image that cannot be read or decoded; what() names the file.
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Decodes a JPEG or PNG held in memory (format from its magic bytes);
/// grey and palette images become RGB, 16-bit keeps the high byte, alpha is
/// dropped (PIL's convert('RGB')). `name` appears in
/// errors (a path, or "<bytes>" for an upload).
Image decode_image(const uint8_t* data, size_t size, const std::string& name);

/// Reads and decodes the JPEG or PNG at `path`.
Image read_image(const std::string& path);

/// Reads a whole file; an ImageError naming the path when it cannot.
std::vector<uint8_t> read_file_bytes(const std::string& path);

/// Encodes as baseline JPEG (4:2:0 chroma) at `quality` in [1, 100].
std::vector<uint8_t> encode_jpeg(const Image& image, int quality = 90);

/// Encodes as 8-bit RGB PNG.
std::vector<uint8_t> encode_png(const Image& image);

/// Writes `bytes` to `path` (temp file + rename, so a crash never leaves a
/// half-written image under the final name).
void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace tandem::worker
