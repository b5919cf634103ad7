// Reading files written by Python's torch.save, and writing state dicts that
// Python's torch.load reads.
//
// LibTorch's own torch::pickle_load cannot read real state dicts (it turns
// collections.OrderedDict into None and lacks the SETITEM opcode), so this is
// a small unpickler for the subset of pickle that torch.save produces: pickle
// protocols 2 to 4, the zip format of torch >= 1.6 and the legacy format
// (magic number, protocol version, sys_info, object pickle, storage keys, raw
// storages) of older files such as torchvision's resnet50-19c8e357.pth.
#pragma once

#include <string>

#include <ATen/core/ivalue.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>

namespace tandem::methods {

/// Reads a file written by Python's torch.save: the zip format (torch >= 1.6)
/// and the legacy format. Dicts (dict, OrderedDict) become GenericDicts in file
/// order, tuples Tuples, lists GenericLists, tensors keep dtype, shape, strides,
/// storage offset and storage sharing; None/bool/int/float/str as IValues.
/// Instances of other Python classes (numpy scalars, argparse.Namespace, ...)
/// load as None. Throws c10::Error naming the file and what is wrong.
///
/// Details: every tensor is loaded onto the CPU whatever its saved location;
/// tensors saved with requires_grad (nn.Parameter) keep it; Python bytes and
/// Python 2 str load as std::string holding the raw bytes; a Python int that
/// does not fit in int64 is an error. Objects shared in the file (a list
/// referenced twice, tensors viewing one storage) stay shared.
c10::IValue load_torch_file(const std::string& path);
/// The same from bytes already in memory (`what` names them in errors).
c10::IValue load_torch_bytes(const std::string& bytes, const std::string& what = "buffer");

/// name -> tensor, in file order.
using StateDict = torch::OrderedDict<std::string, torch::Tensor>;
/// A state dict from a torch.save file holding a state dict, or a checkpoint
/// dict with a "state_dict" (MMT, TLlib) or "model" entry holding one. A
/// leading "module." (DataParallel) is stripped from every key. Non-tensor
/// entries are skipped. Throws c10::Error if no tensor dict is found.
/// The tensors are detached (they never require grad), CPU, and keep the
/// file's dtypes, shapes and storage sharing.
StateDict load_state_dict(const std::string& path);
/// Writes `state` so that Python's torch.load (weights_only=True, its default
/// since torch 2.6) returns a dict name -> tensor that
/// nn.Module.load_state_dict accepts: torch.save's zip layout, a plain dict
/// pickled without TorchScript type tags, tensors made contiguous CPU first.
/// Written atomically: temp file in the same folder, fsync, rename.
void save_state_dict(const StateDict& state, const std::string& path);

}  // namespace tandem::methods
