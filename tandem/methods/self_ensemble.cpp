#include "tandem/methods/self_ensemble.h"

#include <torch/torch.h>

#include "tandem/methods/checks.h"

namespace tandem::methods {
namespace functional {
namespace {

void check_prediction_pair(const torch::Tensor& y, const torch::Tensor& y_teacher,
                           const char* function) {
  detail::check_dim(y, 2, function, "y");
  detail::check_same_device(y, "y", y_teacher, "y_teacher", function);
  detail::check_floating(y, function, "y");
  detail::check_floating(y_teacher, function, "y_teacher");
  detail::check_same_shape(y, "y", y_teacher, "y_teacher", function);
}

// torch::binary_cross_entropy(p, t) without reduction, written out so that it
// runs in the input dtype on every device (written when LibTorch, 1.13 then,
// had no CPU BFloat16 kernel for it). Same semantics as torch's kernel (aten/native/Loss.cpp):
//   forward  −(t·max(log p, −100) + (1 − t)·max(log1p(−p), −100))
//   backward g·(p − t) / max(p·(1 − p), 1e-12)
// torch's backward is not the autograd of its forward: where p is exactly 0
// or 1 it gives a finite (huge) gradient, where autograd of the clamped logs
// would give 0·∞ = NaN. Hence a custom autograd function. No gradient flows
// to t (the uniform target is a constant here).
class ClampedBinaryCrossEntropy : public torch::autograd::Function<ClampedBinaryCrossEntropy> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor p,
                               torch::Tensor t) {
    ctx->save_for_backward({p, t});
    return -(t * torch::log(p).clamp_min(kLogClamp) +
             (1 - t) * torch::log1p(-p).clamp_min(kLogClamp));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& p = saved[0];
    const auto& t = saved[1];
    return {grad_outputs[0] * (p - t) / (p * (1 - p)).clamp_min(kGradEpsilon), torch::Tensor()};
  }

 private:
  static constexpr double kLogClamp = -100.0;
  static constexpr double kGradEpsilon = 1e-12;  // torch's EPSILON in the backward
};

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
  if (mask.defined()) detail::check_same_device(y, "y", mask, "mask", kFn);
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
  // torch's kernel rejects inputs outside [0, 1] (NaN included); so do we, on
  // CPU with a message, on a GPU with an asynchronous device assert (no sync).
  const auto in_range = ((mean_prediction >= 0) & (mean_prediction <= 1)).all();
  if (in_range.is_cpu()) {
    TORCH_CHECK(in_range.item<bool>(), kFn,
                ": y must hold probabilities in [0, 1]; its batch mean has values in [",
                mean_prediction.min().item<double>(), ", ", mean_prediction.max().item<double>(),
                "]");
  } else {
    torch::_assert_async(in_range);
  }
  const auto uniform =
      torch::full_like(mean_prediction, 1.0 / static_cast<double>(options.num_classes()));
  return ClampedBinaryCrossEntropy::apply(mean_prediction, uniform).mean();
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
