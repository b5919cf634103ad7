// Input checks shared by the clustering algorithms, and the one adapter that
// hands tensors to FAISS's raw (n, d, float*) calls.
#pragma once

#include <string_view>

#include <torch/types.h>

namespace tandem::clustering {

/// Checks that `features` is an n × d float32 matrix with n ≥ 1, d ≥ 1 and
/// only finite values; throws c10::Error naming `argument` otherwise.
void check_feature_matrix(const torch::Tensor& features, std::string_view argument);

/// Returns `features` as a contiguous float32 CPU tensor, after the checks
/// above: the form FAISS's (n, d, const float*) calls read.
torch::Tensor to_faiss_input(const torch::Tensor& features, std::string_view argument);

}  // namespace tandem::clustering
