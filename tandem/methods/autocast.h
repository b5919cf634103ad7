// Automatic mixed precision as a scope: what Python's
// `with torch.autocast(device_type, dtype=...):` does, for C++ callers
// (LibTorch 2.x has the switches, at::autocast::set_autocast_enabled and
// friends, but no guard). Used by MMT's bf16 step and the methods' tests.
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

namespace tandem::methods {

/// While alive, operators eligible for autocast on `device` (kCPU or kCUDA)
/// run in `dtype` (bf16 or fp16); on destruction the previous enabled flag
/// and dtype come back and, when the outermost autocast scope ends, the cast
/// cache is cleared (as torch.autocast's __exit__). `enabled = false` makes
/// the guard a no-op, so call sites need no branch.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device, c10::ScalarType dtype, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_;
  bool enabled_;
  bool previous_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::Undefined;
};

}  // namespace tandem::methods
