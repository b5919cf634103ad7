#include "tandem/methods/models/reidentifier.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/golden.h"
#include "tandem/methods/models/resnet.h"

namespace tandem::methods::models {
namespace {

using testing::error_message;

ReIdentifier small_model(int64_t classes = 6) {
  return ReIdentifier(torch::nn::AnyModule(SmallReidNet()), 128, ReIdentifierOptions(classes));
}

TEST(ReIdentifier, TrainingGivesLogitsPreNeckFeaturesAndNeck) {
  auto model = small_model();
  auto out = model(torch::randn({4, 3, 32, 16}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(out.features.sizes(), (std::vector<int64_t>{4, 128}));
  EXPECT_EQ(out.neck.sizes(), (std::vector<int64_t>{4, 128}));
  // The head reads the neck, not the pooled features.
  EXPECT_TRUE(torch::allclose(out.logits, model->head(out.neck)));
}

TEST(ReIdentifier, EvalGivesNeckFeaturesOnly) {
  auto model = small_model();
  model->eval();
  auto x = torch::randn({3, 3, 32, 16});
  auto out = model(x);
  EXPECT_FALSE(out.logits.defined());
  auto pooled = torch::adaptive_avg_pool2d(model->backbone.forward(x), {1, 1}).flatten(1);
  EXPECT_TRUE(torch::allclose(out.neck, model->bottleneck(pooled)));
}

TEST(ReIdentifier, NeckBiasIsFrozenAtZeroAndHeadIsSmallAndBiasFree) {
  auto model = small_model(700);
  EXPECT_FALSE(model->bottleneck->bias.requires_grad());
  EXPECT_EQ(model->bottleneck->bias.abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(torch::equal(model->bottleneck->weight, torch::ones({128})));
  EXPECT_FALSE(model->head->bias.defined());
  const double std = model->head->weight.std().item<double>();
  EXPECT_GT(std, 0.0008);
  EXPECT_LT(std, 0.0012);
  const auto names = model->named_parameters().keys();
  EXPECT_NE(std::find(names.begin(), names.end(), "backbone.features.0.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "head.weight"), names.end());
}

TEST(ReIdentifier, ResetClassifierInstallsTheCentroids) {
  auto model = small_model();
  auto centroids = torch::randn({9, 128});
  model->reset_classifier(centroids);
  EXPECT_EQ(model->num_classes(), 9);
  EXPECT_TRUE(torch::equal(model->head->weight, centroids));
  EXPECT_TRUE(model->head->weight.requires_grad());
  EXPECT_EQ(model(torch::randn({2, 3, 32, 16})).logits.size(1), 9);
  EXPECT_NE(error_message([&] {
              model->reset_classifier(torch::randn({9, 64}));
            }).find("centroids must be (K, 128)"),
            std::string::npos);
}

TEST(ReIdentifier, CloneIsDeepAndLeavesTheOriginalsTensorsInPlace) {
  auto model = small_model();
  const auto* backbone_data = model->backbone.ptr()->parameters()[0].data_ptr();
  auto copy = std::dynamic_pointer_cast<ReIdentifierImpl>(model->clone());
  EXPECT_EQ(model->backbone.ptr()->parameters()[0].data_ptr(), backbone_data);
  EXPECT_NE(copy->backbone.ptr()->parameters()[0].data_ptr(), backbone_data);
  EXPECT_FALSE(copy->bottleneck->bias.requires_grad());
  model->eval();
  copy->eval();
  auto x = torch::randn({2, 3, 32, 16});
  EXPECT_TRUE(torch::allclose(model(x).neck, copy->forward(x).neck));
}

TEST(ReIdentifier, WorksOnTheReIdResNet50) {
  ReIdentifier model(torch::nn::AnyModule(reid_resnet50()), 2048, ReIdentifierOptions(751));
  auto out = model(torch::randn({2, 3, 64, 32}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 751}));
  EXPECT_EQ(out.features.sizes(), (std::vector<int64_t>{2, 2048}));
}

TEST(ReIdentifier, RejectsABackboneOfTheWrongWidth) {
  ReIdentifier model(torch::nn::AnyModule(SmallReidNet()), 64, ReIdentifierOptions(3));
  EXPECT_NE(error_message([&] {
              model(torch::randn({2, 3, 32, 16}));
            }).find("the backbone must produce (N, 64, H, W)"),
            std::string::npos);
}

}  // namespace
}  // namespace tandem::methods::models
