#include "tandem/methods/mcc.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/golden.h"

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
        1e-12);
  }
}

TEST(MinimumClassConfusionLoss, MatchesGolden) {
  mcc_golden(torch::kCPU);
}

TEST(MinimumClassConfusionLoss, MatchesGoldenOnCuda_CUDA) {
  TANDEM_SKIP_WITHOUT_CUDA();
  mcc_golden(torch::Device(torch::kCUDA));
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

TEST(MinimumClassConfusionLoss, KeepsBfloat16) {
  auto logits = torch::randn({8, 5}).to(torch::kBFloat16);
  EXPECT_EQ(functional::minimum_class_confusion_loss(logits, MinimumClassConfusionLossOptions(2.5))
                .scalar_type(),
            torch::kBFloat16);
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
