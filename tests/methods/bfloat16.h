// bfloat16 helpers of the methods tests: bf16 leaves with exact float32
// twins, and a comparison of a bf16 result with its float32 counterpart.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

namespace tandem::testing {

/// Tolerance of a bf16 computation against float32 on the same (bf16-exact)
/// inputs, relative to the largest float32 magnitude. bf16 keeps 8
/// significant bits (unit roundoff 2^-9 ≈ 2e-3); a loss chains a few dozen
/// rounded operations.
constexpr double kBf16Tolerance = 3e-2;

/// `t` rounded to bfloat16, as a leaf that requires grad.
inline torch::Tensor bf16_leaf(const torch::Tensor& t) {
  return t.detach().to(torch::kBFloat16).clone().requires_grad_();
}

/// The float32 leaf holding exactly the values of `bf16`.
inline torch::Tensor fp32_twin(const torch::Tensor& bf16) {
  return bf16.detach().to(torch::kFloat32).requires_grad_();
}

/// `actual` is a bfloat16 tensor (no promotion happened) of the shape of the
/// float32 `expected`, and max|actual − expected| ≤ tolerance · max|expected|.
inline ::testing::AssertionResult bf16_close(const torch::Tensor& actual,
                                             const torch::Tensor& expected,
                                             double tolerance = kBf16Tolerance) {
  if (!actual.defined() || !expected.defined()) {
    return ::testing::AssertionFailure() << "undefined tensor";
  }
  if (actual.scalar_type() != torch::kBFloat16) {
    return ::testing::AssertionFailure()
           << "dtype is " << actual.scalar_type() << ", expected BFloat16";
  }
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure()
           << "shape " << actual.sizes() << " != " << expected.sizes();
  }
  const auto reference = expected.detach().to(torch::kFloat32);
  const double scale = std::max(reference.abs().max().item<double>(), 1e-6);
  const double error = (actual.detach().to(torch::kFloat32) - reference).abs().max().item<double>();
  if (!(error <= tolerance * scale)) {
    return ::testing::AssertionFailure() << "largest error " << error << " exceeds " << tolerance
                                         << " × max|expected| = " << tolerance * scale;
  }
  return ::testing::AssertionSuccess();
}

}  // namespace tandem::testing
