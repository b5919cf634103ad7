#include "tandem/methods/reid_loss.h"

#include <torch/torch.h>

namespace tandem::methods::functional {

torch::Tensor pairwise_euclidean_distance(const torch::Tensor& x, const torch::Tensor& y) {
  TORCH_CHECK(x.dim() == 2, "pairwise_euclidean_distance: x must be 2-D (m, d), got shape ",
              x.sizes());
  TORCH_CHECK(y.dim() == 2, "pairwise_euclidean_distance: y must be 2-D (n, d), got shape ",
              y.sizes());
  TORCH_CHECK(x.size(1) == y.size(1),
              "pairwise_euclidean_distance: x and y must have the same feature width, got ",
              x.size(1), " and ", y.size(1));
  TORCH_CHECK(x.is_floating_point() && y.is_floating_point(),
              "pairwise_euclidean_distance: x and y must be floating point, got ", x.scalar_type(),
              " and ", y.scalar_type());
  const auto x_sq = x.pow(2).sum(1, /*keepdim=*/true);      // (m, 1)
  const auto y_sq = y.pow(2).sum(1, /*keepdim=*/true).t();  // (1, n)
  auto dist = torch::addmm(x_sq + y_sq, x, y.t(), /*beta=*/1, /*alpha=*/-2);
  return dist.clamp_min(1e-12).sqrt();
}

}  // namespace tandem::methods::functional
