// Self-Ensemble losses for domain adaptation.
//
// French, Mackiewicz, Fisher, "Self-ensembling for visual domain adaptation",
// ICLR 2018, https://arxiv.org/abs/1706.05208. The EMA teacher is in
// ema_teacher.h (included here).
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/common.h>
#include <torch/nn/modules/container/any_module_holder.h>
#include <torch/nn/options/loss.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "tandem/methods/ema_teacher.h"

namespace tandem::methods {

/// A per-sample distance between two (N, C) predictions, returning (N,).
using DistanceFn = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>;

/// torch's reduction choice: torch::kNone, torch::kMean or torch::kSum.
using reduction_t = torch::nn::MSELossOptions::reduction_t;

/// Options of ConsistencyLoss.
struct ConsistencyLossOptions {
  /* implicit */ ConsistencyLossOptions(DistanceFn distance_measure)
      : distance_measure_(std::move(distance_measure)) {}
  /// D(y, y_teacher) → (N,).
  TORCH_ARG(DistanceFn, distance_measure);
  /// kNone: (N,) values; kMean: sum / N (N counts masked-out rows too); kSum.
  TORCH_ARG(reduction_t, reduction) = torch::kMean;
};

/// Options of L2ConsistencyLoss.
struct L2ConsistencyLossOptions {
  /// kNone, kMean (default) or kSum, as in ConsistencyLoss.
  TORCH_ARG(reduction_t, reduction) = torch::kMean;
};

/// Options of ClassBalanceLoss.
struct ClassBalanceLossOptions {
  /* implicit */ ClassBalanceLossOptions(int64_t num_classes) : num_classes_(num_classes) {}
  /// Number of classes C (≥ 1).
  TORCH_ARG(int64_t, num_classes);
};

namespace functional {

/// Σ_c (y_c − t_c)² per row: the distance of L2ConsistencyLoss (a sum over
/// classes, not torch's MSELoss mean).
torch::Tensor l2_distance(const torch::Tensor& y, const torch::Tensor& y_teacher);

/// D(y, y_teacher) · mask, reduced. `mask` is (N,) or a scalar (undefined: 1).
torch::Tensor consistency_loss(const torch::Tensor& y, const torch::Tensor& y_teacher,
                               const torch::Tensor& mask, const ConsistencyLossOptions& options);

/// consistency_loss with the L2 distance.
torch::Tensor l2_consistency_loss(const torch::Tensor& y, const torch::Tensor& y_teacher,
                                  const torch::Tensor& mask,
                                  const L2ConsistencyLossOptions& options = {});

/// BCE between the batch-mean prediction ȳ = y.mean(0) and the uniform
/// distribution u = 1/C, averaged over classes; y holds probabilities (N, C).
/// Written out in y's dtype (bfloat16 included) with the semantics of torch's
/// binary_cross_entropy: log terms clamped at −100, gradient
/// (ȳ − u) / max(ȳ(1 − ȳ), 1e-12) / C, and ȳ outside [0, 1] is an error.
torch::Tensor class_balance_loss(const torch::Tensor& y, const ClassBalanceLossOptions& options);

}  // namespace functional

/// Consistency loss D(y, y_teacher) · mask between student and teacher
/// predictions. forward(y (N,C), y_teacher (N,C), mask (N) = 1).
class ConsistencyLossImpl : public torch::nn::Cloneable<ConsistencyLossImpl> {
 public:
  explicit ConsistencyLossImpl(ConsistencyLossOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& y, const torch::Tensor& y_teacher,
                        const torch::Tensor& mask = {});
  ConsistencyLossOptions options;

 protected:
  FORWARD_HAS_DEFAULT_ARGS({2, torch::nn::AnyValue(torch::Tensor())})
};
TORCH_MODULE(ConsistencyLoss);

/// ConsistencyLoss with D = Σ_c (y_c − t_c)². forward(y, y_teacher, mask = 1).
class L2ConsistencyLossImpl : public torch::nn::Cloneable<L2ConsistencyLossImpl> {
 public:
  explicit L2ConsistencyLossImpl(L2ConsistencyLossOptions options = {});
  void reset() override {}
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& y, const torch::Tensor& y_teacher,
                        const torch::Tensor& mask = {});
  L2ConsistencyLossOptions options;

 protected:
  FORWARD_HAS_DEFAULT_ARGS({2, torch::nn::AnyValue(torch::Tensor())})
};
TORCH_MODULE(L2ConsistencyLoss);

/// Penalises class imbalance of the batch-mean prediction. forward(y (N,C)).
class ClassBalanceLossImpl : public torch::nn::Cloneable<ClassBalanceLossImpl> {
 public:
  explicit ClassBalanceLossImpl(ClassBalanceLossOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& y);
  ClassBalanceLossOptions options;
};
TORCH_MODULE(ClassBalanceLoss);

}  // namespace tandem::methods
