#include "support/golden.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

namespace tandem::testing {
namespace {

// Each golden file is read once per test binary.
const c10::impl::GenericDict& golden_file(const std::string& file) {
  static std::mutex mutex;
  static std::map<std::string, c10::impl::GenericDict> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = loaded.find(file);
  if (it == loaded.end()) {
    const auto data =
        methods::load_torch_file(std::string(TANDEM_SOURCE_DIR) + "/tests/golden/" + file);
    it = loaded.emplace(file, data.toGenericDict()).first;
  }
  return it->second;
}

c10::impl::GenericDict dict_in(const c10::impl::GenericDict& parent, const std::string& key,
                               const std::string& where) {
  auto it = parent.find(key);
  TORCH_CHECK(it != parent.end(), where, ": no '", key, "' entry");
  return it->value().toGenericDict();
}

}  // namespace

GoldenCase::GoldenCase(std::string group, c10::impl::GenericDict entry)
    : group_(std::move(group)),
      name_(entry.at("name").toStringRef()),
      options_(dict_in(entry, "options", group_)),
      inputs_(dict_in(entry, "inputs", group_)),
      outputs_(dict_in(entry, "outputs", group_)),
      grads_(entry.contains("grads")
                 ? dict_in(entry, "grads", group_)
                 : c10::impl::GenericDict(c10::StringType::get(), c10::TensorType::get())),
      upstream_(entry.contains("upstream") ? entry.at("upstream").toTensor() : torch::Tensor()) {}

torch::Tensor GoldenCase::tensor_in(const c10::impl::GenericDict& dict, const std::string& key,
                                    const std::string& where) {
  auto it = dict.find(key);
  TORCH_CHECK(it != dict.end(), where, ": no '", key, "'");
  return it->value().toTensor();
}

torch::Tensor GoldenCase::input(const std::string& key) const {
  return tensor_in(inputs_, key, label() + " inputs");
}
torch::Tensor GoldenCase::output(const std::string& key) const {
  return tensor_in(outputs_, key, label() + " outputs");
}
bool GoldenCase::has_grad(const std::string& key) const {
  return grads_.contains(key);
}
torch::Tensor GoldenCase::grad(const std::string& key) const {
  return tensor_in(grads_, key, label() + " grads");
}
torch::Tensor GoldenCase::upstream() const {
  return upstream_;
}

bool GoldenCase::has_option(const std::string& key) const {
  return options_.contains(key);
}
c10::IValue GoldenCase::option(const std::string& key) const {
  auto it = options_.find(key);
  TORCH_CHECK(it != options_.end(), label(), " options: no '", key, "'");
  return it->value();
}
double GoldenCase::option_double(const std::string& key) const {
  const auto value = option(key);
  return value.isInt() ? static_cast<double>(value.toInt()) : value.toDouble();
}
int64_t GoldenCase::option_int(const std::string& key) const {
  return option(key).toInt();
}
bool GoldenCase::option_bool(const std::string& key) const {
  return option(key).toBool();
}
std::string GoldenCase::option_string(const std::string& key) const {
  return option(key).toStringRef();
}
std::optional<double> GoldenCase::option_optional_double(const std::string& key) const {
  const auto value = option(key);
  if (value.isNone()) return std::nullopt;
  return value.isInt() ? static_cast<double>(value.toInt()) : value.toDouble();
}

std::vector<GoldenCase> golden_cases(const std::string& group, const std::string& file_name) {
  std::vector<GoldenCase> cases;
  const auto& file = golden_file(file_name);
  auto it = file.find(group);
  EXPECT_NE(it, file.end()) << "golden group '" << group << "' is missing from " << file_name;
  if (it == file.end()) return cases;
  for (const auto& entry : it->value().toList()) {
    cases.emplace_back(group, entry.get().toGenericDict());
  }
  EXPECT_FALSE(cases.empty()) << "golden group '" << group << "' has no cases";
  return cases;
}

::testing::AssertionResult tensors_close(const torch::Tensor& actual, const torch::Tensor& expected,
                                         double rtol, double atol) {
  if (!actual.defined()) return ::testing::AssertionFailure() << "actual is undefined";
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure()
           << "shape " << actual.sizes() << " differs from expected " << expected.sizes();
  }
  const auto a = actual.detach().to(torch::kCPU, torch::kFloat64);
  const auto e = expected.detach().to(torch::kCPU, torch::kFloat64);
  if (a.numel() == 0) return ::testing::AssertionSuccess();
  const auto error = (a - e).abs();
  const auto allowed = atol + rtol * e.abs();
  if ((error <= allowed).all().item<bool>()) return ::testing::AssertionSuccess();
  const auto excess = (error - allowed).flatten();
  const int64_t worst = excess.argmax().item<int64_t>();
  return ::testing::AssertionFailure()
         << "worst element " << worst << ": actual " << a.flatten()[worst].item<double>()
         << " vs expected " << e.flatten()[worst].item<double>() << " (rtol " << rtol << ", atol "
         << atol << ")";
}

torch::Tensor leaf(const torch::Tensor& t, torch::ScalarType dtype) {
  return t.detach().to(dtype).clone().set_requires_grad(true);
}

std::vector<std::string> GoldenCase::input_names() const {
  std::vector<std::string> names;
  for (const auto& entry : inputs_) names.push_back(entry.key().toStringRef());
  return names;
}

Leaves golden_inputs(const GoldenCase& golden, const std::vector<std::string>& float_inputs,
                     torch::ScalarType dtype, torch::Device device) {
  for (const auto& name : float_inputs) golden.input(name);  // fails naming a missing one
  Leaves inputs;
  for (const auto& name : golden.input_names()) {
    const auto tensor = golden.input(name).to(device);
    const bool is_leaf =
        std::find(float_inputs.begin(), float_inputs.end(), name) != float_inputs.end();
    inputs[name] = is_leaf ? leaf(tensor, dtype) : tensor.clone();
  }
  return inputs;
}

namespace detail {
namespace {
// The record of golden_helper_runs_on, while one runs (tests run on one thread).
std::optional<std::vector<torch::Device>> device_record;
}  // namespace

void note_golden_device(torch::Device device) {
  if (device_record) device_record->push_back(device);
}

void start_golden_device_record() {
  device_record.emplace();
}

std::vector<torch::Device> stop_golden_device_record() {
  auto devices = std::move(device_record).value_or(std::vector<torch::Device>{});
  device_record.reset();
  return devices;
}

}  // namespace detail
}  // namespace tandem::testing
