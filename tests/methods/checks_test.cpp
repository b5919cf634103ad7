#include "tandem/methods/checks.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/golden.h"

namespace tandem::methods::detail {
namespace {

using testing::error_message;

TEST(Checks, MessagesNameTheFunctionAndTheArgument) {
  EXPECT_EQ(error_message([] { check_dim(torch::zeros({2}), 2, "f", "x"); }),
            "f: x must have 2 dimensions, got shape [2]");
  EXPECT_EQ(error_message([] { check_dim(torch::Tensor(), 2, "f", "x"); }),
            "f: x is an undefined tensor");
  EXPECT_EQ(error_message([] { check_floating(torch::zeros({2}, torch::kInt), "f", "y"); }),
            "f: y must be a floating-point tensor, got Int");
  EXPECT_EQ(error_message([] { check_integral(torch::zeros({2}), "f", "labels"); }),
            "f: labels must be an integer tensor of class labels, got Float");
  EXPECT_EQ(error_message([] {
              check_same_size(torch::zeros({2, 3}), "a", torch::zeros({4, 3}), "b", 0, "f");
            }),
            "f: a and b must agree in dimension 0, got shapes [2, 3] and [4, 3]");
  EXPECT_EQ(error_message([] {
              check_same_device(torch::zeros({2}), "a", torch::zeros({2}, torch::kMeta), "b", "f");
            }),
            "f: b is on meta but a is on cpu; every tensor must be on one device");
  EXPECT_EQ(error_message(
                [] { check_same_device(torch::zeros({2}), "a", torch::Tensor(), "labels", "f"); }),
            "f: labels is an undefined tensor");
  EXPECT_EQ(error_message([] { check_positive(-2.0, "f", "delta"); }),
            "f: delta must be positive, got -2");
}

TEST(Checks, AcceptValidInput) {
  EXPECT_EQ(error_message([] {
              check_dim(torch::zeros({2, 3}), 2, "f", "x");
              check_floating(torch::zeros({2}, torch::kBFloat16), "f", "x");
              check_integral(torch::zeros({2}, torch::kLong), "f", "labels");
              check_same_shape(torch::zeros({2, 3}), "a", torch::ones({2, 3}), "b", "f");
              check_same_device(torch::zeros({2}), "a", torch::zeros({3}, torch::kLong), "b", "f");
              check_same_device(torch::zeros({2}, torch::kMeta), "a",
                                torch::zeros({3}, torch::kMeta), "b", "f");
              check_positive(0.1, "f", "t");
            }),
            "");
}

}  // namespace
}  // namespace tandem::methods::detail
