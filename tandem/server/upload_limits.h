// Limits on an uploaded image (the Rank RPC's query image), checked before
// anything decodes it: a 30 KB PNG or JPEG can claim 50000 × 50000 pixels
// and make a decoder allocate 7.5 GB (a decompression bomb).
//
// Only the header is read: the PNG signature and its IHDR chunk, or a
// JPEG's markers up to its frame header (SOF0..SOF15).
#pragma once

#include <cstdint>
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

namespace tandem::server {

/// An image's size in pixels, as its header states it.
struct ImageSize {
  int64_t width = 0;
  int64_t height = 0;
};

/// The width and height a PNG's IHDR or a JPEG's first frame header (SOF0..
/// SOF15, not DHT C4, JPG C8, DAC CC) states, reading nothing else.
/// INVALID_ARGUMENT: "image: not a JPEG or PNG", "image: truncated header"
/// (the bytes end before the size), or a malformed header (no IHDR first, a
/// JPEG segment length below 2, no frame header before the scan or the end).
absl::StatusOr<ImageSize> image_size_from_header(const std::string& bytes);

/// OK when `bytes` is a PNG or JPEG of at most `max_bytes` bytes whose
/// header states a non-zero width and height of at most `max_pixels`
/// pixels in all (a limit of 0 or less: no limit). INVALID_ARGUMENT
/// otherwise, e.g. "image: 20000x20000 pixels, above the server's limit of
/// 16777216 (--max-image-pixels)"; the byte limit is checked first.
absl::Status check_uploaded_image(const std::string& bytes, int64_t max_bytes, int64_t max_pixels);

}  // namespace tandem::server
