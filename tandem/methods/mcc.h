// Minimum Class Confusion.
//
// Jin, Wang, Long, Wang, "Minimum Class Confusion for Versatile Domain
// Adaptation", ECCV 2020, https://arxiv.org/abs/1912.03699.
#pragma once

#include <ostream>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace tandem::methods {

/// Options of MinimumClassConfusionLoss.
struct MinimumClassConfusionLossOptions {
  /* implicit */ MinimumClassConfusionLossOptions(double temperature) : temperature_(temperature) {}
  /// Softmax temperature T > 0 (1.0 is the plain softmax; the paper uses 2.5).
  TORCH_ARG(double, temperature);
};

namespace functional {

/// MCC of logits g (N, C): p = softmax(g/T); entropy weights
/// w_i = 1 + exp(−H(p_i)) (detached) scaled to average 1; class confusion
/// M = (p ⊙ w)ᵀ p, normalised by M / M.sum(1) broadcast over the last axis as
/// in the original; loss = (Σ M − trace M) / C.
torch::Tensor minimum_class_confusion_loss(const torch::Tensor& logits,
                                           const MinimumClassConfusionLossOptions& options);

}  // namespace functional

/// Minimum Class Confusion loss on target logits. forward(g_t (N, C)) → scalar.
class MinimumClassConfusionLossImpl : public torch::nn::Cloneable<MinimumClassConfusionLossImpl> {
 public:
  explicit MinimumClassConfusionLossImpl(MinimumClassConfusionLossOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& g_t);
  MinimumClassConfusionLossOptions options;
};
TORCH_MODULE(MinimumClassConfusionLoss);

}  // namespace tandem::methods
