#include "tandem/methods/autocast.h"

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/golden.h"

namespace tandem::methods {
namespace {

TEST(AutocastGuard, RunsEligibleOperatorsInBfloat16AndRestoresTheState) {
  torch::manual_seed(3);
  torch::nn::Linear linear(4, 3);
  const auto x = torch::randn({2, 4});
  ASSERT_FALSE(at::autocast::is_autocast_enabled(c10::kCPU));
  const auto dtype_before = at::autocast::get_autocast_dtype(c10::kCPU);
  {
    const AutocastGuard outer(c10::kCPU, torch::kBFloat16);
    EXPECT_TRUE(at::autocast::is_autocast_enabled(c10::kCPU));
    const auto y = linear(x);
    EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
    // The bf16 result is the float32 one rounded (bf16 keeps 8 bits).
    EXPECT_TRUE(
        testing::tensors_close(y.to(torch::kFloat32), linear(x).to(torch::kFloat32), 1e-2, 1e-2));
    {
      const AutocastGuard off(c10::kCPU, torch::kBFloat16, /*enabled=*/false);
      EXPECT_TRUE(at::autocast::is_autocast_enabled(c10::kCPU)) << "a disabled guard changed state";
    }
    EXPECT_TRUE(at::autocast::is_autocast_enabled(c10::kCPU));
  }
  EXPECT_FALSE(at::autocast::is_autocast_enabled(c10::kCPU));
  EXPECT_EQ(at::autocast::get_autocast_dtype(c10::kCPU), dtype_before);
  EXPECT_EQ(linear(x).scalar_type(), torch::kFloat32);
}

TEST(AutocastGuard, RejectsADtypeAutocastCannotTarget) {
  EXPECT_NE(testing::error_message([] {
              AutocastGuard guard(c10::kCPU, torch::kFloat64);
            }).find("autocast: dtype must be bfloat16 or float16, got Double"),
            std::string::npos);
  EXPECT_FALSE(at::autocast::is_autocast_enabled(c10::kCPU));
}

}  // namespace
}  // namespace tandem::methods
