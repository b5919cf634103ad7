// Re-identification losses of Mutual Mean-Teaching and their building blocks.
//
// Ge, Chen, Li, "Mutual Mean-Teaching: Pseudo Label Refinery for Unsupervised
// Domain Adaptation on Person Re-identification", ICLR 2020,
// https://openreview.net/forum?id=rJlnOhVYPS
#pragma once

#include <torch/types.h>

namespace tandem::methods::functional {

/// Euclidean distances between the rows of x (m × d) and y (n × d):
/// d_ij = sqrt(max(|x_i|² + |y_j|² − 2 x_i·y_j, 1e-12)), an m × n tensor.
/// The clamp keeps the square root differentiable, so the diagonal of a
/// self-distance matrix is 1e-6, not 0 (as in MMT and TLlib).
torch::Tensor pairwise_euclidean_distance(const torch::Tensor& x, const torch::Tensor& y);

}  // namespace tandem::methods::functional

namespace tandem::methods {
using functional::pairwise_euclidean_distance;
}  // namespace tandem::methods
