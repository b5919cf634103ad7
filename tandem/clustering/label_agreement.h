// How well pseudo labels agree with true identities, for diagnosis on
// labelled benchmarks (the trainer never sees the true labels; it only
// reports these figures when the data set has them).
//
// Pair counting (Rand, JASA 1971; Hubert & Arabie, J. Classification 1985):
// over all unordered pairs of non-noise images, precision = pairs in one
// cluster that share the identity / pairs in one cluster, recall = pairs of
// one identity put in one cluster / pairs of one identity (noise images count
// as separated from everything); ARI is the adjusted Rand index over the
// images that are not noise.
#pragma once

#include <cstdint>

#include <torch/types.h>

namespace tandem::clustering {

struct LabelAgreement {
  /// Pair precision and recall, in [0, 1] (1 when there is no pair to count).
  double pair_precision = 1.0;
  double pair_recall = 1.0;
  /// Adjusted Rand index of the non-noise images, in [-1, 1].
  double adjusted_rand = 0.0;
  /// Images labelled noise (-1) and distinct clusters.
  int64_t noise = 0;
  int64_t clusters = 0;
};

/// `predicted` (n, int: cluster id, or -1 for noise) against `truth` (n, int
/// identities, any values). Throws c10::Error for mismatched or non-integer
/// tensors.
LabelAgreement label_agreement(const torch::Tensor& predicted, const torch::Tensor& truth);

}  // namespace tandem::clustering
