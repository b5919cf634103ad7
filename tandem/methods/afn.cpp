#include "tandem/methods/afn.h"

#include <torch/torch.h>

#include <cmath>

#include "tandem/methods/checks.h"

namespace tandem::methods {
namespace functional {

torch::Tensor adaptive_feature_norm(const torch::Tensor& f,
                                    const AdaptiveFeatureNormOptions& options) {
  constexpr const char* kFn = "adaptive_feature_norm";
  detail::check_dim(f, 2, kFn, "f");
  detail::check_floating(f, kFn, "f");
  detail::check_positive(options.delta(), kFn, "delta");
  TORCH_CHECK(f.size(0) > 0, kFn, ": f is an empty batch");
  const auto norm = f.norm(2, /*dim=*/{1});
  const auto radius = norm.detach() + options.delta();
  return (norm - radius).pow(2).mean();
}

torch::Tensor l2_preserving_dropout(const torch::Tensor& x, double p, bool training) {
  TORCH_CHECK(p >= 0 && p < 1, "l2_preserving_dropout: p must be in [0, 1), got ", p);
  if (!training) return x;
  return torch::dropout(x, p, /*train=*/true) * std::sqrt(1.0 - p);
}

}  // namespace functional

namespace {

// TLlib's initialisation of the bottleneck and head: BN weight ~ N(1, 0.01),
// BN bias 0, Linear weight and bias ~ N(0, 0.01).
void init_afn_weights(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& child : module.modules(/*include_self=*/true)) {
    if (auto* linear = child->as<torch::nn::Linear>()) {
      linear->weight.normal_(0, 0.01);
      if (linear->bias.defined()) linear->bias.normal_(0, 0.01);
    } else if (auto* bn = child->as<torch::nn::BatchNorm1d>()) {
      bn->weight.normal_(1, 0.01);
      bn->bias.zero_();
    }
  }
}

}  // namespace

AdaptiveFeatureNormImpl::AdaptiveFeatureNormImpl(AdaptiveFeatureNormOptions options_)
    : options(options_) {
  reset();
}

void AdaptiveFeatureNormImpl::reset() {
  detail::check_positive(options.delta(), "AdaptiveFeatureNorm", "delta");
}

void AdaptiveFeatureNormImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::AdaptiveFeatureNorm(delta=" << options.delta() << ")";
}

torch::Tensor AdaptiveFeatureNormImpl::forward(const torch::Tensor& f) {
  return functional::adaptive_feature_norm(f, options);
}

AfnBlockImpl::AfnBlockImpl(AfnBlockOptions options_) : options(options_) {
  reset();
}

void AfnBlockImpl::reset() {
  TORCH_CHECK(options.in_features() >= 1, "AfnBlock: in_features must be positive, got ",
              options.in_features());
  TORCH_CHECK(options.bottleneck_dim() >= 1, "AfnBlock: bottleneck_dim must be positive, got ",
              options.bottleneck_dim());
  TORCH_CHECK(options.dropout_p() >= 0 && options.dropout_p() < 1,
              "AfnBlock: dropout_p must be in [0, 1), got ", options.dropout_p());
  fc = register_module("fc", torch::nn::Linear(options.in_features(), options.bottleneck_dim()));
  bn = register_module("bn", torch::nn::BatchNorm1d(options.bottleneck_dim()));
}

void AfnBlockImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::AfnBlock(in_features=" << options.in_features()
         << ", bottleneck_dim=" << options.bottleneck_dim() << ", dropout_p=" << options.dropout_p()
         << ")";
}

torch::Tensor AfnBlockImpl::forward(const torch::Tensor& x) {
  detail::check_dim(x, 2, "AfnBlock", "x");
  return functional::l2_preserving_dropout(torch::relu(bn(fc(x))), options.dropout_p(),
                                           is_training());
}

AfnImageClassifierImpl::AfnImageClassifierImpl(torch::nn::AnyModule backbone_,
                                               int64_t backbone_features_,
                                               AfnImageClassifierOptions options_)
    : options(options_), backbone_features(backbone_features_), backbone(std::move(backbone_)) {
  build(/*clone_backbone=*/false);
}

void AfnImageClassifierImpl::reset() {
  build(/*clone_backbone=*/true);
}

void AfnImageClassifierImpl::build(bool clone_backbone) {
  TORCH_CHECK(!backbone.is_empty(), "AfnImageClassifier: backbone is empty");
  TORCH_CHECK(backbone_features >= 1,
              "AfnImageClassifier: backbone_features must be positive, got ", backbone_features);
  TORCH_CHECK(options.num_classes() >= 1, "AfnImageClassifier: num_classes must be positive, got ",
              options.num_classes());
  TORCH_CHECK(options.num_blocks() >= 1, "AfnImageClassifier: num_blocks must be at least 1, got ",
              options.num_blocks());
  if (clone_backbone) backbone = backbone.clone();
  register_module("backbone", backbone.ptr());
  bottleneck = AfnBottleneck(backbone_features, options);
  register_module("bottleneck", bottleneck);
  head =
      register_module("head", torch::nn::Linear(options.bottleneck_dim(), options.num_classes()));
  init_afn_weights(*bottleneck);
  init_afn_weights(*head);
}

AfnBottleneckImpl::AfnBottleneckImpl(int64_t in_features_, AfnImageClassifierOptions options_)
    : in_features(in_features_), options(options_) {
  reset();
}

void AfnBottleneckImpl::reset() {
  const auto block_options = [this](int64_t width) {
    return AfnBlockOptions(width)
        .bottleneck_dim(options.bottleneck_dim())
        .dropout_p(options.dropout_p());
  };
  // TLlib nests the first block one level deeper: "0.0.*", then "1.*", ...
  first = register_module("0", torch::nn::Sequential(AfnBlock(block_options(in_features))));
  rest.clear();
  for (int64_t i = 1; i < options.num_blocks(); ++i) {
    rest.emplace_back(
        register_module(std::to_string(i), AfnBlock(block_options(options.bottleneck_dim()))));
  }
}

torch::Tensor AfnBottleneckImpl::forward(torch::Tensor x) {
  // Through the holders, whose objects Cloneable::clone assigns in place.
  x = first->forward(x);
  for (auto& block : rest) x = block(x);
  return x;
}

void AfnImageClassifierImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::AfnImageClassifier(num_classes=" << options.num_classes()
         << ", num_blocks=" << options.num_blocks()
         << ", bottleneck_dim=" << options.bottleneck_dim() << ", dropout_p=" << options.dropout_p()
         << ")";
}

std::tuple<torch::Tensor, torch::Tensor> AfnImageClassifierImpl::forward(const torch::Tensor& x) {
  auto f = backbone.forward(x);
  if (f.dim() == 4) f = torch::adaptive_avg_pool2d(f, {1, 1}).flatten(1);
  TORCH_CHECK(f.dim() == 2 && f.size(1) == backbone_features,
              "AfnImageClassifier: the backbone must produce (N, ", backbone_features,
              ", H, W) or (N, ", backbone_features, "), got shape ", f.sizes());
  const auto features = bottleneck->forward(f);
  return {head(features), features};
}

}  // namespace tandem::methods
