#include "tandem/methods/autocast.h"

#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>

namespace tandem::methods {

AutocastGuard::AutocastGuard(c10::DeviceType device, c10::ScalarType dtype, bool enabled)
    : device_(device), enabled_(enabled) {
  if (!enabled_) return;
  TORCH_CHECK(at::autocast::is_autocast_available(device), "autocast: not available on ",
              c10::DeviceTypeName(device));
  TORCH_CHECK(dtype == c10::kBFloat16 || dtype == c10::kHalf,
              "autocast: dtype must be bfloat16 or float16, got ", dtype);
  previous_enabled_ = at::autocast::is_autocast_enabled(device);
  previous_dtype_ = at::autocast::get_autocast_dtype(device);
  at::autocast::set_autocast_dtype(device, dtype);
  at::autocast::set_autocast_enabled(device, true);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_, previous_enabled_);
  at::autocast::set_autocast_dtype(device_, previous_dtype_);
}

}  // namespace tandem::methods
