#include "tandem/worker/device.h"

#include <ATen/Context.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>
#ifdef TANDEM_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace tandem::worker {

DeviceProbe DeviceProbe::current() {
  DeviceProbe probe;
#ifdef TANDEM_WITH_CUDA
  probe.cuda_built = true;
  probe.gpus = static_cast<int64_t>(torch::cuda::device_count());
#endif
  return probe;
}

namespace {

std::string gpus_text(const DeviceProbe& probe) {
  if (!probe.cuda_built) return "this build has no CUDA";
  if (probe.gpus == 0) return "no GPU is visible (torch::cuda::device_count() is 0)";
  return std::to_string(probe.gpus) + (probe.gpus == 1 ? " GPU is" : " GPUs are") + " visible";
}

c10::Device cuda_device(const std::string& requested, int64_t index, const char* what,
                        const DeviceProbe& probe) {
  TORCH_CHECK(probe.cuda_built && probe.gpus > 0, "spec.device: ", requested, ", but ",
              gpus_text(probe), " (use device: cpu or auto)");
  TORCH_CHECK(index < probe.gpus, "spec.device: ", requested, " means cuda:", index, " (", what,
              "), but ", gpus_text(probe));
  return c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace

c10::Device resolve_device(const std::string& requested, int64_t local_rank,
                           const DeviceProbe& probe) {
  TORCH_CHECK(local_rank >= 0, "LOCAL_RANK must be >= 0, got ", local_rank);
  if (requested == "cpu") return c10::Device(c10::DeviceType::CPU);
  if (requested == "auto") {
    if (!probe.cuda_built || probe.gpus == 0) return c10::Device(c10::DeviceType::CPU);
    return cuda_device(requested, local_rank, "LOCAL_RANK", probe);
  }
  if (requested == "cuda") return cuda_device(requested, local_rank, "LOCAL_RANK", probe);
  if (requested.rfind("cuda:", 0) == 0) {
    const std::string digits = requested.substr(5);
    const bool numeric = !digits.empty() && digits.size() <= 4 &&
                         digits.find_first_not_of("0123456789") == std::string::npos;
    TORCH_CHECK(numeric, "spec.device: '", requested,
                "' is not a device (auto, cpu, cuda or cuda:N with N a GPU index)");
    return cuda_device(requested, std::stoll(digits), "its index", probe);
  }
  TORCH_CHECK(false, "spec.device: '", requested,
              "' is not a device (auto, cpu, cuda or cuda:N with N a GPU index)");
}

void make_current(const c10::Device& device) {
  if (!device.is_cuda()) return;
#ifdef TANDEM_WITH_CUDA
  c10::cuda::set_device(device.index() < 0 ? 0 : device.index());
#else
  TORCH_CHECK(false, "make_current(", device.str(), "): this build has no CUDA");
#endif
}

void configure_backends(bool deterministic) {
  auto& context = at::globalContext();
  context.setBenchmarkCuDNN(!deterministic);
  context.setDeterministicCuDNN(deterministic);
}

}  // namespace tandem::worker
