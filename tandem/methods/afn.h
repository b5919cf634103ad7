// Adaptive Feature Norm (AFN).
//
// Xu, Li, Yang, Lin, "Larger Norm More Transferable: An Adaptive Feature Norm
// Approach for Unsupervised Domain Adaptation", ICCV 2019,
// https://arxiv.org/abs/1811.07456.
#pragma once

#include <cstdint>
#include <ostream>
#include <tuple>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace tandem::methods {

/// Options of AdaptiveFeatureNorm.
struct AdaptiveFeatureNormOptions {
  /* implicit */ AdaptiveFeatureNormOptions(double delta) : delta_(delta) {}
  /// Positive residual Δ by which each step enlarges the feature norms.
  TORCH_ARG(double, delta);
};

/// Options of AfnBlock (FC → BN → ReLU → L2-preserving dropout).
struct AfnBlockOptions {
  /* implicit */ AfnBlockOptions(int64_t in_features) : in_features_(in_features) {}
  /// Width of the input features.
  TORCH_ARG(int64_t, in_features);
  /// Width of the output (bottleneck) features.
  TORCH_ARG(int64_t, bottleneck_dim) = 1000;
  /// Dropout probability p in [0, 1).
  TORCH_ARG(double, dropout_p) = 0.5;
};

/// Options of AfnImageClassifier.
struct AfnImageClassifierOptions {
  /* implicit */ AfnImageClassifierOptions(int64_t num_classes) : num_classes_(num_classes) {}
  /// Number of classes of the head.
  TORCH_ARG(int64_t, num_classes);
  /// Number of AfnBlocks in the bottleneck (≥ 1).
  TORCH_ARG(int64_t, num_blocks) = 1;
  /// Width of every block.
  TORCH_ARG(int64_t, bottleneck_dim) = 1000;
  /// Dropout probability of every block.
  TORCH_ARG(double, dropout_p) = 0.5;
};

namespace functional {

/// Stepwise AFN loss of features f (N, F): r_i = ‖f_i‖ (detached) + Δ,
/// loss = mean_i (‖f_i‖ − r_i)². The value is always Δ²; the gradient pushes
/// every norm up by Δ.
torch::Tensor adaptive_feature_norm(const torch::Tensor& f,
                                    const AdaptiveFeatureNormOptions& options);

/// AFN's L2-preserving dropout: in training, dropout(x, p) · sqrt(1 − p), so
/// kept units are scaled by 1/sqrt(1 − p) instead of 1/(1 − p); identity in
/// eval.
torch::Tensor l2_preserving_dropout(const torch::Tensor& x, double p, bool training);

// AfnBlock and AfnImageClassifier are blocks of layers and, as in torch, have
// no functional of their own (docs/methods.md, "Style"): AfnBlock's forward
// is l2_preserving_dropout(relu(F::batch_norm(F::linear(x, ...), ...)), p).

}  // namespace functional

/// Stepwise adaptive feature norm loss. forward(f (N, F)) → scalar.
class AdaptiveFeatureNormImpl : public torch::nn::Cloneable<AdaptiveFeatureNormImpl> {
 public:
  explicit AdaptiveFeatureNormImpl(AdaptiveFeatureNormOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& f);
  AdaptiveFeatureNormOptions options;
};
TORCH_MODULE(AdaptiveFeatureNorm);

/// AFN's basic block: Linear → BatchNorm1d → ReLU → Dropout(p), and in
/// training the kept units are rescaled by sqrt(1 − p) so that dropout
/// preserves the L2 norm (net scale 1/sqrt(1 − p)). Eval is FC → BN → ReLU.
/// Children "fc" and "bn" carry the weights (TLlib's names).
class AfnBlockImpl : public torch::nn::Cloneable<AfnBlockImpl> {
 public:
  explicit AfnBlockImpl(AfnBlockOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& x);
  AfnBlockOptions options;
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};
TORCH_MODULE(AfnBlock);

/// The bottleneck of AfnImageClassifier: `num_blocks` AfnBlocks applied in
/// order, named as in TLlib: the first nested one level deeper ("0.0.*"),
/// the others "1.*", "2.*", ...
class AfnBottleneckImpl : public torch::nn::Cloneable<AfnBottleneckImpl> {
 public:
  AfnBottleneckImpl(int64_t in_features, AfnImageClassifierOptions options);
  void reset() override;
  torch::Tensor forward(torch::Tensor x);
  int64_t in_features;
  AfnImageClassifierOptions options;
  /// Child "0": a Sequential holding the first block.
  torch::nn::Sequential first{nullptr};
  /// Children "1", "2", ...: the further blocks.
  std::vector<AfnBlock> rest;
};
TORCH_MODULE(AfnBottleneck);

/// AFN's image classifier: backbone → global average pooling (when the
/// backbone gives (N, F, H, W)) → bottleneck of `num_blocks` AfnBlocks →
/// Linear head. forward(x) returns (logits, bottleneck features) in both
/// modes; the features are what AdaptiveFeatureNorm is applied to.
/// Weight names follow TLlib: backbone.*, bottleneck.0.0.* (first block),
/// bottleneck.i.* (further blocks), head.*.
class AfnImageClassifierImpl : public torch::nn::Cloneable<AfnImageClassifierImpl> {
 public:
  /// `backbone` must be Cloneable (so the classifier and its EMA teacher get
  /// their own copy) and produce (N, F, H, W) or (N, F) with F =
  /// `backbone_features`.
  AfnImageClassifierImpl(torch::nn::AnyModule backbone, int64_t backbone_features,
                         AfnImageClassifierOptions options);
  /// Re-creates the bottleneck and head and replaces the backbone by a deep
  /// copy (what Cloneable::clone needs so that a clone never shares it).
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  std::tuple<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x);

  AfnImageClassifierOptions options;
  int64_t backbone_features;
  torch::nn::AnyModule backbone;
  AfnBottleneck bottleneck{nullptr};
  torch::nn::Linear head{nullptr};

 private:
  void build(bool clone_backbone);
};
TORCH_MODULE(AfnImageClassifier);

}  // namespace tandem::methods
