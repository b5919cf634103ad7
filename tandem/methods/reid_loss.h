// Re-identification losses of Mutual Mean-Teaching and their building blocks.
//
// Ge, Chen, Li, "Mutual Mean-Teaching: Pseudo Label Refinery for Unsupervised
// Domain Adaptation on Person Re-identification", ICLR 2020,
// https://openreview.net/forum?id=rJlnOhVYPS. Semantics follow the Python
// originals exactly (see docs/methods.md for the edge cases).
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>

#include <c10/util/Optional.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace tandem::methods {

/// Hardest positive and negative of every row of a distance matrix.
struct HardExamples {
  /// (N,) largest distance to a same-label sample (self included).
  torch::Tensor positive_distance;
  /// (N,) smallest distance to a different-label sample.
  torch::Tensor negative_distance;
  /// (N,) int64 column of the hardest positive.
  torch::Tensor positive_index;
  /// (N,) int64 column of the hardest negative.
  torch::Tensor negative_index;
};

/// Options of TripletLoss: loss = mean_i max(0, d(a,p)_i − d(a,n)_i + margin).
struct TripletLossOptions {
  /* implicit */ TripletLossOptions(double margin) : margin_(margin) {}
  /// Margin between the hardest positive and negative distances.
  TORCH_ARG(double, margin);
  /// L2-normalise the features before computing distances.
  TORCH_ARG(bool, normalize_feature) = false;
};

/// Options of SoftTripletLoss (MMT eq. 6 with a margin, eq. 8 without).
struct SoftTripletLossOptions {
  /// None: soft labels from the teacher (features_2); a value m: hard
  /// version, loss = mean(−m·log p(pos) − (1−m)·log p(neg)).
  TORCH_ARG(std::optional<double>, margin) = std::nullopt;
  /// L2-normalise both feature sets before computing distances.
  TORCH_ARG(bool, normalize_feature) = false;
};

/// Options of CrossEntropyLabelSmooth.
struct CrossEntropyLabelSmoothOptions {
  /* implicit */ CrossEntropyLabelSmoothOptions(int64_t num_classes) : num_classes_(num_classes) {}
  /// Number of classes C (the current number of pseudo identities).
  TORCH_ARG(int64_t, num_classes);
  /// Smoothing ε: targets are (1−ε)·one_hot + ε/C.
  TORCH_ARG(double, epsilon) = 0.1;
};

namespace functional {

/// Euclidean distances between the rows of x (m × d) and y (n × d):
/// d_ij = sqrt(max(|x_i|² + |y_j|² − 2 x_i·y_j, 1e-12)), an m × n tensor.
/// The clamp keeps the square root differentiable, so the diagonal of a
/// self-distance matrix is 1e-6, not 0 (as in MMT and TLlib).
torch::Tensor pairwise_euclidean_distance(const torch::Tensor& x, const torch::Tensor& y);

/// For each row i of `dist` (N × N), the hardest positive (largest distance
/// among columns with same_label[i, j] ≠ 0, self included) and the hardest
/// negative (smallest distance among the other columns). Values are the
/// unmasked distances; a row without negatives yields a masked value
/// (≈ 1e7 + d), as in the originals.
HardExamples hard_examples_mining(const torch::Tensor& dist, const torch::Tensor& same_label);

/// Batch-hard triplet loss of `features` (N × D) with int `labels` (N).
torch::Tensor triplet_loss(const torch::Tensor& features, const torch::Tensor& labels,
                           const TripletLossOptions& options);

/// MMT's soft triplet loss. Hard examples are mined on `features_1` only; the
/// soft version gathers the distances of `features_2` (the teacher's) at the
/// student's indices and detaches their softmax. Distances are used as logits
/// directly (no temperature).
torch::Tensor soft_triplet_loss(const torch::Tensor& features_1, const torch::Tensor& features_2,
                                const torch::Tensor& labels,
                                const SoftTripletLossOptions& options = {});

/// MMT's soft cross entropy: mean_i Σ_c −softmax(target)_ic · log_softmax(y)_ic,
/// the target's softmax detached.
torch::Tensor soft_cross_entropy_loss(const torch::Tensor& y_logits,
                                      const torch::Tensor& target_logits);

/// Label-smoothed cross entropy: (−q ⊙ log_softmax(logits)).mean(0).sum()
/// with q = (1−ε)·one_hot(labels) + ε/C.
torch::Tensor cross_entropy_label_smooth(const torch::Tensor& logits, const torch::Tensor& labels,
                                         const CrossEntropyLabelSmoothOptions& options);

}  // namespace functional

using functional::hard_examples_mining;
using functional::pairwise_euclidean_distance;

/// Batch-hard triplet loss (Hermans et al., "In Defense of the Triplet Loss
/// for Person Re-Identification", 2017). forward(features (N,D), labels (N)).
class TripletLossImpl : public torch::nn::Cloneable<TripletLossImpl> {
 public:
  explicit TripletLossImpl(TripletLossOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& features, const torch::Tensor& labels);
  TripletLossOptions options;
};
TORCH_MODULE(TripletLoss);

/// Soft triplet loss of MMT (ICLR 2020, eq. 6 and 8).
/// forward(features_1 (N,D) student, features_2 (N,D) teacher, labels (N)).
class SoftTripletLossImpl : public torch::nn::Cloneable<SoftTripletLossImpl> {
 public:
  explicit SoftTripletLossImpl(SoftTripletLossOptions options = {});
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& features_1, const torch::Tensor& features_2,
                        const torch::Tensor& labels);
  SoftTripletLossOptions options;
};
TORCH_MODULE(SoftTripletLoss);

/// Soft cross entropy of MMT (ICLR 2020, eq. 5): the student's logits against
/// the teacher's softmax. forward(y_logits (N,C), target_logits (N,C)).
class SoftCrossEntropyLossImpl : public torch::nn::Cloneable<SoftCrossEntropyLossImpl> {
 public:
  SoftCrossEntropyLossImpl() = default;
  void reset() override {}
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& y_logits, const torch::Tensor& target_logits);
};
TORCH_MODULE(SoftCrossEntropyLoss);

/// Cross entropy with label smoothing (Szegedy et al., CVPR 2016), as MMT
/// applies it to pseudo labels. forward(logits (N,C), labels (N)).
class CrossEntropyLabelSmoothImpl : public torch::nn::Cloneable<CrossEntropyLabelSmoothImpl> {
 public:
  explicit CrossEntropyLabelSmoothImpl(CrossEntropyLabelSmoothOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& logits, const torch::Tensor& labels);
  CrossEntropyLabelSmoothOptions options;
};
TORCH_MODULE(CrossEntropyLabelSmooth);

}  // namespace tandem::methods
