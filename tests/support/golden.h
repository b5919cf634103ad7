// Golden cases of the files in tests/golden/ (see tests/golden/README.md
// for the schema and the generator), and tensor comparison helpers.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "tandem/methods/serialization.h"

namespace tandem::testing {

/// One reference case: options, inputs, reference outputs and gradients.
class GoldenCase {
 public:
  GoldenCase(std::string group, c10::impl::GenericDict entry);

  const std::string& name() const { return name_; }
  /// "group/name", for failure messages.
  std::string label() const { return group_ + "/" + name_; }

  torch::Tensor input(const std::string& key) const;
  torch::Tensor output(const std::string& key = "output") const;
  bool has_grad(const std::string& key) const;
  torch::Tensor grad(const std::string& key) const;
  torch::Tensor upstream() const;

  bool has_option(const std::string& key) const;
  c10::IValue option(const std::string& key) const;
  double option_double(const std::string& key) const;
  int64_t option_int(const std::string& key) const;
  bool option_bool(const std::string& key) const;
  std::string option_string(const std::string& key) const;
  /// None → nullopt.
  c10::optional<double> option_optional_double(const std::string& key) const;

 private:
  static torch::Tensor tensor_in(const c10::impl::GenericDict& dict, const std::string& key,
                                 const std::string& where);
  std::string group_;
  std::string name_;
  c10::impl::GenericDict options_;
  c10::impl::GenericDict inputs_;
  c10::impl::GenericDict outputs_;
  c10::impl::GenericDict grads_;
  torch::Tensor upstream_;
};

/// Every case of `group` in tests/golden/`file`; fails the calling test when
/// the group is missing. Cases without gradients (clustering) have empty
/// grads and an undefined upstream.
std::vector<GoldenCase> golden_cases(const std::string& group,
                                     const std::string& file = "methods_golden.pt");

/// |actual − expected| ≤ atol + rtol·|expected| elementwise, shapes equal;
/// a failure names `what` and the largest error.
::testing::AssertionResult tensors_close(const torch::Tensor& actual, const torch::Tensor& expected,
                                         double rtol = 1e-5, double atol = 1e-8);

/// A leaf copy of `t` that requires grad (for floating tensors).
torch::Tensor leaf(const torch::Tensor& t, torch::ScalarType dtype = torch::kFloat64);

}  // namespace tandem::testing

namespace tandem::testing {

/// Named leaf inputs of one case.
using Leaves = std::map<std::string, torch::Tensor>;

/// Runs `fn` on leaf copies (in `dtype`) of the case's float inputs listed in
/// `float_inputs`, compares its result with outputs["output"], back-propagates
/// the case's upstream gradient and compares every reference gradient (an
/// input the result does not depend on must have a zero reference gradient).
/// `device` runs the same case on a GPU (the `_CUDA` tests).
template <typename Fn>
void check_golden_case(const GoldenCase& golden, const std::vector<std::string>& float_inputs,
                       Fn&& fn, torch::ScalarType dtype = torch::kFloat64, double rtol = 1e-5,
                       double atol = 1e-8, torch::Device device = torch::kCPU) {
  Leaves leaves;
  for (const auto& name : float_inputs) {
    leaves[name] = golden.input(name).to(device, dtype).detach().clone().set_requires_grad(true);
  }
  torch::Tensor result = fn(leaves);
  EXPECT_EQ(result.scalar_type(), dtype) << golden.label() << ": dtype changed";
  EXPECT_EQ(result.device(), device) << golden.label() << ": device changed";
  EXPECT_TRUE(tensors_close(result, golden.output(), rtol, atol)) << golden.label() << " output";
  if (!result.requires_grad()) return;
  result.backward(golden.upstream().to(device, dtype));
  for (const auto& name : float_inputs) {
    if (!golden.has_grad(name)) continue;
    auto grad = leaves[name].grad();
    if (!grad.defined()) grad = torch::zeros_like(leaves[name]);
    EXPECT_TRUE(tensors_close(grad, golden.grad(name), rtol, atol))
        << golden.label() << " gradient of " << name;
  }
}

/// Skips the calling test unless a CUDA device is present.
#define TANDEM_SKIP_WITHOUT_CUDA()                                              \
  do {                                                                          \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device present"; \
  } while (false)

/// The message of the c10::Error `body` throws ("" if it does not throw).
template <typename Body>
std::string error_message(Body&& body) {
  try {
    body();
  } catch (const c10::Error& error) {
    return error.what_without_backtrace();
  }
  return "";
}

}  // namespace tandem::testing
