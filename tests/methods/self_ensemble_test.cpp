#include "tandem/methods/self_ensemble.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/golden.h"

namespace tandem::methods {
namespace {

using testing::check_golden_case;
using testing::error_message;
using testing::golden_cases;
using testing::Leaves;

constexpr double kRtol = 1e-5;
constexpr double kAtol = 1e-12;

reduction_t reduction_named(const std::string& name) {
  if (name == "none") return torch::kNone;
  if (name == "sum") return torch::kSum;
  return torch::kMean;
}

torch::Tensor l1_distance(const torch::Tensor& y, const torch::Tensor& t) {
  return (y - t).abs().sum(1);
}

void consistency_golden(torch::Device device) {
  for (const auto& golden : golden_cases("consistency_loss")) {
    const DistanceFn distance = golden.option_string("distance") == "l1" ? DistanceFn(l1_distance)
                                                                         : functional::l2_distance;
    ConsistencyLoss loss(ConsistencyLossOptions(distance).reduction(
        reduction_named(golden.option_string("reduction"))));
    check_golden_case(
        golden, {"y", "y_teacher"},
        [&](Leaves& in) { return loss(in["y"], in["y_teacher"], golden.input("mask").to(device)); },
        torch::kFloat64, kRtol, kAtol, device);
  }
}

TEST(ConsistencyLoss, MatchesGolden) {
  consistency_golden(torch::kCPU);
}

void l2_consistency_golden(torch::Device device) {
  for (const auto& golden : golden_cases("l2_consistency_loss")) {
    L2ConsistencyLoss loss(
        L2ConsistencyLossOptions().reduction(reduction_named(golden.option_string("reduction"))));
    check_golden_case(
        golden, {"y", "y_teacher"},
        [&](Leaves& in) { return loss(in["y"], in["y_teacher"], golden.input("mask").to(device)); },
        torch::kFloat64, kRtol, kAtol, device);
  }
}

TEST(L2ConsistencyLoss, MatchesGolden) {
  l2_consistency_golden(torch::kCPU);
}

TEST(L2ConsistencyLoss, HandComputedTinyCase) {
  // Row distances Σ_c (y − t)²: 1 + 4 = 5 and 9; mask (1, 0): mean = 5 / 2 (divides by N).
  auto y = torch::tensor({{1.0, 2.0}, {3.0, 0.0}});
  auto t = torch::tensor({{0.0, 0.0}, {0.0, 0.0}});
  auto mask = torch::tensor({1.0, 0.0});
  L2ConsistencyLoss mean_loss;
  EXPECT_DOUBLE_EQ(mean_loss(y, t, mask).item<double>(), 2.5);
  L2ConsistencyLoss none_loss(L2ConsistencyLossOptions().reduction(torch::kNone));
  EXPECT_TRUE(torch::equal(none_loss(y, t, mask), torch::tensor({5.0, 0.0})));
  L2ConsistencyLoss sum_loss(L2ConsistencyLossOptions().reduction(torch::kSum));
  EXPECT_DOUBLE_EQ(sum_loss(y, t).item<double>(), 14.0);  // no mask: every row counts
}

TEST(L2ConsistencyLoss, IsNotMseLoss) {
  auto y = torch::tensor({{1.0, 2.0}}, torch::kFloat64);
  auto t = torch::zeros({1, 2}, torch::kFloat64);
  EXPECT_DOUBLE_EQ(functional::l2_consistency_loss(y, t, {}).item<double>(), 5.0);
  EXPECT_DOUBLE_EQ(torch::mse_loss(y, t).item<double>(), 2.5);
}

TEST(ConsistencyLoss, AllZeroMaskGivesExactlyZeroAndNoGradient) {
  auto y = torch::randn({4, 3}, torch::requires_grad());
  auto t = torch::randn({4, 3});
  auto loss = functional::l2_consistency_loss(y, t, torch::zeros({4}));
  EXPECT_EQ(loss.item<float>(), 0.0f);
  loss.backward();
  EXPECT_EQ(y.grad().abs().sum().item<float>(), 0.0f);
}

TEST(ConsistencyLoss, BoolMaskKeepsTheInputDtype) {
  auto y = torch::randn({4, 3}).to(torch::kBFloat16);
  auto mask = torch::tensor({true, false, true, true});
  EXPECT_EQ(functional::l2_consistency_loss(y, y, mask).scalar_type(), torch::kBFloat16);
}

TEST(ConsistencyLoss, RejectsBadInputNamingTheArgument) {
  EXPECT_NE(error_message([] {
              functional::l2_consistency_loss(torch::randn({4, 3}), torch::randn({4, 2}), {});
            }).find("y and y_teacher must have the same shape"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              functional::l2_consistency_loss(torch::randn({4, 3}), torch::randn({4, 3}),
                                              torch::ones({3}));
            }).find("mask must be (N,) = (4,)"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              ConsistencyLoss loss(ConsistencyLossOptions(
                  [](const torch::Tensor& y, const torch::Tensor&) { return y; }));
              loss(torch::randn({4, 3}), torch::randn({4, 3}));
            }).find("distance_measure must return a (N,)"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              ConsistencyLoss loss(ConsistencyLossOptions(DistanceFn{}));
            }).find("distance_measure is empty"),
            std::string::npos);
}

void class_balance_golden(torch::Device device) {
  for (const auto& golden : golden_cases("class_balance_loss")) {
    ClassBalanceLoss loss(ClassBalanceLossOptions(golden.option_int("num_classes")));
    check_golden_case(
        golden, {"y"}, [&](Leaves& in) { return loss(in["y"]); }, torch::kFloat64, kRtol, kAtol,
        device);
  }
}

TEST(ClassBalanceLoss, MatchesGolden) {
  class_balance_golden(torch::kCPU);
}

TEST(ClassBalanceLoss, UniformPredictionGivesTheBinaryEntropyOfOneOverC) {
  // ȳ = u = 1/C: BCE = −(1/C)·log(1/C) − (1 − 1/C)·log(1 − 1/C), per class.
  const double c = 4;
  auto y = torch::full({3, 4}, 1 / c, torch::kFloat64);
  const double expected = -(1 / c) * std::log(1 / c) - (1 - 1 / c) * std::log(1 - 1 / c);
  EXPECT_NEAR(functional::class_balance_loss(y, ClassBalanceLossOptions(4)).item<double>(),
              expected, 1e-12);
}

TEST(ClassBalanceLoss, RejectsWrongClassCount) {
  EXPECT_NE(error_message([] {
              functional::class_balance_loss(torch::rand({2, 3}), ClassBalanceLossOptions(4));
            }).find("y has 3 classes but num_classes is 4"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              ClassBalanceLoss(ClassBalanceLossOptions(0));
            }).find("num_classes must be positive"),
            std::string::npos);
}

TEST(SelfEnsembleLosses, MatchGoldenOnCuda_CUDA) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const torch::Device cuda(torch::kCUDA);
  consistency_golden(cuda);
  l2_consistency_golden(cuda);
  class_balance_golden(cuda);
}

TEST(SelfEnsembleHeader, ProvidesTheEmaTeacher) {
  // self_ensemble.h includes ema_teacher.h, as the seed's module layout does.
  EmaTeacher<torch::nn::Linear> teacher(torch::nn::Linear(2, 2), 0.9);
  EXPECT_DOUBLE_EQ(teacher.alpha(), 0.9);
}

}  // namespace
}  // namespace tandem::methods
