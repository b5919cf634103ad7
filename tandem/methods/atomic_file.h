// One way to write a file others read (weights, checkpoints, metrics,
// exports, rendered images): atomically and durably.
#pragma once

#include <string>
#include <string_view>

namespace tandem::methods {

/// Writes `bytes` to `path` through a new temporary file in the same folder
/// that is fsync'ed and renamed over `path`, then fsyncs the folder: a crash
/// leaves the old file or the new one, never a torn one. Throws c10::Error
/// "<function>: cannot write '<path>' (<step> of <temp>): <reason>".
void write_file_atomically(const std::string& path, std::string_view bytes,
                           const char* function = "write_file_atomically");

}  // namespace tandem::methods
