// Golden cases of the files in tests/golden/ (see tests/golden/README.md
// for the schema and the generator), and tensor comparison helpers.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <optional>
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
  /// The keys of inputs(), in file order.
  std::vector<std::string> input_names() const;
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
  std::optional<double> option_optional_double(const std::string& key) const;

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

/// Named inputs of one case, on the device under test.
using Leaves = std::map<std::string, torch::Tensor>;

/// Every input of `golden` on `device`: those named in `float_inputs` as
/// leaves in `dtype` that require grad, the others (labels, masks, weights)
/// as copies in their own dtype.
Leaves golden_inputs(const GoldenCase& golden, const std::vector<std::string>& float_inputs,
                     torch::ScalarType dtype, torch::Device device);

namespace detail {
/// check_golden_case notes the device of every case it runs here, for
/// golden_helper_runs_on.
void note_golden_device(torch::Device device);
/// Starts (emptying) or stops the record of those devices; stop returns it.
void start_golden_device_record();
std::vector<torch::Device> stop_golden_device_record();
}  // namespace detail

/// Runs `fn` on the case's inputs (golden_inputs: every one, leaves or not,
/// on `device`), compares its result with outputs["output"], back-propagates
/// the case's upstream gradient (on `device`) and compares every reference
/// gradient (an input the result does not depend on must have a zero
/// reference gradient). Results and gradients must come back on `device`;
/// they are compared on the CPU. `fn` must take every tensor it passes to the
/// function under test from its argument, never from `golden` (which holds
/// CPU tensors).
///
/// The meta device (tensors without values) tests the device plumbing of the
/// `_CUDA` tests on a CPU host: a tensor left on the CPU makes the function
/// under test throw (the device checks of methods/ run first), and only
/// dtypes, devices and shapes are compared. LibTorch has C++ meta kernels for
/// only some operators (Python registers the rest); where the function
/// reaches one without (c10::NotImplementedError), it has passed its argument
/// checks and the case ends there.
template <typename Fn>
void check_golden_case(const GoldenCase& golden, const std::vector<std::string>& float_inputs,
                       Fn&& fn, torch::ScalarType dtype = torch::kFloat64, double rtol = 1e-5,
                       double atol = 1e-8, torch::Device device = torch::kCPU) {
  detail::note_golden_device(device);
  Leaves inputs = golden_inputs(golden, float_inputs, dtype, device);
  const auto compare = [&](const torch::Tensor& actual, const torch::Tensor& expected,
                           const std::string& what) {
    EXPECT_EQ(actual.device(), device) << golden.label() << ": " << what << " is not on " << device;
    if (device.is_meta()) {
      EXPECT_EQ(actual.sizes(), expected.sizes()) << golden.label() << " " << what;
    } else {
      EXPECT_TRUE(tensors_close(actual.detach().cpu(), expected, rtol, atol))
          << golden.label() << " " << what;
    }
  };
  try {
    torch::Tensor result = fn(inputs);
    ASSERT_TRUE(result.defined()) << golden.label() << ": no result";
    EXPECT_EQ(result.scalar_type(), dtype) << golden.label() << ": dtype changed";
    compare(result, golden.output(), "output");
    if (!result.requires_grad()) return;
    result.backward(golden.upstream().to(device, dtype));
    for (const auto& name : float_inputs) {
      if (!golden.has_grad(name)) continue;
      auto grad = inputs.at(name).grad();
      if (!grad.defined()) grad = torch::zeros_like(inputs.at(name));
      compare(grad, golden.grad(name), "gradient of " + name);
    }
  } catch (const c10::NotImplementedError&) {
    if (!device.is_meta()) throw;
  }
}

/// Runs a test's golden helper, `helper(device)`, and checks that it ran at
/// least one case and every case on `device`, i.e. that it handed its device
/// to check_golden_case. On the meta device this tests the plumbing of a
/// `_CUDA` test on a CPU host.
template <typename Helper>
::testing::AssertionResult golden_helper_runs_on(Helper&& helper, torch::Device device) {
  detail::start_golden_device_record();
  try {
    helper(device);
  } catch (...) {
    detail::stop_golden_device_record();
    throw;
  }
  const auto devices = detail::stop_golden_device_record();
  if (devices.empty()) return ::testing::AssertionFailure() << "the helper ran no golden case";
  for (size_t i = 0; i < devices.size(); ++i) {
    if (devices[i] != device) {
      return ::testing::AssertionFailure()
             << "golden case " << i << " ran on " << devices[i] << ", not on " << device;
    }
  }
  return ::testing::AssertionSuccess() << devices.size() << " golden cases on " << device;
}

/// Skips the calling test, saying which and why, unless a CUDA device is
/// visible. The `_CUDA` tests carry the ctest label `cuda`.
#define TANDEM_SKIP_WITHOUT_CUDA()                                                        \
  do {                                                                                    \
    if (!torch::cuda::is_available()) {                                                   \
      const auto* tandem_test_ = ::testing::UnitTest::GetInstance()->current_test_info(); \
      GTEST_SKIP() << "no CUDA device visible (torch::cuda::is_available() is false): "   \
                   << tandem_test_->test_suite_name() << "." << tandem_test_->name()      \
                   << " runs only on a GPU host (`ctest -L cuda`)";                       \
    }                                                                                     \
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
