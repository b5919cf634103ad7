#include "tandem/server/upload_limits.h"

#include <absl/strings/str_cat.h>

#include <algorithm>
#include <cstring>

namespace tandem::server {
namespace {

constexpr unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

uint32_t byte_at(const std::string& bytes, size_t at) {
  return static_cast<unsigned char>(bytes[at]);
}

/// The big-endian 16-bit value at `at` (the caller checked the bounds).
uint32_t be16(const std::string& bytes, size_t at) {
  return (byte_at(bytes, at) << 8) | byte_at(bytes, at + 1);
}

/// The big-endian 32-bit value at `at` (the caller checked the bounds).
uint32_t be32(const std::string& bytes, size_t at) {
  return (be16(bytes, at) << 16) | be16(bytes, at + 2);
}

absl::Status invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("image: ", what));
}

absl::Status truncated() {
  return invalid("truncated header");
}

/// PNG: the signature, then IHDR (length 13, "IHDR", width, height, ...).
absl::StatusOr<ImageSize> png_size(const std::string& bytes) {
  constexpr size_t kIhdr = sizeof(kPngSignature);  // the first chunk
  if (bytes.size() < kIhdr + 16) return truncated();
  if (bytes.compare(kIhdr + 4, 4, "IHDR") != 0) {
    return invalid("malformed PNG header (the first chunk is not IHDR)");
  }
  return ImageSize{be32(bytes, kIhdr + 8), be32(bytes, kIhdr + 12)};
}

/// Whether JPEG marker `marker` (the byte after 0xFF) starts a frame
/// header: SOF0..SOF15 are C0..CF but C4 (DHT), C8 (JPG) and CC (DAC).
bool is_frame_header(uint32_t marker) {
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

/// Markers without a length: TEM (01), RST0..RST7 (D0..D7) and SOI (D8).
bool is_standalone(uint32_t marker) {
  return marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8);
}

/// JPEG: SOI, then marker segments (FF, fill FFs, the marker, a 16-bit
/// length counting itself) up to the frame header: FF Cn, length,
/// precision, height (+5 from the FF), width (+7).
absl::StatusOr<ImageSize> jpeg_size(const std::string& bytes) {
  size_t at = 2;  // after SOI
  while (true) {
    if (at >= bytes.size()) return truncated();
    if (byte_at(bytes, at) != 0xFF) {
      return invalid(absl::StrCat("malformed JPEG header (no marker at byte ", at, ")"));
    }
    size_t marker_at = at + 1;
    while (marker_at < bytes.size() && byte_at(bytes, marker_at) == 0xFF) ++marker_at;  // fill
    if (marker_at >= bytes.size()) return truncated();
    const uint32_t marker = byte_at(bytes, marker_at);
    const size_t ff = marker_at - 1;  // the FF just before the marker
    if (marker == 0x00) {
      return invalid(absl::StrCat("malformed JPEG header (FF 00 at byte ", ff, ")"));
    }
    if (is_standalone(marker)) {
      at = marker_at + 1;
      continue;
    }
    if (marker == 0xD9 || marker == 0xDA) {
      return invalid(absl::StrCat("malformed JPEG header (",
                                  marker == 0xD9 ? "end of image" : "start of scan",
                                  " before the frame header)"));
    }
    if (ff + 4 > bytes.size()) return truncated();
    const uint32_t length = be16(bytes, ff + 2);
    if (length < 2) {
      return invalid(
          absl::StrCat("malformed JPEG header (segment length ", length, " at byte ", ff + 2, ")"));
    }
    if (is_frame_header(marker)) {
      if (ff + 9 > bytes.size()) return truncated();
      return ImageSize{be16(bytes, ff + 7), be16(bytes, ff + 5)};
    }
    at = ff + 2 + length;
  }
}

}  // namespace

absl::StatusOr<ImageSize> image_size_from_header(const std::string& bytes) {
  const size_t png_prefix = std::min(bytes.size(), sizeof(kPngSignature));
  if (png_prefix > 0 && std::memcmp(bytes.data(), kPngSignature, png_prefix) == 0) {
    return png_prefix < sizeof(kPngSignature) ? truncated() : png_size(bytes);
  }
  if (!bytes.empty() && byte_at(bytes, 0) == 0xFF) {
    if (bytes.size() == 1) return truncated();
    if (byte_at(bytes, 1) == 0xD8) return jpeg_size(bytes);
  }
  return invalid("not a JPEG or PNG");
}

absl::Status check_uploaded_image(const std::string& bytes, int64_t max_bytes, int64_t max_pixels) {
  const auto size_bytes = static_cast<int64_t>(bytes.size());
  if (max_bytes > 0 && size_bytes > max_bytes) {
    return invalid(absl::StrCat(size_bytes, " bytes, above the server's limit of ", max_bytes,
                                " (--max-image-bytes)"));
  }
  const absl::StatusOr<ImageSize> size = image_size_from_header(bytes);
  if (!size.ok()) return size.status();
  const std::string dimensions = absl::StrCat(size->width, "x", size->height);
  if (size->width == 0 || size->height == 0) {
    return invalid(absl::StrCat(dimensions, " pixels: the header states a zero dimension"));
  }
  // Both are at most 2^32 - 1: compare without overflowing int64.
  if (max_pixels > 0 && size->width > max_pixels / size->height) {
    return invalid(absl::StrCat(dimensions, " pixels, above the server's limit of ", max_pixels,
                                " (--max-image-pixels)"));
  }
  return absl::OkStatus();
}

}  // namespace tandem::server
