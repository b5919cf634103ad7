#include "tandem/worker/train/checkpoint.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <type_traits>

#include "tandem/methods/models/weights.h"

namespace tandem::worker {

const torch::Tensor& state_entry(const StateDict& state, const std::string& name) {
  const torch::Tensor* entry = state.find(name);
  TORCH_CHECK(entry != nullptr, "checkpoint has no entry '", name, "'");
  return *entry;
}

void add_module_state(StateDict& state, const std::string& prefix,
                      const torch::nn::Module& module) {
  for (const auto& item : methods::models::weights_of(module)) {
    state.insert(prefix + "." + item.key(), item.value().detach().clone());
  }
}

void load_module_state(torch::nn::Module& module, const StateDict& state,
                       const std::string& prefix) {
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters(true)) {
    const torch::Tensor& saved = state_entry(state, prefix + "." + item.key());
    TORCH_CHECK(saved.sizes() == item.value().sizes(), "checkpoint entry '", prefix, ".",
                item.key(), "' has shape ", saved.sizes(), ", the model ", item.value().sizes());
    item.value().copy_(saved);
  }
  for (auto& item : module.named_buffers(true)) {
    const torch::Tensor& saved = state_entry(state, prefix + "." + item.key());
    TORCH_CHECK(saved.sizes() == item.value().sizes(), "checkpoint entry '", prefix, ".",
                item.key(), "' has shape ", saved.sizes(), ", the model ", item.value().sizes());
    item.value().copy_(saved);
  }
}

void add_adam_state(StateDict& state, const std::string& prefix, torch::optim::Adam& adam) {
  auto& map = adam.state();
  using Map = std::decay_t<decltype(map)>;
  int64_t index = 0;
  for (auto& group : adam.param_groups()) {
    for (auto& p : group.params()) {
      const auto found = map.find(optimizer_state_key<Map>(p));
      const std::string name = prefix + "." + std::to_string(index++);
      if (found == map.end()) continue;  // no step taken for this parameter yet
      auto& s = static_cast<torch::optim::AdamParamState&>(*found->second);
      state.insert(name + ".step", torch::tensor(s.step(), torch::kInt64));
      state.insert(name + ".exp_avg", s.exp_avg().detach().clone());
      state.insert(name + ".exp_avg_sq", s.exp_avg_sq().detach().clone());
    }
  }
}

void load_adam_state(torch::optim::Adam& adam, const StateDict& state, const std::string& prefix) {
  auto& map = adam.state();
  using Map = std::decay_t<decltype(map)>;
  map.clear();
  int64_t index = 0;
  for (auto& group : adam.param_groups()) {
    for (auto& p : group.params()) {
      const std::string name = prefix + "." + std::to_string(index++);
      if (state.find(name + ".step") == nullptr) continue;
      auto s = std::make_unique<torch::optim::AdamParamState>();
      s->step(state_entry(state, name + ".step").item<int64_t>());
      // Checkpoints hold CPU tensors; the moments go where the parameter is
      // (a job saved on the CPU resumes on a GPU and back).
      s->exp_avg(state_entry(state, name + ".exp_avg").to(p.device(), false, /*copy=*/true));
      s->exp_avg_sq(state_entry(state, name + ".exp_avg_sq").to(p.device(), false, true));
      TORCH_CHECK(s->exp_avg().sizes() == p.sizes(), "checkpoint entry '", name,
                  ".exp_avg' does not match its parameter's shape ", p.sizes());
      map[optimizer_state_key<Map>(p)] = std::move(s);
    }
  }
}

void set_meta(StateDict& state, const std::string& name, double value) {
  state.insert("meta." + name, torch::tensor(value, torch::kFloat64));
}

double get_meta(const StateDict& state, const std::string& name) {
  return state_entry(state, "meta." + name).item<double>();
}

}  // namespace tandem::worker
