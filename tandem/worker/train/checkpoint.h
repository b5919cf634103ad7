// Full-state training checkpoints as one flat state dict (name → tensor),
// written atomically by methods::save_state_dict (temp file, fsync, rename)
// in torch.save's format, so Python can read them too. Entries:
//   <prefix>.<parameter or buffer name>   module state (weights_of)
//   <prefix>.<i>.exp_avg / .exp_avg_sq / .step   Adam state of parameter i
//   meta.<name>                           scalars (epoch, steps, eps, ...)
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include <torch/nn/module.h>
#include <torch/optim/adam.h>

#include "tandem/methods/serialization.h"

namespace tandem::worker {

using methods::StateDict;

/// Adds `module`'s parameters and buffers under `prefix.`.
void add_module_state(StateDict& state, const std::string& prefix, const torch::nn::Module& module);
/// Copies the entries under `prefix.` back into `module` (same names and
/// shapes); a missing or mismatched entry is a c10::Error naming it.
void load_module_state(torch::nn::Module& module, const StateDict& state,
                       const std::string& prefix);
/// The tensor `name`, or a c10::Error naming it and the file.
const torch::Tensor& state_entry(const StateDict& state, const std::string& name);

/// Adam's per-parameter state (step, first and second moments) under `prefix.`.
void add_adam_state(StateDict& state, const std::string& prefix, torch::optim::Adam& adam);
void load_adam_state(torch::optim::Adam& adam, const StateDict& state, const std::string& prefix);

/// The key of parameter `p` in an optimizer's state map (`Map` =
/// decltype(Optimizer::state())): LibTorch keys it by the TensorImpl address.
template <typename Map>
typename Map::key_type optimizer_state_key(const torch::Tensor& p) {
  return p.unsafeGetTensorImpl();
}

/// Scalars under `meta.`.
void set_meta(StateDict& state, const std::string& name, double value);
double get_meta(const StateDict& state, const std::string& name);

}  // namespace tandem::worker
