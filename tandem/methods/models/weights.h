// Moving weights between Tandem models and PyTorch state dicts by name.
//
// Tandem's models use torchvision's (ResNet) and TLlib's (ReIdentifier, AFN)
// names, so a state dict written by Python's torch.save loads by key
// intersection, and Tandem's weights exported with save_state_dict load in
// Python with nn.Module.load_state_dict.
#pragma once

#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "tandem/methods/serialization.h"

namespace tandem::methods::models {

/// What load_weights did, name by name.
struct LoadReport {
  /// Copied into the module.
  std::vector<std::string> loaded;
  /// In the module but not in the state dict (left as they were).
  std::vector<std::string> missing;
  /// In the state dict but not in the module (e.g. torchvision's fc.*).
  std::vector<std::string> unexpected;
  /// In both with different shapes (left as they were), "name: a vs b".
  std::vector<std::string> mismatched;
  /// One line: counts and the first few names of each list.
  std::string summary() const;
};

/// Copies every tensor of `state` whose name and shape match a parameter or
/// buffer of `module` (key intersection, as MMT and TLlib load ImageNet
/// weights) and reports the rest. Values are converted to the module's
/// device and dtype.
LoadReport load_weights(torch::nn::Module& module, const StateDict& state);

/// The module's parameters and buffers by name, in module order (detached,
/// on their device): what Python's model.state_dict() would hold.
StateDict weights_of(const torch::nn::Module& module);

}  // namespace tandem::methods::models
