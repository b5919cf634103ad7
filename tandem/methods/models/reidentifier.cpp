#include "tandem/methods/models/reidentifier.h"

#include <torch/torch.h>

namespace tandem::methods::models {

ReIdentifierImpl::ReIdentifierImpl(torch::nn::AnyModule backbone_, int64_t features_dim_,
                                   ReIdentifierOptions options_)
    : options(options_), features_dim(features_dim_), backbone(std::move(backbone_)) {
  build(/*clone_backbone=*/false);
}

void ReIdentifierImpl::reset() {
  build(/*clone_backbone=*/true);
}

void ReIdentifierImpl::build(bool clone_backbone) {
  TORCH_CHECK(!backbone.is_empty(), "ReIdentifier: backbone is empty");
  TORCH_CHECK(features_dim >= 1, "ReIdentifier: features_dim must be positive, got ", features_dim);
  TORCH_CHECK(options.num_classes() >= 1, "ReIdentifier: num_classes must be positive, got ",
              options.num_classes());
  if (clone_backbone) backbone = backbone.clone();
  register_module("backbone", backbone.ptr());
  bottleneck = register_module("bottleneck", torch::nn::BatchNorm1d(features_dim));
  head = register_module(
      "head",
      torch::nn::Linear(torch::nn::LinearOptions(features_dim, options.num_classes()).bias(false)));
  torch::NoGradGuard no_grad;
  bottleneck->weight.fill_(1);
  bottleneck->bias.zero_();
  bottleneck->bias.set_requires_grad(false);
  head->weight.normal_(0, 0.001);
}

std::shared_ptr<torch::nn::Module> ReIdentifierImpl::clone(
    const std::optional<torch::Device>& device) const {
  auto copy = torch::nn::Cloneable<ReIdentifierImpl>::clone(device);
  std::dynamic_pointer_cast<ReIdentifierImpl>(copy)->bottleneck->bias.set_requires_grad(false);
  return copy;
}

void ReIdentifierImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::models::ReIdentifier(features_dim=" << features_dim
         << ", num_classes=" << head->options.out_features() << ")";
}

ReIdOutput ReIdentifierImpl::forward(const torch::Tensor& x) {
  auto f = backbone.forward(x);
  if (f.dim() == 4) f = torch::adaptive_avg_pool2d(f, {1, 1}).flatten(1);
  TORCH_CHECK(f.dim() == 2 && f.size(1) == features_dim,
              "ReIdentifier: the backbone must produce (N, ", features_dim, ", H, W) or (N, ",
              features_dim, "), got shape ", f.sizes());
  ReIdOutput out;
  out.features = f;
  out.neck = bottleneck(f);
  if (is_training()) out.logits = head(out.neck);
  return out;
}

void ReIdentifierImpl::reset_classifier(const torch::Tensor& centroids) {
  TORCH_CHECK(centroids.dim() == 2 && centroids.size(1) == features_dim && centroids.size(0) >= 1,
              "ReIdentifier.reset_classifier: centroids must be (K, ", features_dim,
              ") with K >= 1, got shape ", centroids.sizes());
  TORCH_CHECK(centroids.is_floating_point(),
              "ReIdentifier.reset_classifier: centroids must be floating point, got ",
              centroids.scalar_type());
  const bool requires_grad = head->weight.requires_grad();
  const auto device = head->weight.device();
  const auto dtype = head->weight.scalar_type();
  head = replace_module(
      "head",
      torch::nn::Linear(torch::nn::LinearOptions(features_dim, centroids.size(0)).bias(false)));
  head->to(device, dtype);
  torch::NoGradGuard no_grad;
  head->weight.copy_(centroids);
  head->weight.set_requires_grad(requires_grad);
  options.num_classes(centroids.size(0));
}

}  // namespace tandem::methods::models
