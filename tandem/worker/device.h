// The device a rank trains on, chosen from a job spec's `device` and the
// process's LOCAL_RANK, and the backend settings that go with it.
//
// Spec values: "auto" (CUDA when the build has it and a GPU is visible,
// else the CPU), "cpu", "cuda" (cuda:LOCAL_RANK: one rank per GPU, as
// torchrun lays ranks out) and "cuda:N". A CUDA request that the host
// cannot serve is an error before any work, never a silent CPU run.
#pragma once

#include <cstdint>
#include <string>

#include <c10/core/Device.h>

namespace tandem::worker {

/// What this process can see of CUDA; tests pass their own.
struct DeviceProbe {
  /// The build has CUDA (TANDEM_WITH_CUDA) and LibTorch's CUDA runtime loads.
  bool cuda_built = false;
  /// GPUs visible to this process (torch::cuda::device_count()).
  int64_t gpus = 0;
  /// This process's view.
  static DeviceProbe current();
};

/// The device for spec value `requested` on the rank with `local_rank`
/// (its index among the ranks of its host). Throws c10::Error naming
/// spec.device and what the host has.
c10::Device resolve_device(const std::string& requested, int64_t local_rank,
                           const DeviceProbe& probe = DeviceProbe::current());

/// Makes a CUDA `device` the process's current one (where NCCL and
/// tensors created without a device go); nothing for the CPU.
void make_current(const c10::Device& device);

/// cuDNN's autotuner (benchmark mode) on, unless `deterministic`, which
/// asks cuDNN for deterministic algorithms instead. Harmless on the CPU.
void configure_backends(bool deterministic);

}  // namespace tandem::worker
