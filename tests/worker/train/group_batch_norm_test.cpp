#include "tandem/worker/train/group_batch_norm.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tiny_reid.h"

namespace tandem::worker {
namespace {
using methods::models::ReIdentifier;
using testing::tiny_model;

ReIdentifier copy_of(const ReIdentifier& model) {
  return ReIdentifier(std::dynamic_pointer_cast<methods::models::ReIdentifierImpl>(model->clone()));
}

std::vector<torch::Tensor> buffers_of(const ReIdentifier& model) {
  std::vector<torch::Tensor> out;
  for (const auto& b : model->buffers()) out.push_back(b.detach().clone());
  return out;
}

void set_momentum(ReIdentifier& model, double momentum) {
  for (const auto& m : model->modules(false)) {
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get()))
      bn->options.momentum(momentum);
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm1dImpl*>(m.get()))
      bn->options.momentum(momentum);
  }
}

TEST(ForwardInGroups, EachGroupIsNormalisedAloneAndRunningStatsAverageTheGroups) {
  ReIdentifier model = tiny_model(1);
  model->train();
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({12, 3, 32, 16});
  const auto before = buffers_of(model);

  // Reference: each group of 4 through its own copy with momentum 1, so
  // that the copy's running buffers are exactly that group's statistics.
  std::vector<torch::Tensor> logits, neck;
  std::vector<std::vector<torch::Tensor>> group_stats;
  for (int g = 0; g < 3; ++g) {
    ReIdentifier alone = copy_of(model);
    set_momentum(alone, 1.0);
    const auto out = alone->forward(x.narrow(0, 4 * g, 4));
    logits.push_back(out.logits.detach());
    neck.push_back(out.neck.detach());
    group_stats.push_back(buffers_of(alone));
  }

  const auto out = forward_in_groups(model, x, 4);
  EXPECT_TRUE(torch::allclose(out.logits.detach(), torch::cat(logits), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(out.neck.detach(), torch::cat(neck), 1e-5, 1e-6));
  const auto after = buffers_of(model);
  ASSERT_EQ(after.size(), before.size());
  const double m = 0.1;  // the layers' momentum, restored afterwards
  for (size_t i = 0; i < after.size(); ++i) {
    if (!after[i].is_floating_point()) {
      EXPECT_EQ(after[i].item<int64_t>(), before[i].item<int64_t>() + 1) << "counter " << i;
      continue;
    }
    const torch::Tensor mean_of_groups =
        (group_stats[0][i] + group_stats[1][i] + group_stats[2][i]) / 3;
    const torch::Tensor expected = before[i] * (1 - m) + mean_of_groups * m;
    EXPECT_TRUE(torch::allclose(after[i], expected, 1e-5, 1e-6)) << "buffer " << i;
  }
  for (const auto& module : model->modules(false)) {
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(module.get())) {
      EXPECT_EQ(bn->options.momentum().value(), 0.1);
    }
  }
}

TEST(ForwardInGroups, TwoHalvesWithAveragedBuffersEqualTheWhole) {
  // What two ranks do: each forwards half of the batch in groups, then the
  // buffers are averaged. Same outputs and buffers as one rank on the whole.
  ReIdentifier whole = tiny_model(2);
  whole->train();
  ReIdentifier half_0 = copy_of(whole), half_1 = copy_of(whole);
  half_0->train();
  half_1->train();
  torch::manual_seed(6);
  const torch::Tensor x = torch::randn({16, 3, 32, 16});
  const auto all = forward_in_groups(whole, x, 4);
  const auto a = forward_in_groups(half_0, x.narrow(0, 0, 8), 4);
  const auto b = forward_in_groups(half_1, x.narrow(0, 8, 8), 4);
  EXPECT_TRUE(torch::allclose(all.features, torch::cat({a.features, b.features}), 1e-5, 1e-6));
  const auto w = buffers_of(whole), p = buffers_of(half_0), q = buffers_of(half_1);
  for (size_t i = 0; i < w.size(); ++i) {
    if (!w[i].is_floating_point()) continue;
    EXPECT_TRUE(torch::allclose(w[i], (p[i] + q[i]) / 2, 1e-5, 1e-6)) << "buffer " << i;
  }
  // Without groups the halves normalise over 8 images, not 4: different.
  ReIdentifier plain = copy_of(whole);
  plain->train();
  const auto ungrouped = plain->forward(x.narrow(0, 0, 8));
  EXPECT_FALSE(torch::allclose(ungrouped.features, a.features, 1e-3, 1e-4));
}

TEST(ForwardInGroups, EvalModeAndGroupsCoveringTheBatchArePlainForwards) {
  ReIdentifier model = tiny_model(3);
  torch::manual_seed(7);
  const torch::Tensor x = torch::randn({6, 3, 32, 16});
  model->eval();
  EXPECT_TRUE(torch::equal(forward_in_groups(model, x, 2).neck, model->forward(x).neck));
  model->train();
  ReIdentifier copy = copy_of(model);
  copy->train();
  EXPECT_TRUE(torch::equal(forward_in_groups(model, x, 16).neck, copy->forward(x).neck));
}

TEST(ForwardInGroups, GroupThatDoesNotDivideTheBatchIsAClearError) {
  ReIdentifier model = tiny_model(4);
  model->train();
  try {
    forward_in_groups(model, torch::randn({6, 3, 32, 16}), 4);
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("bn_group_size 4 must divide"),
              std::string::npos)
        << e.what_without_backtrace();
  }
}

}  // namespace
}  // namespace tandem::worker
