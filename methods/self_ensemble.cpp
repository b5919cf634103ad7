#include "tandem/methods/self_ensemble.h"

#include <torch/torch.h>

#include "tandem/methods/checks.h"

namespace tandem::methods {
namespace functional {
namespace {

void check_prediction_pair(const torch::Tensor& y, const torch::Tensor& y_teacher,
                           const char* function) {
  detail::check_dim(y, 2, function, "y");
  detail::check_floating(y, function, "y");
  detail::check_floating(y_teacher, function, "y_teacher");
  detail::check_same_shape(y, "y", y_teacher, "y_teacher", function);
}

torch::Tensor reduce(const torch::Tensor& values, const reduction_t& reduction) {
  switch (torch::enumtype::reduction_get_enum(reduction)) {
    case at::Reduction::None: return values;
    case at::Reduction::Sum: return values.sum();
    default: return values.mean();
  }
}

}  // namespace

torch::Tensor l2_distance(const torch::Tensor& y, const torch::Tensor& y_teacher) {
  check_prediction_pair(y, y_teacher, "l2_distance");
  return (y - y_teacher).pow(2).sum(1);
}

torch::Tensor consistency_loss(const torch::Tensor& y, const torch::Tensor& y_teacher,
                               const torch::Tensor& mask, const ConsistencyLossOptions& options) {
  constexpr const char* kFn = "consistency_loss";
  check_prediction_pair(y, y_teacher, kFn);
  TORCH_CHECK(static_cast<bool>(options.distance_measure()), kFn, ": distance_measure is empty");
  auto distance = options.distance_measure()(y, y_teacher);
  TORCH_CHECK(distance.defined() && distance.dim() == 1 && distance.size(0) == y.size(0), kFn,
              ": distance_measure must return a (N,) = (", y.size(0), ",) tensor, got ",
              distance.defined() ? distance.sizes() : c10::IntArrayRef{});
  if (mask.defined()) {
    TORCH_CHECK(mask.dim() == 0 || (mask.dim() == 1 && mask.size(0) == y.size(0)), kFn,
                ": mask must be (N,) = (", y.size(0), ",) or a scalar, got shape ", mask.sizes());
    distance = distance * mask.to(distance.scalar_type());
  }
  return reduce(distance, options.reduction());
}

torch::Tensor l2_consistency_loss(const torch::Tensor& y, const torch::Tensor& y_teacher,
                                  const torch::Tensor& mask,
                                  const L2ConsistencyLossOptions& options) {
  return consistency_loss(y, y_teacher, mask,
                          ConsistencyLossOptions(l2_distance).reduction(options.reduction()));
}

torch::Tensor class_balance_loss(const torch::Tensor& y, const ClassBalanceLossOptions& options) {
  constexpr const char* kFn = "class_balance_loss";
  detail::check_dim(y, 2, kFn, "y");
  detail::check_floating(y, kFn, "y");
  TORCH_CHECK(options.num_classes() >= 1, kFn, ": num_classes must be positive, got ",
              options.num_classes());
  TORCH_CHECK(y.size(1) == options.num_classes(), kFn, ": y has ", y.size(1),
              " classes but num_classes is ", options.num_classes());
  TORCH_CHECK(y.size(0) > 0, kFn, ": y is an empty batch");
  const auto mean_prediction = y.mean(0);
  const auto uniform =
      torch::full_like(mean_prediction, 1.0 / static_cast<double>(options.num_classes()));
  return torch::binary_cross_entropy(mean_prediction, uniform);
}

}  // namespace functional

ConsistencyLossImpl::ConsistencyLossImpl(ConsistencyLossOptions options_)
    : options(std::move(options_)) {
  reset();
}

void ConsistencyLossImpl::reset() {
  TORCH_CHECK(static_cast<bool>(options.distance_measure()),
              "ConsistencyLoss: distance_measure is empty");
}

void ConsistencyLossImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::ConsistencyLoss(reduction="
         << torch::enumtype::get_enum_name(options.reduction()) << ")";
}

torch::Tensor ConsistencyLossImpl::forward(const torch::Tensor& y, const torch::Tensor& y_teacher,
                                           const torch::Tensor& mask) {
  return functional::consistency_loss(y, y_teacher, mask, options);
}

L2ConsistencyLossImpl::L2ConsistencyLossImpl(L2ConsistencyLossOptions options_)
    : options(options_) {}

void L2ConsistencyLossImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::L2ConsistencyLoss(reduction="
         << torch::enumtype::get_enum_name(options.reduction()) << ")";
}

torch::Tensor L2ConsistencyLossImpl::forward(const torch::Tensor& y, const torch::Tensor& y_teacher,
                                             const torch::Tensor& mask) {
  return functional::l2_consistency_loss(y, y_teacher, mask, options);
}

ClassBalanceLossImpl::ClassBalanceLossImpl(ClassBalanceLossOptions options_) : options(options_) {
  reset();
}

void ClassBalanceLossImpl::reset() {
  TORCH_CHECK(options.num_classes() >= 1, "ClassBalanceLoss: num_classes must be positive, got ",
              options.num_classes());
}

void ClassBalanceLossImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::ClassBalanceLoss(num_classes=" << options.num_classes() << ")";
}

torch::Tensor ClassBalanceLossImpl::forward(const torch::Tensor& y) {
  return functional::class_balance_loss(y, options);
}

}  // namespace tandem::methods
