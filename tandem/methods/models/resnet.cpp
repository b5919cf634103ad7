#include "tandem/methods/models/resnet.h"

#include <torch/torch.h>

namespace tandem::methods::models {
namespace {

namespace nn = torch::nn;

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

// torchvision's initialisation: Kaiming-normal (fan_out, ReLU) convolutions,
// norm weights 1 and biases 0.
void init_resnet_weights(nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& child : module.modules(/*include_self=*/false)) {
    if (auto* c = child->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(c->weight, 0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = child->as<nn::BatchNorm2d>()) {
      bn->weight.fill_(1);
      bn->bias.zero_();
    } else if (auto* in = child->as<nn::InstanceNorm2d>()) {
      in->weight.fill_(1);
      in->bias.zero_();
    }
  }
}

}  // namespace

InstanceBatchNormImpl::InstanceBatchNormImpl(int64_t channels_) : channels(channels_) {
  reset();
}

void InstanceBatchNormImpl::reset() {
  TORCH_CHECK(channels >= 2, "InstanceBatchNorm: channels must be at least 2, got ", channels);
  half = channels / 2;  // int(channels * 0.5)
  IN = register_module("IN", nn::InstanceNorm2d(nn::InstanceNorm2dOptions(half).affine(true)));
  BN = register_module("BN", nn::BatchNorm2d(channels - half));
}

torch::Tensor InstanceBatchNormImpl::forward(const torch::Tensor& x) {
  auto parts = x.split({half, channels - half}, 1);
  return torch::cat({IN(parts[0].contiguous()), BN(parts[1].contiguous())}, 1);
}

ResidualBlockImpl::ResidualBlockImpl(bool bottleneck_, int64_t in_channels_, int64_t planes_,
                                     int64_t stride_, bool ibn_)
    : bottleneck(bottleneck_),
      in_channels(in_channels_),
      planes(planes_),
      stride(stride_),
      ibn(ibn_) {
  reset();
}

void ResidualBlockImpl::reset() {
  if (bottleneck) {
    conv1 = register_module("conv1", conv(in_channels, planes, 1, 1, 0));
    conv2 = register_module("conv2", conv(planes, planes, 3, stride, 1));
    conv3 = register_module("conv3", conv(planes, planes * 4, 1, 1, 0));
    bn3 = register_module("bn3", nn::BatchNorm2d(planes * 4));
  } else {
    conv1 = register_module("conv1", conv(in_channels, planes, 3, stride, 1));
    conv2 = register_module("conv2", conv(planes, planes, 3, 1, 1));
  }
  bn1 = ibn ? nn::AnyModule(InstanceBatchNorm(planes)) : nn::AnyModule(nn::BatchNorm2d(planes));
  register_module("bn1", bn1.ptr());
  bn2 = register_module("bn2", nn::BatchNorm2d(planes));
  const int64_t out_channels = planes * expansion();
  if (stride != 1 || in_channels != out_channels) {
    downsample =
        register_module("downsample", nn::Sequential(conv(in_channels, out_channels, 1, stride, 0),
                                                     nn::BatchNorm2d(out_channels)));
  }
}

torch::Tensor ResidualBlockImpl::forward(const torch::Tensor& x) {
  // In-place ReLUs and residual add, as torchvision's blocks: none of them
  // overwrites a tensor that autograd keeps (BatchNorm's backward needs its
  // input, not its output; ReLU's needs its output), and at MMT's sizes each
  // spared allocation is tens of MB of fresh, zero-filled pages.
  auto out = bn1.forward(conv1(x)).relu_();
  out = bn2(conv2(out));
  if (bottleneck) out = bn3(conv3(out.relu_()));
  out += downsample ? downsample->forward(x) : x;
  return out.relu_();
}

ReidResNetImpl::ReidResNetImpl(ReidResNetOptions options_) : options(options_) {
  reset();
}

void ReidResNetImpl::reset() {
  const int64_t depth = options.depth();
  std::vector<int64_t> blocks;
  switch (depth) {
    case 18: blocks = {2, 2, 2, 2}; break;
    case 34:
    case 50: blocks = {3, 4, 6, 3}; break;
    case 101: blocks = {3, 4, 23, 3}; break;
    default: TORCH_CHECK(false, "ReidResNet: depth must be 18, 34, 50 or 101, got ", depth);
  }
  TORCH_CHECK(options.last_stride() == 1 || options.last_stride() == 2,
              "ReidResNet: last_stride must be 1 or 2, got ", options.last_stride());
  const bool bottleneck = depth >= 50;
  const int64_t expansion = bottleneck ? 4 : 1;

  conv1 = register_module("conv1", conv(3, 64, 7, 2, 3));
  bn1 = register_module("bn1", nn::BatchNorm2d(64));
  int64_t in_channels = 64;
  const auto make_layer = [&](int64_t planes, int64_t count, int64_t stride, bool ibn) {
    nn::Sequential layer;
    for (int64_t i = 0; i < count; ++i) {
      layer->push_back(ResidualBlock(bottleneck, in_channels, planes, i == 0 ? stride : 1, ibn));
      in_channels = planes * expansion;
    }
    return layer;
  };
  const bool ibn = options.ibn_a();
  layer1 = register_module("layer1", make_layer(64, blocks[0], 1, ibn));
  layer2 = register_module("layer2", make_layer(128, blocks[1], 2, ibn));
  layer3 = register_module("layer3", make_layer(256, blocks[2], 2, ibn));
  layer4 = register_module("layer4", make_layer(512, blocks[3], options.last_stride(), false));
  init_resnet_weights(*this);
}

void ReidResNetImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::models::ReidResNet(depth=" << options.depth()
         << ", last_stride=" << options.last_stride() << ", stem_relu=" << std::boolalpha
         << options.stem_relu() << ", ibn_a=" << options.ibn_a() << ")";
}

torch::Tensor ReidResNetImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, "ReidResNet: input must be (N, 3, H, W), got ",
              x.sizes());
  auto out = bn1(conv1(x));
  if (options.stem_relu()) out.relu_();
  out = torch::max_pool2d(out, /*kernel_size=*/3, /*stride=*/2, /*padding=*/1);
  out = layer1->forward(out);
  out = layer2->forward(out);
  out = layer3->forward(out);
  return layer4->forward(out);
}

int64_t ReidResNetImpl::out_features() const {
  return options.depth() >= 50 ? 2048 : 512;
}

ReidResNet reid_resnet50() {
  return ReidResNet(ReidResNetOptions().depth(50));
}

ReidResNet reid_resnet18() {
  return ReidResNet(ReidResNetOptions().depth(18));
}

ReidResNet resnet50_ibn_a(int64_t last_stride) {
  return ReidResNet(
      ReidResNetOptions().depth(50).ibn_a(true).stem_relu(true).last_stride(last_stride));
}

SmallReidNetImpl::SmallReidNetImpl(SmallReidNetOptions options_) : options(options_) {
  reset();
}

void SmallReidNetImpl::reset() {
  const int64_t w = options.width();
  TORCH_CHECK(w >= 1, "SmallReidNet: width must be positive, got ", w);
  TORCH_CHECK(options.depth() >= 1 && options.depth() <= 8,
              "SmallReidNet: depth must be in [1, 8], got ", options.depth());
  features = nn::Sequential();
  int64_t in = 3;
  const std::array<std::pair<int64_t, int64_t>, 4> stages{
      {{w, 2}, {2 * w, 2}, {4 * w, 2}, {8 * w, 1}}};
  for (const auto& [out, stride] : stages) {
    for (int64_t layer = 0; layer < options.depth(); ++layer) {
      features->push_back(conv(in, out, 3, layer == 0 ? stride : 1, 1));
      features->push_back(nn::BatchNorm2d(out));
      // In place, as torchvision's ReLU(inplace=True) (the BatchNorm output
      // is not kept by autograd).
      features->push_back(nn::Functional([](const torch::Tensor& t) { return t.relu_(); }));
      in = out;
    }
  }
  register_module("features", features);
  init_resnet_weights(*this);
}

void SmallReidNetImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::models::SmallReidNet(width=" << options.width();
  if (options.depth() != 1) stream << ", depth=" << options.depth();
  stream << ")";
}

torch::Tensor SmallReidNetImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, "SmallReidNet: input must be (N, 3, H, W), got ",
              x.sizes());
  return features->forward(x);
}

}  // namespace tandem::methods::models
