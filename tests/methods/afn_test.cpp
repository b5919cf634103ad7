#include "tandem/methods/afn.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "methods/bfloat16.h"
#include "support/golden.h"
#include "tandem/methods/models/resnet.h"
#include "tandem/methods/models/weights.h"

namespace tandem::methods {
namespace {

using testing::bf16_close;
using testing::bf16_leaf;
using testing::check_golden_case;
using testing::error_message;
using testing::fp32_twin;
using testing::golden_cases;
using testing::Leaves;

void afn_golden(torch::Device device) {
  for (const auto& golden : golden_cases("adaptive_feature_norm")) {
    AdaptiveFeatureNorm loss(AdaptiveFeatureNormOptions(golden.option_double("delta")));
    check_golden_case(
        golden, {"f"}, [&](Leaves& in) { return loss(in["f"]); }, torch::kFloat64, 1e-5, 1e-12,
        device);
  }
}

TEST(AdaptiveFeatureNorm, MatchesGolden) {
  afn_golden(torch::kCPU);
}

TEST(AdaptiveFeatureNorm, MatchesGoldenOnCuda_CUDA) {
  TANDEM_SKIP_WITHOUT_CUDA();
  afn_golden(torch::Device(torch::kCUDA));
}

TEST(AdaptiveFeatureNorm, GoldenHelperRunsOnItsDevice) {
  // MatchesGoldenOnCuda_CUDA's plumbing without a GPU: every case runs on the
  // meta device, and the result and the gradient come back there.
  EXPECT_TRUE(testing::golden_helper_runs_on(afn_golden, torch::kMeta));
}

TEST(AdaptiveFeatureNorm, ValueIsDeltaSquaredAndGradientGrowsTheNorm) {
  auto f =
      torch::tensor({{3.0, 4.0}, {0.0, 1.0}}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto loss = functional::adaptive_feature_norm(f, AdaptiveFeatureNormOptions(0.5));
  EXPECT_NEAR(loss.item<double>(), 0.25, 1e-12);
  loss.backward();
  // d/df_i = −2Δ f_i / (N ‖f_i‖): row 0 → −0.5·(0.6, 0.8).
  EXPECT_TRUE(torch::allclose(f.grad()[0], torch::tensor({-0.3, -0.4}, torch::kFloat64)));
}

TEST(AdaptiveFeatureNorm, Bfloat16StaysBfloat16AndMatchesFloat32) {
  torch::manual_seed(31);
  auto f = bf16_leaf(torch::randn({6, 5}));
  auto f32 = fp32_twin(f);
  AdaptiveFeatureNorm loss(AdaptiveFeatureNormOptions(1.0));
  auto value = loss(f);
  auto value32 = loss(f32);
  EXPECT_TRUE(bf16_close(value, value32));
  EXPECT_NEAR(value.item<float>(), 1.0, 0.05);  // Δ², up to the rounding of ‖f‖ + Δ
  value.backward();
  value32.backward();
  EXPECT_EQ(f.grad().scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(bf16_close(f.grad(), f32.grad()));
}

TEST(AdaptiveFeatureNorm, RejectsNonPositiveDelta) {
  EXPECT_NE(error_message([] {
              AdaptiveFeatureNorm(AdaptiveFeatureNormOptions(-1.0));
            }).find("delta must be positive, got -1"),
            std::string::npos);
}

TEST(AfnBlock, EvalMatchesGolden) {
  for (const auto& golden : golden_cases("afn_block_eval")) {
    AfnBlock block(AfnBlockOptions(golden.option_int("in_features"))
                       .bottleneck_dim(golden.option_int("bottleneck_dim"))
                       .dropout_p(golden.option_double("dropout_p")));
    block->to(torch::kFloat64);
    {
      torch::NoGradGuard no_grad;
      block->fc->weight.copy_(golden.input("fc.weight"));
      block->fc->bias.copy_(golden.input("fc.bias"));
      block->bn->weight.copy_(golden.input("bn.weight"));
      block->bn->bias.copy_(golden.input("bn.bias"));
      block->bn->running_mean.copy_(golden.input("bn.running_mean"));
      block->bn->running_var.copy_(golden.input("bn.running_var"));
    }
    block->eval();
    check_golden_case(
        golden, {"x"}, [&](Leaves& in) { return block(in["x"]); }, torch::kFloat64, 1e-5, 1e-12);
  }
}

TEST(AfnBlock, TrainingDropoutPreservesTheL2NormScale) {
  // Kept units are scaled by 1/(1−p)·sqrt(1−p) = 1/sqrt(1−p); dropped ones are 0.
  torch::manual_seed(0);
  AfnBlock block(AfnBlockOptions(4).bottleneck_dim(64).dropout_p(0.75));
  auto x = torch::randn({32, 4});
  block->eval();
  const auto plain = block(x);
  block->train();
  // BN in train mode uses batch statistics: compare with the eval path
  // recomputed from batch statistics instead.
  const auto pre = torch::relu(torch::batch_norm(block->fc(x), block->bn->weight, block->bn->bias,
                                                 {}, {}, true, 0.1, 1e-5, false));
  const auto out = block(x);
  const auto kept = out != 0;
  EXPECT_TRUE(torch::allclose(out.masked_select(kept), pre.masked_select(kept) / std::sqrt(0.25),
                              1e-5, 1e-6));
  // About 1 − p = 25% of the active units survive.
  const auto active = pre != 0;
  const double kept_fraction = (kept & active).sum().item<double>() / active.sum().item<double>();
  EXPECT_NEAR(kept_fraction, 0.25, 0.06);
  EXPECT_EQ(plain.sizes(), out.sizes());
}

// Rounds every parameter and buffer of `module` to bf16-representable values,
// so that a bf16 copy and the float32 original hold the same weights.
void round_to_bfloat16(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) p.copy_(p.to(torch::kBFloat16));
  for (auto& b : module.buffers()) {
    if (b.is_floating_point()) b.copy_(b.to(torch::kBFloat16));
  }
}

TEST(AfnBlock, Bfloat16StaysBfloat16AndMatchesFloat32) {
  torch::manual_seed(32);
  // dropout_p = 0, so training (batch statistics) is deterministic too.
  AfnBlock block32(AfnBlockOptions(4).bottleneck_dim(6).dropout_p(0.0));
  {
    torch::NoGradGuard no_grad;
    block32->bn->running_mean.normal_(0, 0.1);
    block32->bn->running_var.uniform_(0.5, 1.5);
  }
  round_to_bfloat16(*block32);
  AfnBlock block(std::dynamic_pointer_cast<AfnBlockImpl>(block32->clone()));
  block->to(torch::kBFloat16);
  for (const bool training : {true, false}) {
    block->train(training);
    block32->train(training);
    block->zero_grad();
    block32->zero_grad();
    auto x = bf16_leaf(torch::randn({5, 4}));
    auto x32 = fp32_twin(x);
    const auto out = block(x);
    const auto out32 = block32(x32);
    EXPECT_TRUE(bf16_close(out, out32)) << "training " << training;
    const auto weights = torch::randn({5, 6});
    (out * weights.to(torch::kBFloat16)).sum().backward();
    (out32 * weights).sum().backward();
    EXPECT_EQ(x.grad().scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(bf16_close(x.grad(), x32.grad())) << "training " << training;
    EXPECT_TRUE(bf16_close(block->fc->weight.grad(), block32->fc->weight.grad()))
        << "training " << training;
    for (const auto& p : block->parameters()) {
      EXPECT_EQ(p.grad().scalar_type(), torch::kBFloat16);
    }
  }
  // With dropout in training the output stays bf16 as well.
  AfnBlock dropping(AfnBlockOptions(4).bottleneck_dim(6).dropout_p(0.5));
  dropping->to(torch::kBFloat16);
  EXPECT_EQ(dropping(torch::randn({5, 4}).to(torch::kBFloat16)).scalar_type(), torch::kBFloat16);
}

TEST(AfnBlock, RejectsBadOptions) {
  EXPECT_NE(error_message([] {
              AfnBlock(AfnBlockOptions(4).dropout_p(1.0));
            }).find("dropout_p must be in [0, 1)"),
            std::string::npos);
  EXPECT_NE(
      error_message([] { AfnBlock(AfnBlockOptions(0)); }).find("in_features must be positive"),
      std::string::npos);
}

TEST(AfnImageClassifier, ReturnsLogitsAndBottleneckFeaturesWithTLlibNames) {
  AfnImageClassifier classifier(torch::nn::AnyModule(models::SmallReidNet()), 128,
                                AfnImageClassifierOptions(10).num_blocks(2).bottleneck_dim(32));
  auto [logits, features] = classifier(torch::randn({4, 3, 32, 32}));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{4, 10}));
  EXPECT_EQ(features.sizes(), (std::vector<int64_t>{4, 32}));
  const auto names = classifier->named_parameters().keys();
  for (const char* name : {"bottleneck.0.0.fc.weight", "bottleneck.1.bn.bias", "head.weight"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
  classifier->eval();
  auto [eval_logits, eval_features] = classifier(torch::randn({2, 3, 32, 32}));
  EXPECT_EQ(eval_logits.sizes(), (std::vector<int64_t>{2, 10}));
}

TEST(AfnImageClassifier, EvalMatchesGoldenWithTLlibWeightNames) {
  for (const auto& golden : golden_cases("afn_image_classifier_eval")) {
    torch::nn::Linear backbone(golden.option_int("in_features"),
                               golden.option_int("backbone_features"));
    AfnImageClassifier classifier(torch::nn::AnyModule(backbone),
                                  golden.option_int("backbone_features"),
                                  AfnImageClassifierOptions(golden.option_int("num_classes"))
                                      .num_blocks(golden.option_int("num_blocks"))
                                      .bottleneck_dim(golden.option_int("bottleneck_dim")));
    classifier->to(torch::kFloat64);
    // Every parameter and BN statistic is loaded by its TLlib name.
    StateDict weights;
    for (const auto& name : models::weights_of(*classifier).keys()) {
      if (name.find("num_batches_tracked") == std::string::npos) {
        weights.insert(name, golden.input(name));
      }
    }
    const auto report = models::load_weights(*classifier, weights);
    EXPECT_TRUE(report.unexpected.empty() && report.mismatched.empty()) << report.summary();
    classifier->eval();
    torch::Tensor features;
    check_golden_case(
        golden, {"x"},
        [&](Leaves& in) {
          auto [logits, f] = classifier(in["x"]);
          features = f;
          return logits;
        },
        torch::kFloat64, 1e-5, 1e-12);
    EXPECT_TRUE(testing::tensors_close(features, golden.output("features"), 1e-5, 1e-12))
        << golden.label();
  }
}

TEST(AfnImageClassifier, Bfloat16StaysBfloat16AndMatchesFloat32) {
  torch::manual_seed(33);
  AfnImageClassifier classifier32(torch::nn::AnyModule(torch::nn::Linear(4, 6)), 6,
                                  AfnImageClassifierOptions(3).num_blocks(2).bottleneck_dim(5));
  round_to_bfloat16(*classifier32);
  AfnImageClassifier classifier(
      std::dynamic_pointer_cast<AfnImageClassifierImpl>(classifier32->clone()));
  classifier->to(torch::kBFloat16);
  for (const auto& p : classifier->parameters()) ASSERT_EQ(p.scalar_type(), torch::kBFloat16);
  // Eval (running statistics, no dropout): values against float32.
  classifier->eval();
  classifier32->eval();
  auto x = bf16_leaf(torch::randn({4, 4}));
  auto x32 = fp32_twin(x);
  auto [logits, features] = classifier(x);
  auto [logits32, features32] = classifier32(x32);
  EXPECT_TRUE(bf16_close(logits, logits32));
  EXPECT_TRUE(bf16_close(features, features32));
  logits.sum().backward();
  logits32.sum().backward();
  EXPECT_EQ(x.grad().scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(bf16_close(x.grad(), x32.grad()));
  EXPECT_TRUE(bf16_close(classifier->head->weight.grad(), classifier32->head->weight.grad()));
  // Training (dropout, batch statistics): everything stays bf16, gradients too.
  classifier->train();
  classifier->zero_grad();
  auto [train_logits, train_features] = classifier(torch::randn({4, 4}).to(torch::kBFloat16));
  EXPECT_EQ(train_logits.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(train_features.scalar_type(), torch::kBFloat16);
  (train_logits.sum() + AdaptiveFeatureNorm(AdaptiveFeatureNormOptions(1.0))(train_features))
      .backward();
  for (const auto& item : classifier->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_EQ(item.value().grad().scalar_type(), torch::kBFloat16) << item.key();
    EXPECT_TRUE(torch::isfinite(item.value().grad()).all().item<bool>()) << item.key();
  }
}

TEST(AfnImageClassifier, CloneOwnsItsBackbone) {
  AfnImageClassifier classifier(torch::nn::AnyModule(models::SmallReidNet()), 128,
                                AfnImageClassifierOptions(3).num_blocks(3).bottleneck_dim(8));
  const auto original_weight = classifier->backbone.ptr()->parameters()[0];
  const auto* original_data = original_weight.data_ptr();
  auto copy = std::dynamic_pointer_cast<AfnImageClassifierImpl>(classifier->clone());
  // The original keeps the very tensors an optimiser would hold.
  EXPECT_EQ(classifier->backbone.ptr()->parameters()[0].data_ptr(), original_data);
  EXPECT_NE(copy->backbone.ptr()->parameters()[0].data_ptr(), original_data);
  EXPECT_TRUE(torch::equal(copy->backbone.ptr()->parameters()[0], original_weight));
  // The clone computes the same function (every block carries the weights).
  classifier->eval();
  copy->eval();
  auto x = torch::randn({2, 3, 32, 32});
  EXPECT_TRUE(torch::allclose(std::get<0>(classifier(x)), std::get<0>(copy->forward(x))));
}

TEST(AfnImageClassifier, RejectsABackboneOfTheWrongWidth) {
  AfnImageClassifier classifier(torch::nn::AnyModule(models::SmallReidNet()), 64,
                                AfnImageClassifierOptions(3).bottleneck_dim(8));
  EXPECT_NE(error_message([&] {
              classifier(torch::randn({2, 3, 32, 32}));
            }).find("the backbone must produce (N, 64, H, W)"),
            std::string::npos);
}

}  // namespace
}  // namespace tandem::methods
