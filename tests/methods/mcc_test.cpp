#include "tandem/methods/mcc.h"

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "methods/bfloat16.h"
#include "support/golden.h"
#include "tandem/methods/autocast.h"
#include "tandem/methods/reid_loss.h"
#include "tandem/methods/self_ensemble.h"

namespace tandem::methods {
namespace {

using testing::check_golden_case;
using testing::error_message;
using testing::golden_cases;
using testing::Leaves;

void mcc_golden(torch::Device device) {
  for (const auto& golden : golden_cases("minimum_class_confusion_loss")) {
    MinimumClassConfusionLoss loss(
        MinimumClassConfusionLossOptions(golden.option_double("temperature")));
    check_golden_case(
        golden, {"logits"}, [&](Leaves& in) { return loss(in["logits"]); }, torch::kFloat64, 1e-5,
        1e-12, device);
  }
}

TEST(MinimumClassConfusionLoss, MatchesGolden) {
  mcc_golden(torch::kCPU);
}

TEST(MinimumClassConfusionLoss, MatchesGoldenOnCuda_CUDA) {
  TANDEM_SKIP_WITHOUT_CUDA();
  mcc_golden(torch::Device(torch::kCUDA));
}

TEST(MinimumClassConfusionLoss, GoldenHelperRunsOnItsDevice) {
  // MatchesGoldenOnCuda_CUDA's plumbing without a GPU: every case runs on the
  // meta device, and the result and the gradient come back there.
  EXPECT_TRUE(testing::golden_helper_runs_on(mcc_golden, torch::kMeta));
}

TEST(MinimumClassConfusionLoss, HandComputedTinyCases) {
  // One sample: M = p pᵀ (weight 1), M̃[j,k] = p_j p_k / (p_k Σ_l p_l) = p_j,
  // so every column sums to 1 and loss = (C − Σ_j p_j) / C = (C − 1) / C.
  auto one = torch::tensor({{0.3, -1.2, 2.0}}, torch::kFloat64);
  EXPECT_NEAR(functional::minimum_class_confusion_loss(one, MinimumClassConfusionLossOptions(2.5))
                  .item<double>(),
              2.0 / 3.0, 1e-12);
  // Confident, disjoint predictions: no confusion.
  auto confident = torch::tensor({{100.0, 0.0}, {0.0, 100.0}}, torch::kFloat64);
  EXPECT_NEAR(
      functional::minimum_class_confusion_loss(confident, MinimumClassConfusionLossOptions(1.0))
          .item<double>(),
      0.0, 1e-12);
}

TEST(MinimumClassConfusionLoss, EntropyWeightsAreDetached) {
  // With detached weights the gradient equals that of the loss computed with
  // the weights fixed as constants.
  torch::manual_seed(5);
  auto logits = torch::randn({6, 4}, torch::kFloat64).requires_grad_();
  functional::minimum_class_confusion_loss(logits, MinimumClassConfusionLossOptions(2.0))
      .backward();
  auto fixed = logits.detach().clone().requires_grad_();
  const auto p = torch::softmax(fixed / 2.0, 1);
  auto w = (1 + torch::exp((p * torch::log(p + 1e-5)).sum(1))).detach();
  w = (6 * w / w.sum()).unsqueeze(1);
  auto m = (p * w).t().mm(p);
  m = m / m.sum(1);
  ((m.sum() - m.diagonal().sum()) / 4).backward();
  EXPECT_TRUE(torch::allclose(logits.grad(), fixed.grad(), 1e-10, 1e-12));
}

TEST(MinimumClassConfusionLoss, KeepsBfloat16AndMatchesFloat32) {
  torch::manual_seed(41);
  auto logits = testing::bf16_leaf(torch::randn({8, 5}));
  auto logits32 = testing::fp32_twin(logits);
  const MinimumClassConfusionLossOptions options(2.5);
  auto value = functional::minimum_class_confusion_loss(logits, options);
  auto value32 = functional::minimum_class_confusion_loss(logits32, options);
  EXPECT_TRUE(testing::bf16_close(value, value32));
  value.backward();
  value32.backward();
  EXPECT_EQ(logits.grad().scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(testing::bf16_close(logits.grad(), logits32.grad(), 0.05));
}

TEST(MethodsLosses, RunOnALinearLayerUnderCpuAutocastBfloat16) {
  // A float32 Linear under CPU autocast computes in bf16; the losses on its
  // output stay bf16 (none promotes to float32 or float64) and the float32
  // weights get float32 gradients close to the plain float32 run.
  // The soft target comes from a teacher layer run under the same autocast
  // (as MMT's mean teacher would); a float32 target would promote to float32
  // by torch's ordinary type promotion.
  torch::manual_seed(42);
  torch::nn::Linear linear(6, 4);
  torch::nn::Linear teacher(6, 4);
  const auto x = torch::randn({8, 6});
  const auto total_loss = [&](const torch::Tensor& logits, bool expect_bf16) {
    torch::Tensor target_logits;
    {
      torch::NoGradGuard no_grad;
      target_logits = teacher(x);
    }
    if (expect_bf16) {
      EXPECT_EQ(target_logits.scalar_type(), torch::kBFloat16);
    }
    const auto mcc =
        functional::minimum_class_confusion_loss(logits, MinimumClassConfusionLossOptions(2.5));
    const auto balance =
        functional::class_balance_loss(torch::softmax(logits, 1), ClassBalanceLossOptions(4));
    const auto soft_ce = functional::soft_cross_entropy_loss(logits, target_logits);
    if (expect_bf16) {
      EXPECT_EQ(mcc.scalar_type(), torch::kBFloat16);
      EXPECT_EQ(balance.scalar_type(), torch::kBFloat16);
      EXPECT_EQ(soft_ce.scalar_type(), torch::kBFloat16);
    }
    return mcc + balance + soft_ce;
  };

  torch::Tensor value;
  {
    const AutocastGuard autocast(c10::kCPU, torch::kBFloat16);
    const auto logits = linear(x);
    ASSERT_EQ(logits.scalar_type(), torch::kBFloat16) << "autocast did not apply to Linear";
    value = total_loss(logits, /*expect_bf16=*/true);
  }
  EXPECT_FALSE(at::autocast::is_autocast_enabled(c10::kCPU));
  value.backward();
  const auto weight_grad = linear->weight.grad().clone();
  EXPECT_EQ(weight_grad.scalar_type(), torch::kFloat32);

  linear->zero_grad();
  const auto value32 = total_loss(linear(x), /*expect_bf16=*/false);
  ASSERT_EQ(value32.scalar_type(), torch::kFloat32);
  value32.backward();
  EXPECT_TRUE(testing::bf16_close(value, value32));
  EXPECT_TRUE(testing::tensors_close(weight_grad, linear->weight.grad(), 0.0,
                                     0.1 * linear->weight.grad().abs().max().item<double>()));
}

TEST(MinimumClassConfusionLoss, RejectsNonPositiveTemperatureAndBadRank) {
  EXPECT_NE(error_message([] {
              MinimumClassConfusionLoss(MinimumClassConfusionLossOptions(0.0));
            }).find("temperature must be positive, got 0"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              functional::minimum_class_confusion_loss(torch::randn({4}),
                                                       MinimumClassConfusionLossOptions(1.0));
            }).find("g_t must have 2 dimensions"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              functional::minimum_class_confusion_loss(torch::ones({2, 3}, torch::kLong),
                                                       MinimumClassConfusionLossOptions(1.0));
            }).find("g_t must be a floating-point tensor"),
            std::string::npos);
}

}  // namespace
}  // namespace tandem::methods
