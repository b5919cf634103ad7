#include "tandem/worker/train/checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace tandem::worker {
namespace {

/// One Adam step on a small linear model, so every moment is non-zero.
torch::nn::Linear stepped(torch::optim::Adam*& adam_out,
                          std::unique_ptr<torch::optim::Adam>& holder) {
  torch::manual_seed(3);
  torch::nn::Linear model(4, 3);
  holder = std::make_unique<torch::optim::Adam>(model->parameters(),
                                                torch::optim::AdamOptions(0.01));
  model->forward(torch::randn({5, 4})).square().sum().backward();
  holder->step();
  adam_out = holder.get();
  return model;
}

TEST(Checkpoint, AdamStateRoundTripsBitForBit) {
  torch::optim::Adam* adam = nullptr;
  std::unique_ptr<torch::optim::Adam> holder;
  auto model = stepped(adam, holder);
  StateDict state;
  add_adam_state(state, "opt", *adam);
  torch::nn::Linear other(4, 3);
  torch::optim::Adam restored(other->parameters(), torch::optim::AdamOptions(0.01));
  load_adam_state(restored, state, "opt");
  const auto params = other->parameters();
  const auto original = model->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& a = static_cast<torch::optim::AdamParamState&>(
        *adam->state().at(optimizer_state_key<std::decay_t<decltype(adam->state())>>(original[i])));
    const auto& b = static_cast<torch::optim::AdamParamState&>(*restored.state().at(
        optimizer_state_key<std::decay_t<decltype(restored.state())>>(params[i])));
    EXPECT_EQ(a.step(), b.step());
    EXPECT_TRUE(torch::equal(a.exp_avg(), b.exp_avg()));
    EXPECT_TRUE(torch::equal(a.exp_avg_sq(), b.exp_avg_sq()));
  }
}

TEST(Checkpoint, AdamMomentsFollowTheParametersDevice) {
  // Checkpoints hold CPU tensors; a model on another device (the meta
  // device here, a GPU on a GPU host) gets its moments there, so a job
  // saved on the CPU resumes on a GPU.
  torch::optim::Adam* adam = nullptr;
  std::unique_ptr<torch::optim::Adam> holder;
  stepped(adam, holder);
  StateDict state;
  add_adam_state(state, "opt", *adam);
  const auto meta = torch::TensorOptions().device(torch::kMeta).requires_grad(true);
  const std::vector<torch::Tensor> elsewhere = {torch::empty({3, 4}, meta),
                                                torch::empty({3}, meta)};  // weight, bias
  torch::optim::Adam restored(elsewhere, torch::optim::AdamOptions(0.01));
  load_adam_state(restored, state, "opt");
  for (const auto& p : elsewhere) {
    const auto& s = static_cast<torch::optim::AdamParamState&>(
        *restored.state().at(optimizer_state_key<std::decay_t<decltype(restored.state())>>(p)));
    EXPECT_TRUE(s.exp_avg().is_meta());
    EXPECT_TRUE(s.exp_avg_sq().is_meta());
    EXPECT_EQ(s.exp_avg().sizes(), p.sizes());
  }
}

}  // namespace
}  // namespace tandem::worker
