#include "tandem/methods/models/weights.h"

#include <torch/torch.h>

#include <sstream>

namespace tandem::methods::models {
namespace {

void describe(std::ostringstream& out, const char* what, const std::vector<std::string>& names) {
  out << ", " << names.size() << " " << what;
  if (names.empty()) return;
  out << " (";
  for (std::size_t i = 0; i < names.size() && i < 3; ++i) out << (i ? ", " : "") << names[i];
  if (names.size() > 3) out << ", ...";
  out << ")";
}

}  // namespace

std::string LoadReport::summary() const {
  std::ostringstream out;
  out << loaded.size() << " loaded";
  describe(out, "missing", missing);
  describe(out, "unexpected", unexpected);
  describe(out, "shape mismatches", mismatched);
  return out.str();
}

LoadReport load_weights(torch::nn::Module& module, const StateDict& state) {
  LoadReport report;
  auto targets = weights_of(module);
  torch::NoGradGuard no_grad;
  for (const auto& item : targets) {
    const auto* source = state.find(item.key());
    if (source == nullptr) {
      report.missing.push_back(item.key());
      continue;
    }
    auto target = item.value();
    if (source->sizes() != target.sizes()) {
      std::ostringstream mismatch;
      mismatch << item.key() << ": " << source->sizes() << " vs " << target.sizes();
      report.mismatched.push_back(mismatch.str());
      continue;
    }
    target.copy_(source->to(target.device(), target.scalar_type()));
    report.loaded.push_back(item.key());
  }
  for (const auto& item : state) {
    if (targets.find(item.key()) == nullptr) report.unexpected.push_back(item.key());
  }
  return report;
}

StateDict weights_of(const torch::nn::Module& module) {
  StateDict weights;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    weights.insert(item.key(), item.value().detach());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    weights.insert(item.key(), item.value().detach());
  }
  return weights;
}

}  // namespace tandem::methods::models
