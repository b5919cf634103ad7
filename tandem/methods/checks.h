// Argument checks shared by the functionals of methods/. Each throws a
// c10::Error whose message starts with the function and names the argument.
#pragma once

#include <initializer_list>
#include <string_view>

#include <torch/types.h>

namespace tandem::methods::detail {

/// `tensor` is defined and has `dim` dimensions.
void check_dim(const torch::Tensor& tensor, int64_t dim, std::string_view function,
               std::string_view argument);

/// `tensor` has a floating-point dtype (float16, bfloat16, float32, float64).
void check_floating(const torch::Tensor& tensor, std::string_view function,
                    std::string_view argument);

/// `tensor` has an integer dtype (class labels).
void check_integral(const torch::Tensor& tensor, std::string_view function,
                    std::string_view argument);

/// Dimension `dim` of `a` and `b` agree.
void check_same_size(const torch::Tensor& a, std::string_view a_name, const torch::Tensor& b,
                     std::string_view b_name, int64_t dim, std::string_view function);

/// `a` and `b` have the same shape.
void check_same_shape(const torch::Tensor& a, std::string_view a_name, const torch::Tensor& b,
                      std::string_view b_name, std::string_view function);

/// `a` and `b` are on one device (labels included: a CPU labels tensor with
/// CUDA features is an error, not a silent copy).
void check_same_device(const torch::Tensor& a, std::string_view a_name, const torch::Tensor& b,
                       std::string_view b_name, std::string_view function);

/// A positive option value (temperature, delta, ...).
void check_positive(double value, std::string_view function, std::string_view option);

}  // namespace tandem::methods::detail
