#include "tandem/methods/mcc.h"

#include <torch/torch.h>

#include "tandem/methods/checks.h"

namespace tandem::methods {
namespace functional {

torch::Tensor minimum_class_confusion_loss(const torch::Tensor& logits,
                                           const MinimumClassConfusionLossOptions& options) {
  constexpr const char* kFn = "minimum_class_confusion_loss";
  detail::check_dim(logits, 2, kFn, "g_t");
  detail::check_floating(logits, kFn, "g_t");
  detail::check_positive(options.temperature(), kFn, "temperature");
  const int64_t batch = logits.size(0);
  const int64_t num_classes = logits.size(1);
  TORCH_CHECK(batch >= 1 && num_classes >= 1, kFn, ": g_t must have at least one row and one ",
              "class, got shape ", logits.sizes());
  const auto p = torch::softmax(logits / options.temperature(), 1);
  const auto entropy = (-(p * torch::log(p + 1e-5)).sum(1)).detach();
  auto weight = 1 + torch::exp(-entropy);
  weight = (static_cast<double>(batch) * weight / weight.sum()).unsqueeze(1);  // (N, 1)
  auto confusion = (p * weight).t().mm(p);                                     // (C, C)
  // Broadcast over the last axis: M̃[j, k] = M[j, k] / Σ_l M[k, l].
  confusion = confusion / confusion.sum(1);
  return (confusion.sum() - confusion.diagonal().sum()) / static_cast<double>(num_classes);
}

}  // namespace functional

MinimumClassConfusionLossImpl::MinimumClassConfusionLossImpl(
    MinimumClassConfusionLossOptions options_)
    : options(options_) {
  reset();
}

void MinimumClassConfusionLossImpl::reset() {
  detail::check_positive(options.temperature(), "MinimumClassConfusionLoss", "temperature");
}

void MinimumClassConfusionLossImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::MinimumClassConfusionLoss(temperature=" << options.temperature()
         << ")";
}

torch::Tensor MinimumClassConfusionLossImpl::forward(const torch::Tensor& g_t) {
  return functional::minimum_class_confusion_loss(g_t, options);
}

}  // namespace tandem::methods
