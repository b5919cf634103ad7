// Stand-in for a LibTorch header that Debian's libtorch-dev 1.13 leaves out.
//
// c10d/reducer.hpp (the DistributedDataParallel engine, compiled into
// libtorch_cpu) includes torch/csrc/distributed/autograd/context/context.h
// for two names only: DistAutogradContext::GradCallback, in a static_assert
// that it is std::function<bool(at::Tensor&)>, and ContextPtr, the type of
// a std::shared_ptr member and a std::atomic pointer member of the
// Reducer's RPC context, which Tandem never touches. Both have the same
// layout whatever the pointee, so this declaration gives the Reducer the
// layout libtorch was compiled with. worker/CMakeLists.txt adds this folder
// to the include path only when LibTorch's own header is missing (a PyTorch
// wheel has it).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch::distributed::autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace torch::distributed::autograd
