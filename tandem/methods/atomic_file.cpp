#include "tandem/methods/atomic_file.h"

#include <c10/util/Exception.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace tandem::methods {

/// Writes `data` to `path` through a temporary file in the same folder that
/// is fsync'ed and renamed over `path`.
void write_file_atomically(const std::string& path, std::string_view bytes, const char* function) {
  const char* data = bytes.data();
  const size_t size = bytes.size();
  namespace fs = std::filesystem;
  const fs::path target(path);
  TORCH_CHECK(!target.filename().empty(), function, ": '", path, "' names no file");
  const fs::path folder = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  static std::atomic<uint64_t> counter{0};
  std::string temp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    temp = (folder / (target.filename().string() + ".tmp" + std::to_string(::getpid()) + "-" +
                      std::to_string(counter++)))
               .string();
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) {
      break;
    }
  }
  TORCH_CHECK(fd >= 0, function, ": cannot create a temporary file in '", folder.string(),
              "' to write '", path, "': ", std::strerror(errno));
  const char* failed_step = nullptr;
  int error = 0;
  size_t written = 0;
  while (written < size && failed_step == nullptr) {
    const ssize_t n = ::write(fd, data + written, size - written);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      failed_step = "write";
      error = n < 0 ? errno : EIO;
    } else {
      written += static_cast<size_t>(n);
    }
  }
  if (failed_step == nullptr && ::fsync(fd) != 0) {
    failed_step = "fsync";
    error = errno;
  }
  if (::close(fd) != 0 && failed_step == nullptr) {
    failed_step = "close";
    error = errno;
  }
  if (failed_step == nullptr && ::rename(temp.c_str(), path.c_str()) != 0) {
    failed_step = "rename";
    error = errno;
  }
  if (failed_step != nullptr) {
    ::unlink(temp.c_str());
    TORCH_CHECK(false, function, ": cannot write '", path, "' (", failed_step, " of ", temp,
                "): ", std::strerror(error));
  }
  // Make the rename itself durable; a failure here leaves a complete file.
  const int folder_fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (folder_fd >= 0) {
    ::fsync(folder_fd);
    ::close(folder_fd);
  }
}

}  // namespace tandem::methods
