#include "tandem/worker/data/image.h"

#include "tandem/methods/atomic_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

#ifdef TANDEM_WITH_IMAGE_CODECS
#include <png.h>
#include <turbojpeg.h>
#include <csetjmp>
#endif

namespace tandem::worker {
namespace {

bool is_jpeg(const uint8_t* data, size_t size) {
  return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

bool is_png(const uint8_t* data, size_t size) {
  static constexpr uint8_t kMagic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  return size >= 8 && std::memcmp(data, kMagic, 8) == 0;
}

#ifdef TANDEM_WITH_IMAGE_CODECS
struct TjDeleter {
  void operator()(void* handle) const { tjDestroy(handle); }
};
using TjHandle = std::unique_ptr<void, TjDeleter>;

// One decompressor per thread: creating one costs more than a small decode.
// After a failed decode the handle can be left in a state in which the next
// header read "succeeds" with a 0 x 0 size (libjpeg-turbo 2.1), so a failure
// replaces it.
TjHandle& thread_decompressor_handle() {
  thread_local TjHandle handle(tjInitDecompress());
  return handle;
}

tjhandle thread_decompressor() {
  return thread_decompressor_handle().get();
}

[[noreturn]] void fail_decode(const std::string& message) {
  thread_decompressor_handle().reset(tjInitDecompress());
  throw ImageError(message);
}

bool has_end_marker(const uint8_t* data, size_t size) {
  for (size_t i = size; i >= 2; --i) {
    if (data[i - 2] == 0xFF && data[i - 1] == 0xD9) return true;
  }
  return false;
}

Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name) {
  tjhandle tj = thread_decompressor();
  if (tj == nullptr) throw ImageError(name + ": cannot initialise libjpeg-turbo");
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, data, static_cast<unsigned long>(size), &width, &height, &subsampling,
                          &colorspace) != 0) {
    fail_decode(name + ": not a readable JPEG (" + tjGetErrorStr2(tj) + ")");
  }
  if (width <= 0 || height <= 0 || int64_t{width} * height > (int64_t{1} << 28)) {
    fail_decode(name + ": JPEG has an unsupported size " + std::to_string(width) + "x" +
                std::to_string(height));
  }
  Image image(height, width);
  // Accurate DCT: the default fast integer path differs visibly from PIL.
  if (tjDecompress2(tj, data, static_cast<unsigned long>(size), image.pixels.data(), width,
                    width * 3, height, TJPF_RGB, TJFLAG_ACCURATEDCT) != 0) {
    // A warning (for example extraneous bytes after the image) still gives a
    // complete image; an error means the data is truncated or corrupt.
    // libjpeg-turbo reports a truncated stream as a warning and fills the
    // rest with grey; PIL refuses such a file, and so do we.
    // libjpeg formats only the first warning, so a stream without its end
    // marker (FF D9) is also treated as truncated.
    const std::string message = tjGetErrorStr2(tj);
    if (tjGetErrorCode(tj) != TJERR_WARNING || message.find("Premature end") != std::string::npos ||
        !has_end_marker(data, size)) {
      fail_decode(name + ": corrupt JPEG (" + message + ")");
    }
  }
  return image;
}

/// PNG through libpng's classic API with PIL's convert('RGB') semantics:
/// 16-bit channels keep their high byte, palette and grey expand to RGB,
/// alpha (and tRNS) is dropped rather than composited, no gamma correction.
struct PngReader {
  const uint8_t* data;
  size_t size;
  size_t offset = 0;
  std::string error;
};

void png_read_from_memory(png_structp png, png_bytep out, png_size_t count) {
  auto* reader = static_cast<PngReader*>(png_get_io_ptr(png));
  if (reader->offset + count > reader->size) png_error(png, "unexpected end of data");
  std::memcpy(out, reader->data + reader->offset, count);
  reader->offset += count;
}

void png_error_to_reader(png_structp png, png_const_charp message) {
  auto* reader = static_cast<PngReader*>(png_get_error_ptr(png));
  reader->error = message;
  png_longjmp(png, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}

Image decode_png(const uint8_t* data, size_t size, const std::string& name) {
  PngReader reader{data, size, 0, {}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, &png_error_to_reader,
                                           &png_ignore_warning);
  if (png == nullptr) throw ImageError(name + ": cannot initialise libpng");
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    throw ImageError(name + ": cannot initialise libpng");
  }
  // Everything libpng's longjmp can skip over lives behind a pointer made
  // before setjmp and never reassigned, so its destructor sees real values.
  struct Buffers {
    Image image;
    std::vector<png_bytep> rows;
  };
  const auto buffers = std::make_unique<Buffers>();
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw ImageError(name + ": corrupt PNG (" + reader.error + ")");
  }
  png_set_read_fn(png, &reader, &png_read_from_memory);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  if (width == 0 || height == 0 || uint64_t{width} * height > (uint64_t{1} << 28)) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw ImageError(name + ": PNG has an unsupported size");
  }
  const int color = png_get_color_type(png, info);
  png_set_strip_16(png);  // high byte, as PIL
  png_set_packing(png);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) {
    png_set_expand_gray_1_2_4_to_8(png);
  }
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_strip_alpha(png);  // also drops an expanded tRNS channel
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != size_t{width} * 3) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw ImageError(name + ": unsupported PNG pixel layout");
  }
  buffers->image = Image(height, width);
  buffers->rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) buffers->rows[y] = buffers->image.row(y);
  png_read_image(png, buffers->rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return std::move(buffers->image);
}
#endif

void check_encodable(const Image& image) {
  if (image.empty() || image.pixels.size() != static_cast<size_t>(image.height * image.width * 3)) {
    throw ImageError("cannot encode an image of " + std::to_string(image.height) + "x" +
                     std::to_string(image.width) + " with " + std::to_string(image.pixels.size()) +
                     " bytes");
  }
}

#ifndef TANDEM_WITH_IMAGE_CODECS
[[noreturn]] void no_codecs(const std::string& what) {
  throw ImageError(what + ": this build of Tandem has no image codecs (libjpeg-turbo, libpng)");
}
#endif

}  // namespace

Image decode_image(const uint8_t* data, size_t size, const std::string& name) {
  if (size == 0) throw ImageError(name + ": empty file");
#ifdef TANDEM_WITH_IMAGE_CODECS
  if (is_jpeg(data, size)) return decode_jpeg(data, size, name);
  if (is_png(data, size)) return decode_png(data, size, name);
  throw ImageError(name + ": neither JPEG nor PNG (unknown magic bytes)");
#else
  (void)is_jpeg;
  (void)is_png;
  no_codecs(name);
#endif
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw ImageError(path + ": cannot open (" + std::strerror(errno) + ")");
  const std::streamoff size = in.tellg();
  if (size < 0) throw ImageError(path + ": cannot read its size");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    throw ImageError(path + ": read failed");
  }
  return bytes;
}

Image read_image(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path);
}

std::vector<uint8_t> encode_jpeg(const Image& image, int quality) {
  check_encodable(image);
  if (quality < 1 || quality > 100) {
    throw ImageError("JPEG quality must be in [1, 100], got " + std::to_string(quality));
  }
#ifdef TANDEM_WITH_IMAGE_CODECS
  thread_local TjHandle compressor(tjInitCompress());
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  if (tjCompress2(compressor.get(), image.pixels.data(), static_cast<int>(image.width),
                  static_cast<int>(image.width * 3), static_cast<int>(image.height), TJPF_RGB,
                  &buffer, &size, TJSAMP_420, quality, TJFLAG_ACCURATEDCT) != 0) {
    tjFree(buffer);
    throw ImageError(std::string("JPEG encoding failed: ") + tjGetErrorStr2(compressor.get()));
  }
  std::vector<uint8_t> bytes(buffer, buffer + size);
  tjFree(buffer);
  return bytes;
#else
  no_codecs("encode_jpeg");
#endif
}

std::vector<uint8_t> encode_png(const Image& image) {
  check_encodable(image);
#ifdef TANDEM_WITH_IMAGE_CODECS
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (png_image_write_get_memory_size(png, size, 0, image.pixels.data(), 0, nullptr) == 0) {
    throw ImageError(std::string("PNG encoding failed: ") + png.message);
  }
  std::vector<uint8_t> bytes(size);
  if (png_image_write_to_memory(&png, bytes.data(), &size, 0, image.pixels.data(), 0, nullptr) ==
      0) {
    throw ImageError(std::string("PNG encoding failed: ") + png.message);
  }
  bytes.resize(size);
  return bytes;
#else
  no_codecs("encode_png");
#endif
}

void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  try {
    methods::write_file_atomically(
        path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  } catch (const c10::Error& error) {
    throw ImageError(error.what_without_backtrace());
  }
}

}  // namespace tandem::worker
