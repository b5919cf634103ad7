#include "tandem/worker/device.h"

#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/golden.h"

namespace tandem::worker {
namespace {

using testing::error_message;

DeviceProbe host(bool cuda_built, int64_t gpus) {
  DeviceProbe probe;
  probe.cuda_built = cuda_built;
  probe.gpus = gpus;
  return probe;
}

TEST(ResolveDevice, AutoTakesTheRanksGpuWhenThereIsOneElseTheCpu) {
  EXPECT_EQ(resolve_device("auto", 0, host(true, 2)), c10::Device("cuda:0"));
  EXPECT_EQ(resolve_device("auto", 1, host(true, 2)), c10::Device("cuda:1"));
  EXPECT_EQ(resolve_device("auto", 0, host(true, 0)), c10::Device("cpu"));
  EXPECT_EQ(resolve_device("auto", 3, host(false, 0)), c10::Device("cpu"));
}

TEST(ResolveDevice, CpuCudaAndAnIndexedGpu) {
  EXPECT_EQ(resolve_device("cpu", 5, host(true, 8)), c10::Device("cpu"));
  EXPECT_EQ(resolve_device("cuda", 3, host(true, 4)), c10::Device("cuda:3"));
  EXPECT_EQ(resolve_device("cuda:2", 0, host(true, 4)), c10::Device("cuda:2"));
}

TEST(ResolveDevice, ACudaRequestTheHostCannotServeIsAnErrorNamingTheField) {
  EXPECT_EQ(error_message([] { resolve_device("cuda", 0, host(true, 0)); }),
            "spec.device: cuda, but no GPU is visible (torch::cuda::device_count() is 0) (use "
            "device: cpu or auto)");
  EXPECT_EQ(error_message([] { resolve_device("cuda", 0, host(false, 0)); }),
            "spec.device: cuda, but this build has no CUDA (use device: cpu or auto)");
  EXPECT_EQ(error_message([] { resolve_device("cuda", 2, host(true, 2)); }),
            "spec.device: cuda means cuda:2 (LOCAL_RANK), but 2 GPUs are visible");
  EXPECT_EQ(error_message([] { resolve_device("auto", 1, host(true, 1)); }),
            "spec.device: auto means cuda:1 (LOCAL_RANK), but 1 GPU is visible");
  EXPECT_EQ(error_message([] { resolve_device("cuda:4", 0, host(true, 4)); }),
            "spec.device: cuda:4 means cuda:4 (its index), but 4 GPUs are visible");
}

TEST(ResolveDevice, RefusesWhatIsNotADevice) {
  for (const std::string bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""}) {
    EXPECT_NE(error_message([&] { resolve_device(bad, 0, host(true, 1)); })
                  .find("spec.device: '" + bad + "' is not a device"),
              std::string::npos)
        << bad;
  }
  EXPECT_NE(error_message([] { resolve_device("cpu", -1, host(true, 1)); })
                .find("LOCAL_RANK must be >= 0, got -1"),
            std::string::npos);
}

TEST(ResolveDevice, ThisProcessSeesWhatTorchSees) {
  const DeviceProbe probe = DeviceProbe::current();
#ifdef TANDEM_WITH_CUDA
  EXPECT_TRUE(probe.cuda_built);
#endif
  EXPECT_EQ(probe.gpus, probe.cuda_built ? static_cast<int64_t>(torch::cuda::device_count()) : 0);
  EXPECT_EQ(resolve_device("auto", 0).is_cuda(), torch::cuda::is_available());
}

TEST(ConfigureBackends, BenchmarkUnlessDeterministic) {
  auto& context = at::globalContext();
  const bool benchmark = context.benchmarkCuDNN();
  const bool deterministic = context.deterministicCuDNN();
  configure_backends(true);
  EXPECT_FALSE(context.benchmarkCuDNN());
  EXPECT_TRUE(context.deterministicCuDNN());
  configure_backends(false);
  EXPECT_TRUE(context.benchmarkCuDNN());
  EXPECT_FALSE(context.deterministicCuDNN());
  context.setBenchmarkCuDNN(benchmark);
  context.setDeterministicCuDNN(deterministic);
}

}  // namespace
}  // namespace tandem::worker
