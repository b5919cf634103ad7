#include "tandem/clustering/tensor_checks.h"

#include <torch/torch.h>

namespace tandem::clustering {

void check_feature_matrix(const torch::Tensor& features, std::string_view argument) {
  TORCH_CHECK(features.defined(), argument, " is an undefined tensor");
  TORCH_CHECK(features.dim() == 2, argument, " must be a 2-D (n, d) tensor, got shape ",
              features.sizes());
  TORCH_CHECK(features.size(0) > 0, argument, " is empty: it has no rows (shape ", features.sizes(),
              ")");
  TORCH_CHECK(features.size(1) > 0, argument, " has zero feature width (shape ", features.sizes(),
              ")");
  TORCH_CHECK(features.scalar_type() == torch::kFloat32, argument, " must be float32, got ",
              features.scalar_type());
  TORCH_CHECK(torch::isfinite(features).all().item<bool>(), argument,
              " contains NaN or Inf values");
}

torch::Tensor to_faiss_input(const torch::Tensor& features, std::string_view argument) {
  check_feature_matrix(features, argument);
  return features.to(torch::kCPU).contiguous();
}

}  // namespace tandem::clustering
