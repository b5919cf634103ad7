#include "tandem/methods/models/resnet.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "support/golden.h"
#include "support/python.h"
#include "tandem/methods/models/weights.h"
#include "tandem/methods/serialization.h"

namespace tandem::methods::models {
namespace {

namespace fs = std::filesystem;
using testing::error_message;
using testing::python_has;
using testing::run_python;
using testing::tensors_close;

int64_t parameter_count(const torch::nn::Module& module) {
  int64_t count = 0;
  for (const auto& p : module.parameters()) count += p.numel();
  return count;
}

TEST(ReidResNet, Resnet50HasLastStrideOneAndTorchvisionSize) {
  auto model = reid_resnet50();
  model->eval();
  auto out = model(torch::randn({1, 3, 64, 32}));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, 2048, 4, 2}));  // stride 16
  // torchvision resnet50 has 25,557,032 parameters, 2,049,000 of them in fc.
  EXPECT_EQ(parameter_count(*model), 25557032 - 2049000);
  EXPECT_EQ(model->out_features(), 2048);
}

TEST(ReidResNet, Resnet18AndLastStrideTwo) {
  auto model = reid_resnet18();
  EXPECT_EQ(parameter_count(*model), 11689512 - 513000);  // torchvision resnet18 minus fc
  auto torchvision_like = ReidResNet(ReidResNetOptions().depth(18).last_stride(2));
  torchvision_like->eval();
  EXPECT_EQ(torchvision_like(torch::randn({1, 3, 64, 32})).sizes(),
            (std::vector<int64_t>{1, 512, 2, 1}));
}

TEST(ReidResNet, StemReluChangesTheOutput) {
  auto plain = reid_resnet18();
  auto with_relu = std::dynamic_pointer_cast<ReidResNetImpl>(plain->clone());
  with_relu->options.stem_relu(true);
  plain->eval();
  with_relu->eval();
  auto x = torch::randn({1, 3, 64, 32});
  EXPECT_FALSE(torch::allclose(plain(x), with_relu->forward(x)));
}

TEST(ReidResNet, IbnAUsesInstanceNormOnHalfTheChannelsOfLayers1To3) {
  auto model = resnet50_ibn_a();
  const auto params = model->named_parameters();
  ASSERT_NE(params.find("layer1.0.bn1.IN.weight"), nullptr);
  EXPECT_EQ(params["layer1.0.bn1.IN.weight"].size(0), 32);
  EXPECT_EQ(params["layer1.0.bn1.BN.weight"].size(0), 32);
  EXPECT_EQ(params["layer3.5.bn1.IN.weight"].size(0), 128);
  EXPECT_EQ(params.find("layer4.0.bn1.IN.weight"), nullptr);
  EXPECT_NE(params.find("layer4.0.bn1.weight"), nullptr);
  model->eval();
  EXPECT_EQ(model(torch::randn({1, 3, 64, 32})).sizes(), (std::vector<int64_t>{1, 2048, 4, 2}));
}

TEST(ReidResNet, RejectsUnknownDepthAndBadInput) {
  EXPECT_NE(error_message([] {
              ReidResNet(ReidResNetOptions().depth(42));
            }).find("depth must be 18, 34, 50 or 101, got 42"),
            std::string::npos);
  auto model = reid_resnet18();
  EXPECT_NE(error_message([&] {
              model(torch::randn({1, 1, 32, 32}));
            }).find("input must be (N, 3, H, W)"),
            std::string::npos);
}

TEST(SmallReidNet, IsSmallAndStridesByEight) {
  SmallReidNet model;
  EXPECT_LT(parameter_count(*model), 400000);
  model->eval();
  EXPECT_EQ(model(torch::randn({2, 3, 64, 32})).sizes(), (std::vector<int64_t>{2, 128, 8, 4}));
}

TEST(SmallReidNet, DepthAddsStrideOneLayersPerStage) {
  SmallReidNet shallow(SmallReidNetOptions().width(8));
  SmallReidNet deep(SmallReidNetOptions().width(8).depth(3));
  // Each stage gains two 3x3 convs of its own width (and their BN).
  int64_t extra = 0;
  for (int64_t w : {8, 16, 32, 64}) extra += 2 * (w * w * 9 + 2 * w);
  EXPECT_EQ(parameter_count(*deep) - parameter_count(*shallow), extra);
  deep->eval();
  EXPECT_EQ(deep(torch::randn({1, 3, 64, 32})).sizes(), (std::vector<int64_t>{1, 64, 8, 4}));
  EXPECT_THROW(SmallReidNet(SmallReidNetOptions().depth(0)), c10::Error);
}

// Torchvision's ResNet with the re-ID changes, built by the project venv's
// torchvision: its weights load into ReidResNet by name and give the
// same output; ReidResNet's exported weights load back in Python.
class TorchvisionEquivalence
    : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(TorchvisionEquivalence, WeightsLoadBothWaysAndOutputsMatch) {
  if (!python_has("torch, torchvision")) {
    GTEST_SKIP() << testing::kPython
                 << " cannot import torch and torchvision "
                    "(scripts/setup installs them into the project's venv)";
  }
  const auto& [arch, format] = GetParam();
  const fs::path dir = fs::temp_directory_path() /
                       ("tandem-resnet-" + arch + "-" + format + "-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string script =
      std::string(TANDEM_SOURCE_DIR) + "/tests/methods/models/torchvision_reference.py";
  ASSERT_EQ(run_python(script + " export " + dir.string() + " " + arch + " " + format), 0);

  auto model = arch == "resnet50" ? reid_resnet50() : reid_resnet18();
  const auto report = load_weights(*model, load_state_dict((dir / "weights.pth").string()));
  EXPECT_TRUE(report.missing.empty()) << report.summary();
  EXPECT_TRUE(report.mismatched.empty()) << report.summary();
  EXPECT_EQ(report.unexpected, (std::vector<std::string>{"fc.weight", "fc.bias"}))
      << report.summary();
  model->eval();
  const auto reference = load_torch_file((dir / "reference.pt").string()).toGenericDict();
  const auto input = reference.at("input").toTensor();
  const auto output = model(input);
  EXPECT_TRUE(tensors_close(output, reference.at("output").toTensor(), 1e-4, 1e-4));

  save_state_dict(weights_of(*model), (dir / "tandem_weights.pt").string());
  StateDict io;
  io.insert("input", input);
  io.insert("output", output.detach());
  save_state_dict(io, (dir / "tandem_io.pt").string());
  EXPECT_EQ(run_python(script + " check " + dir.string() + " " + arch), 0);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Models, TorchvisionEquivalence,
                         ::testing::Values(std::make_tuple("resnet18", "zip"),
                                           std::make_tuple("resnet50", "legacy")),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param);
                         });

}  // namespace
}  // namespace tandem::methods::models
