// ResNet backbones for person re-identification.
//
// He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR
// 2016; re-ID changes after Luo et al., "Bag of Tricks and a Strong Baseline
// for Deep Person Re-identification", CVPRW 2019 (last stride 1), and the
// MMT code (no ReLU after the stem BN). IBN-a: Pan, Luo, Shi, Tang, "Two at
// Once: Enhancing Learning and Generalization Capacities via IBN-Net", ECCV
// 2018. Layer and weight names are torchvision's, so torchvision state dicts
// load by name (see weights.h).
#pragma once

#include <cstdint>
#include <ostream>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/functional/instancenorm.h>  // modules/instancenorm.h needs it first
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/instancenorm.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace tandem::methods::models {

/// Options of ReidResNet.
struct ReidResNetOptions {
  /// 18 or 34 (basic blocks, 512 output channels), 50 or 101 (bottlenecks,
  /// 2048 output channels).
  TORCH_ARG(int64_t, depth) = 50;
  /// Stride of layer4: 1 for re-ID (a 16 × 8 map for 256 × 128 input), 2 as
  /// in torchvision.
  TORCH_ARG(int64_t, last_stride) = 1;
  /// ReLU after the stem's bn1. MMT and TLlib's ReidResNet drop it; IBN-a
  /// keeps it.
  TORCH_ARG(bool, stem_relu) = false;
  /// Instance-batch normalisation (IBN-a) in the first norm of every block
  /// of layer1–layer3.
  TORCH_ARG(bool, ibn_a) = false;
};

/// IBN-a normalisation: InstanceNorm (affine) on the first
/// int(0.5 · channels) channels, BatchNorm on the rest. Children "IN", "BN".
class InstanceBatchNormImpl : public torch::nn::Cloneable<InstanceBatchNormImpl> {
 public:
  explicit InstanceBatchNormImpl(int64_t channels);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  int64_t channels;
  int64_t half;
  torch::nn::InstanceNorm2d IN{nullptr};  // NOLINT(readability-identifier-naming): IBN-Net's name
  torch::nn::BatchNorm2d BN{nullptr};     // NOLINT(readability-identifier-naming): IBN-Net's name
};
TORCH_MODULE(InstanceBatchNorm);

/// A residual block (basic for depth 18/34, bottleneck for 50/101), with
/// torchvision's child names: conv1, bn1, conv2, bn2[, conv3, bn3],
/// downsample. The stride sits on the 3 × 3 convolution (ResNet v1.5).
class ResidualBlockImpl : public torch::nn::Cloneable<ResidualBlockImpl> {
 public:
  ResidualBlockImpl(bool bottleneck, int64_t in_channels, int64_t planes, int64_t stride, bool ibn);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);

  bool bottleneck;
  int64_t in_channels;
  int64_t planes;
  int64_t stride;
  bool ibn;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::AnyModule bn1;
  torch::nn::BatchNorm2d bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};

  /// Channel expansion: 4 for bottlenecks, 1 for basic blocks.
  int64_t expansion() const { return bottleneck ? 4 : 1; }
};
TORCH_MODULE(ResidualBlock);

/// ResNet trunk without pooling and classifier: conv1 → bn1 [→ relu] →
/// maxpool → layer1…layer4. forward(x (N, 3, H, W)) → (N, out_features,
/// H/16, W/16) with last_stride 1 (H/32, W/32 with 2).
class ReidResNetImpl : public torch::nn::Cloneable<ReidResNetImpl> {
 public:
  explicit ReidResNetImpl(ReidResNetOptions options = {});
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& x);
  /// Channels of the output map (2048 for depth 50).
  int64_t out_features() const;

  ReidResNetOptions options;
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
};
TORCH_MODULE(ReidResNet);

/// ResNet-50 for re-ID as in MMT and TLlib: last stride 1, no stem ReLU.
ReidResNet reid_resnet50();
/// ResNet-18 with the same re-ID changes (512-d features).
ReidResNet reid_resnet18();
/// IBN-ResNet-50-a as in MMT's resnet_ibn50a: IBN-a, stem ReLU kept, last
/// stride 1 (pass last_stride 2 for TLlib's variant).
ReidResNet resnet50_ibn_a(int64_t last_stride = 1);

/// Options of SmallReidNet.
struct SmallReidNetOptions {
  /// Channels of the first stage; the output has 8 × width channels.
  TORCH_ARG(int64_t, width) = 16;
  /// conv3×3-BN-ReLU layers per stage: the first with the stage's stride,
  /// the others with stride 1 (1: four layers in all; 2 or 3 see more context
  /// and learn identities far better from scratch, see docs/training.md).
  TORCH_ARG(int64_t, depth) = 1;
};

/// A small, fast convolutional backbone for CPU tests and demos: four
/// conv3×3-BN-ReLU stages (strides 2, 2, 2, 1; widths w, 2w, 4w, 8w) of
/// `depth` layers each.
/// forward(x (N, 3, H, W)) → (N, 8w, H/8, W/8).
class SmallReidNetImpl : public torch::nn::Cloneable<SmallReidNetImpl> {
 public:
  explicit SmallReidNetImpl(SmallReidNetOptions options = {});
  void reset() override;
  void pretty_print(std::ostream& stream) const override;
  torch::Tensor forward(const torch::Tensor& x);
  int64_t out_features() const { return 8 * options.width(); }

  SmallReidNetOptions options;
  torch::nn::Sequential features{nullptr};
};
TORCH_MODULE(SmallReidNet);

}  // namespace tandem::methods::models
