#include "tandem/methods/self_ensemble.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "methods/bfloat16.h"
#include "support/golden.h"

namespace tandem::methods {
namespace {

using testing::check_golden_case;
using testing::error_message;
using testing::golden_cases;
using testing::Leaves;
using testing::tensors_close;

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
        [&](Leaves& in) { return loss(in["y"], in["y_teacher"], in["mask"]); }, torch::kFloat64,
        kRtol, kAtol, device);
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
        [&](Leaves& in) { return loss(in["y"], in["y_teacher"], in["mask"]); }, torch::kFloat64,
        kRtol, kAtol, device);
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

TEST(ConsistencyLoss, HandComputedL1DistanceWithAMaskForEveryReduction) {
  // User distance D = Σ_c |y − t| per row:
  //   row 0: |1 − 0| + |2 − 0|      = 3
  //   row 1: |3 − 1| + |−1 − 1|     = 4   (masked out)
  //   row 2: |0 − 2| + |0.5 − 2|    = 3.5
  // mask (1, 0, 1): none → (3, 0, 3.5); sum → 6.5; mean → 6.5 / 3 (N = 3,
  // not Σ mask = 2).
  const auto y0 = torch::tensor({{1.0, 2.0}, {3.0, -1.0}, {0.0, 0.5}}, torch::kFloat64);
  const auto t = torch::tensor({{0.0, 0.0}, {1.0, 1.0}, {2.0, 2.0}}, torch::kFloat64);
  const auto mask = torch::tensor({1.0, 0.0, 1.0}, torch::kFloat64);
  const auto options = ConsistencyLossOptions(l1_distance);

  ConsistencyLoss none_loss(ConsistencyLossOptions(options).reduction(torch::kNone));
  const auto none = none_loss(y0, t, mask);
  ASSERT_EQ(none.sizes(), (std::vector<int64_t>{3}));
  EXPECT_DOUBLE_EQ(none[0].item<double>(), 3.0);
  EXPECT_DOUBLE_EQ(none[1].item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(none[2].item<double>(), 3.5);

  ConsistencyLoss sum_loss(ConsistencyLossOptions(options).reduction(torch::kSum));
  EXPECT_DOUBLE_EQ(sum_loss(y0, t, mask).item<double>(), 6.5);

  // Mean, and its gradient sign(y − t) · mask_i / N: row 0 (+1/3, +1/3),
  // row 1 zero, row 2 (−1/3, −1/3).
  auto y = y0.clone().requires_grad_();
  ConsistencyLoss mean_loss(options);
  const auto mean = mean_loss(y, t, mask);
  EXPECT_DOUBLE_EQ(mean.item<double>(), 6.5 / 3.0);
  mean.backward();
  const auto third = 1.0 / 3.0;
  EXPECT_TRUE(tensors_close(
      y.grad(), torch::tensor({{third, third}, {0.0, 0.0}, {-third, -third}}, torch::kFloat64),
      1e-12, 1e-15));
}

TEST(ConsistencyLoss, Bfloat16StaysBfloat16WithABoolMask) {
  torch::manual_seed(21);
  auto y = testing::bf16_leaf(torch::randn({4, 3}));
  const auto t = torch::randn({4, 3}).to(torch::kBFloat16);
  const auto mask = torch::tensor({true, false, true, true});
  auto y32 = testing::fp32_twin(y);
  auto value = functional::l2_consistency_loss(y, t, mask);
  auto value32 = functional::l2_consistency_loss(y32, t.to(torch::kFloat32), mask);
  EXPECT_TRUE(testing::bf16_close(value, value32));
  value.backward();
  value32.backward();
  EXPECT_EQ(y.grad().scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(testing::bf16_close(y.grad(), y32.grad()));
  EXPECT_EQ(y.grad()[1].abs().sum().item<float>(), 0.0f);  // the masked-out row
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

TEST(ClassBalanceLoss, HandComputedOneHotPredictionHitsTheLogClamp) {
  // Every row predicts class 1 with certainty: ȳ = (0, 1, 0), u = 1/3.
  // Per class −(u·max(log ȳ, −100) + (1 − u)·max(log(1 − ȳ), −100)):
  //   class 0: −(1/3·(−100) + 2/3·log 1) = 100/3
  //   class 1: −(1/3·log 1 + 2/3·(−100)) = 200/3
  //   class 2: 100/3
  // mean over C = 3: (400/3) / 3 = 400/9.
  // Gradient (torch's): ∂/∂ȳ_c = (ȳ_c − u) / max(ȳ_c(1 − ȳ_c), 1e-12) / C, and
  // ∂ȳ_c/∂y_ic = 1/N with N = 4:
  //   classes 0, 2: (−1/3) / 1e-12 / 3 / 4 = −1e12/36
  //   class 1:      (2/3) / 1e-12 / 3 / 4 = +2e12/36
  auto y = torch::zeros({4, 3}, torch::kFloat64);
  y.select(1, 1).fill_(1.0);
  y.requires_grad_();
  const auto loss = functional::class_balance_loss(y, ClassBalanceLossOptions(3));
  EXPECT_NEAR(loss.item<double>(), 400.0 / 9.0, 1e-12);
  loss.backward();
  const auto expected_row = torch::tensor({-1e12 / 36, 2e12 / 36, -1e12 / 36}, torch::kFloat64);
  EXPECT_TRUE(tensors_close(y.grad(), expected_row.expand({4, 3}), 1e-12));
}

TEST(ClassBalanceLoss, Bfloat16StaysBfloat16AndMatchesFloat32) {
  torch::manual_seed(11);
  auto y = testing::bf16_leaf(torch::softmax(torch::randn({8, 5}), 1));
  auto y32 = testing::fp32_twin(y);
  ClassBalanceLoss loss(ClassBalanceLossOptions(5));
  auto value = loss(y);
  auto value32 = loss(y32);
  EXPECT_TRUE(testing::bf16_close(value, value32));
  value.backward();
  value32.backward();
  EXPECT_EQ(y.grad().scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(testing::bf16_close(y.grad(), y32.grad()));
}

TEST(ClassBalanceLoss, Bfloat16OneHotIsClampedNotNan) {
  // The 400/9 case in bfloat16: 400/9 ≈ 44.44, where bf16 values are 0.25
  // apart; the terms 100/3 and 200/3 are rounded too, so allow two steps.
  auto y = torch::zeros({4, 3}, torch::kBFloat16);
  y.select(1, 1).fill_(1.0);
  y.requires_grad_();
  const auto loss = functional::class_balance_loss(y, ClassBalanceLossOptions(3));
  EXPECT_EQ(loss.scalar_type(), torch::kBFloat16);
  EXPECT_NEAR(loss.item<float>(), 400.0 / 9.0, 0.5);
  loss.backward();
  EXPECT_TRUE(torch::isfinite(y.grad()).all().item<bool>());
  EXPECT_GT(y.grad()[0][1].item<float>(), 1e10f);
}

TEST(ClassBalanceLoss, RejectsValuesThatAreNotProbabilities) {
  EXPECT_NE(error_message([] {
              functional::class_balance_loss(torch::full({2, 3}, 1.5), ClassBalanceLossOptions(3));
            }).find("y must hold probabilities in [0, 1]"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              functional::class_balance_loss(
                  torch::full({2, 3}, std::numeric_limits<float>::quiet_NaN()),
                  ClassBalanceLossOptions(3));
            }).find("y must hold probabilities in [0, 1]"),
            std::string::npos);
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

TEST(SelfEnsembleLosses, GoldenHelpersRunOnTheirDevice) {
  // MatchGoldenOnCuda_CUDA's plumbing without a GPU: every case runs on the
  // meta device, where a tensor left on the CPU (the mask included) makes the
  // loss throw, and what comes back must be on meta (check_golden_case).
  const torch::Device meta(torch::kMeta);
  EXPECT_TRUE(testing::golden_helper_runs_on(consistency_golden, meta));
  EXPECT_TRUE(testing::golden_helper_runs_on(l2_consistency_golden, meta));
  EXPECT_TRUE(testing::golden_helper_runs_on(class_balance_golden, meta));
}

TEST(SelfEnsembleLosses, RejectTensorsOnDifferentDevicesNamingTheArgument) {
  // The meta device stands in for a GPU: no tensor may be elsewhere.
  const auto y = torch::rand({4, 3});
  const auto y_meta = y.to(torch::kMeta);
  EXPECT_EQ(error_message([&] { functional::l2_distance(y, y_meta); }),
            "l2_distance: y_teacher is on meta but y is on cpu; every tensor must be on one "
            "device");
  EXPECT_EQ(error_message([&] { functional::l2_consistency_loss(y_meta, y, {}); }),
            "consistency_loss: y_teacher is on cpu but y is on meta; every tensor must be on one "
            "device");
  EXPECT_EQ(
      error_message([&] { functional::l2_consistency_loss(y_meta, y_meta, torch::ones({4})); }),
      "consistency_loss: mask is on cpu but y is on meta; every tensor must be on one "
      "device");
  // A scalar mask too: every tensor, not only the broadcast ones.
  EXPECT_NE(error_message([&] {
              ConsistencyLoss(ConsistencyLossOptions(l1_distance))(y_meta, y_meta,
                                                                   torch::tensor(1.0));
            }).find("consistency_loss: mask is on cpu but y is on meta"),
            std::string::npos);
  // All on one device, with or without a mask, passes the checks.
  EXPECT_EQ(error_message([&] {
              functional::l2_consistency_loss(y_meta, y_meta, torch::ones({4}, torch::kMeta));
              functional::l2_consistency_loss(y_meta, y_meta, {});
            }),
            "");
}

TEST(SelfEnsembleHeader, ProvidesTheEmaTeacher) {
  // self_ensemble.h includes ema_teacher.h, as the seed's module layout does.
  EmaTeacher<torch::nn::Linear> teacher(torch::nn::Linear(2, 2), 0.9);
  EXPECT_DOUBLE_EQ(teacher.alpha(), 0.9);
}

}  // namespace
}  // namespace tandem::methods
