#include "tandem/methods/models/weights.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tandem/methods/models/reidentifier.h"
#include "tandem/methods/models/resnet.h"

namespace tandem::methods::models {
namespace {

TEST(LoadWeights, CopiesTheKeyIntersectionAndReportsTheRest) {
  SmallReidNet model;
  StateDict state;
  state.insert("features.0.weight", torch::full({16, 3, 3, 3}, 0.5, torch::kFloat64));
  state.insert("features.1.running_mean", torch::full({16}, 2.0));
  state.insert("features.3.weight", torch::zeros({7, 7}));  // wrong shape
  state.insert("fc.weight", torch::zeros({2, 2}));          // not in the model
  const auto report = load_weights(*model, state);
  EXPECT_EQ(report.loaded,
            (std::vector<std::string>{"features.0.weight", "features.1.running_mean"}));
  EXPECT_EQ(report.unexpected, (std::vector<std::string>{"fc.weight"}));
  ASSERT_EQ(report.mismatched.size(), 1u);
  EXPECT_EQ(report.mismatched[0], "features.3.weight: [7, 7] vs [32, 16, 3, 3]");
  EXPECT_FALSE(report.missing.empty());
  // Converted to the model's dtype and copied in place.
  EXPECT_EQ(model->named_parameters()["features.0.weight"].scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(model->named_parameters()["features.0.weight"],
                           torch::full({16, 3, 3, 3}, 0.5f)));
  EXPECT_TRUE(
      torch::equal(model->named_buffers()["features.1.running_mean"], torch::full({16}, 2.0f)));
  EXPECT_NE(report.summary().find("2 loaded, "), std::string::npos) << report.summary();
}

TEST(WeightsOf, RoundTripsBetweenTwoModels) {
  ReIdentifier a(torch::nn::AnyModule(SmallReidNet()), 128, ReIdentifierOptions(4));
  ReIdentifier b(torch::nn::AnyModule(SmallReidNet()), 128, ReIdentifierOptions(4));
  const auto report = load_weights(*b, weights_of(*a));
  EXPECT_TRUE(report.missing.empty() && report.unexpected.empty() && report.mismatched.empty())
      << report.summary();
  a->eval();
  b->eval();
  auto x = torch::randn({2, 3, 32, 16});
  EXPECT_TRUE(torch::equal(a(x).neck, b(x).neck));
  // Buffers are included (num_batches_tracked too).
  EXPECT_NE(weights_of(*a).find("bottleneck.num_batches_tracked"), nullptr);
}

}  // namespace
}  // namespace tandem::methods::models
