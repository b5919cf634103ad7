#include "tandem/methods/checks.h"

#include <c10/util/Exception.h>

namespace tandem::methods::detail {

void check_dim(const torch::Tensor& tensor, int64_t dim, std::string_view function,
               std::string_view argument) {
  TORCH_CHECK(tensor.defined(), function, ": ", argument, " is an undefined tensor");
  TORCH_CHECK(tensor.dim() == dim, function, ": ", argument, " must have ", dim,
              " dimensions, got shape ", tensor.sizes());
}

void check_floating(const torch::Tensor& tensor, std::string_view function,
                    std::string_view argument) {
  TORCH_CHECK(tensor.is_floating_point(), function, ": ", argument,
              " must be a floating-point tensor, got ", tensor.scalar_type());
}

void check_integral(const torch::Tensor& tensor, std::string_view function,
                    std::string_view argument) {
  TORCH_CHECK(c10::isIntegralType(tensor.scalar_type(), /*includeBool=*/false), function, ": ",
              argument, " must be an integer tensor of class labels, got ", tensor.scalar_type());
}

void check_same_size(const torch::Tensor& a, std::string_view a_name, const torch::Tensor& b,
                     std::string_view b_name, int64_t dim, std::string_view function) {
  TORCH_CHECK(a.size(dim) == b.size(dim), function, ": ", a_name, " and ", b_name,
              " must agree in dimension ", dim, ", got shapes ", a.sizes(), " and ", b.sizes());
}

void check_same_shape(const torch::Tensor& a, std::string_view a_name, const torch::Tensor& b,
                      std::string_view b_name, std::string_view function) {
  TORCH_CHECK(a.sizes() == b.sizes(), function, ": ", a_name, " and ", b_name,
              " must have the same shape, got ", a.sizes(), " and ", b.sizes());
}

void check_same_device(const torch::Tensor& a, std::string_view a_name, const torch::Tensor& b,
                       std::string_view b_name, std::string_view function) {
  TORCH_CHECK(a.defined(), function, ": ", a_name, " is an undefined tensor");
  TORCH_CHECK(b.defined(), function, ": ", b_name, " is an undefined tensor");
  TORCH_CHECK(a.device() == b.device(), function, ": ", b_name, " is on ", b.device(), " but ",
              a_name, " is on ", a.device(), "; every tensor must be on one device");
}

void check_positive(double value, std::string_view function, std::string_view option) {
  TORCH_CHECK(value > 0, function, ": ", option, " must be positive, got ", value);
}

}  // namespace tandem::methods::detail
