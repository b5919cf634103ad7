// The re-ID model around a backbone: global average pooling, a BN neck and a
// bias-free classifier.
//
// Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person
// Re-identification", CVPRW 2019 (BN neck); used by MMT (Ge et al., ICLR
// 2020) and TLlib's ReIdentifier.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace tandem::methods::models {

/// Options of ReIdentifier.
struct ReIdentifierOptions {
  /* implicit */ ReIdentifierOptions(int64_t num_classes) : num_classes_(num_classes) {}
  /// Rows of the classifier (identities, or pseudo identities in MMT).
  TORCH_ARG(int64_t, num_classes);
};

/// What ReIdentifier::forward returns.
struct ReIdOutput {
  /// (N, C) head(neck): in training mode only (undefined in eval).
  torch::Tensor logits;
  /// (N, F) pooled backbone features before the neck; triplet losses use them.
  torch::Tensor features;
  /// (N, F) the BN-neck features; retrieval L2-normalises them.
  torch::Tensor neck;
};

/// backbone → GAP → BatchNorm1d neck (bias frozen at 0, weight 1) → Linear
/// head without bias, weights N(0, 0.001). Weight names follow TLlib:
/// backbone.*, bottleneck.*, head.weight.
class ReIdentifierImpl : public torch::nn::Cloneable<ReIdentifierImpl> {
 public:
  /// `backbone` must be Cloneable and produce (N, F, H, W) or (N, F) with
  /// F = `features_dim`.
  ReIdentifierImpl(torch::nn::AnyModule backbone, int64_t features_dim,
                   ReIdentifierOptions options);
  /// Re-creates neck and head and replaces the backbone by a deep copy (what
  /// Cloneable::clone needs so that a clone never shares it).
  void reset() override;
  /// Cloneable::clone, keeping the neck's bias frozen (torch's clone of a
  /// child module does not keep requires_grad = false).
  std::shared_ptr<torch::nn::Module> clone(
      const std::optional<torch::Device>& device = std::nullopt) const override;
  void pretty_print(std::ostream& stream) const override;

  /// Training: logits, features and neck; eval: features and neck.
  ReIdOutput forward(const torch::Tensor& x);

  /// Replaces the head by a Linear(F, K) whose weight is `centroids` (K × F);
  /// callers pass L2-normalised cluster centres (MMT). The new weight
  /// requires grad exactly when the old one did (so an EMA teacher's head
  /// stays frozen).
  void reset_classifier(const torch::Tensor& centroids);

  int64_t num_classes() const { return head->options.out_features(); }

  ReIdentifierOptions options;
  int64_t features_dim;
  torch::nn::AnyModule backbone;
  torch::nn::BatchNorm1d bottleneck{nullptr};
  torch::nn::Linear head{nullptr};

 private:
  void build(bool clone_backbone);
};
TORCH_MODULE(ReIdentifier);

}  // namespace tandem::methods::models
