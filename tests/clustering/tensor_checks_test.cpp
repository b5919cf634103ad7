#include "tandem/clustering/tensor_checks.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

namespace tandem::clustering {
namespace {

std::string error_of(const torch::Tensor& t) {
  try {
    check_feature_matrix(t, "features");
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "";
}

TEST(CheckFeatureMatrix, AcceptsAFiniteFloatMatrix) {
  EXPECT_EQ(error_of(torch::randn({3, 2})), "");
}

TEST(CheckFeatureMatrix, NamesTheArgumentAndTheProblem) {
  EXPECT_NE(error_of(torch::randn({3})).find("features must be a 2-D (n, d) tensor"),
            std::string::npos);
  EXPECT_NE(error_of(torch::randn({0, 4})).find("features is empty"), std::string::npos);
  EXPECT_NE(error_of(torch::randn({3, 2}, torch::kFloat64)).find("features must be float32"),
            std::string::npos);
  auto with_nan = torch::randn({3, 2});
  with_nan[1][1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(error_of(with_nan).find("features contains NaN or Inf"), std::string::npos);
  auto with_inf = torch::randn({3, 2});
  with_inf[0][0] = std::numeric_limits<float>::infinity();
  EXPECT_NE(error_of(with_inf).find("NaN or Inf"), std::string::npos);
}

TEST(ToFaissInput, MakesNonContiguousInputContiguous) {
  auto t = torch::randn({4, 6}).t();  // a transposed view
  ASSERT_FALSE(t.is_contiguous());
  auto input = to_faiss_input(t, "features");
  EXPECT_TRUE(input.is_contiguous());
  EXPECT_TRUE(torch::equal(input, t));
}

}  // namespace
}  // namespace tandem::clustering
