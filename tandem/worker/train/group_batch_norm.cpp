#include "tandem/worker/train/group_batch_norm.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <vector>

namespace tandem::worker {
namespace {

// One BatchNorm layer's state around a grouped forward: its momentum is set
// to 1 and each group gets fresh running buffers, so that after the group
// they hold its batch statistics (fresh ones because autograd saved the
// previous group's for its backward pass); they are summed, and at the end
// the layer's own buffers get the averaged update with the layer's own
// momentum.
struct GroupedLayer {
  torch::nn::BatchNormOptions* options = nullptr;
  torch::Tensor* mean_slot = nullptr;  // the layer's members
  torch::Tensor* var_slot = nullptr;
  torch::Tensor running_mean, running_var, num_batches_tracked;  // its own buffers
  double momentum = 0.1;
  torch::Tensor mean_sum, var_sum;
  int64_t batches_before = 0;
};

template <typename Impl>
bool collect(const std::shared_ptr<torch::nn::Module>& module, std::vector<GroupedLayer>& layers) {
  auto* bn = dynamic_cast<Impl*>(module.get());
  if (bn == nullptr) return false;
  if (!bn->options.track_running_stats() || !bn->running_mean.defined()) return true;
  TORCH_CHECK(
      bn->options.momentum().has_value(),
      "bn_group_size: BatchNorm with a cumulative average (momentum None) is not supported");
  GroupedLayer layer;
  layer.options = &bn->options;
  layer.mean_slot = &bn->running_mean;
  layer.var_slot = &bn->running_var;
  layer.running_mean = bn->running_mean;
  layer.running_var = bn->running_var;
  layer.num_batches_tracked = bn->num_batches_tracked;
  layer.momentum = *bn->options.momentum();
  layer.mean_sum = torch::zeros_like(bn->running_mean);
  layer.var_sum = torch::zeros_like(bn->running_var);
  layer.batches_before =
      bn->num_batches_tracked.defined() ? bn->num_batches_tracked.template item<int64_t>() : 0;
  bn->options.momentum(1.0);
  layers.push_back(std::move(layer));
  return true;
}

}  // namespace

void validate_batch_split(const char* owner, int64_t batch, int64_t world_size,
                          int64_t bn_group_size) {
  TORCH_CHECK(bn_group_size >= 0, owner, ".bn_group_size must be >= 0, got ", bn_group_size);
  TORCH_CHECK(world_size >= 1, owner, ": world size must be >= 1, got ", world_size);
  TORCH_CHECK(batch % world_size == 0, owner,
              ": the global batch (num_identities x num_instances = ", batch,
              ") must be a multiple of the world size ", world_size);
  const int64_t local = batch / world_size;
  if (bn_group_size > 0 && (world_size > 1 || local > bn_group_size)) {
    TORCH_CHECK(local % bn_group_size == 0, owner, ".bn_group_size ", bn_group_size,
                " must divide each rank's share of the batch (", local, " = ", batch, " / ",
                world_size, " ranks)");
  }
}

std::vector<torch::Tensor> forward_in_groups(
    torch::nn::Module& module, const torch::Tensor& x, int64_t group_size,
    const std::function<std::vector<torch::Tensor>(const torch::Tensor&)>& forward) {
  const int64_t n = x.size(0);
  if (!module.is_training() || group_size <= 0 || group_size >= n) return forward(x);
  TORCH_CHECK(n % group_size == 0, "bn_group_size ", group_size,
              " must divide the images each rank forwards (", n,
              "): choose the batch / world_size as a multiple of it");
  std::vector<GroupedLayer> layers;
  {
    const torch::NoGradGuard no_grad;
    for (const auto& child : module.modules(/*include_self=*/false)) {
      if (!collect<torch::nn::BatchNorm2dImpl>(child, layers)) {
        collect<torch::nn::BatchNorm1dImpl>(child, layers);
      }
    }
  }
  // Restores the momenta and the buffers even when a forward throws.
  struct Restore {
    std::vector<GroupedLayer>& layers;
    ~Restore() {
      for (auto& layer : layers) {
        layer.options->momentum(layer.momentum);
        *layer.mean_slot = layer.running_mean;
        *layer.var_slot = layer.running_var;
      }
    }
  } restore{layers};

  std::vector<std::vector<torch::Tensor>> parts;
  for (const torch::Tensor& group : x.split(group_size)) {
    {
      const torch::NoGradGuard no_grad;
      for (auto& layer : layers) {
        *layer.mean_slot = torch::zeros_like(layer.running_mean);
        *layer.var_slot = torch::zeros_like(layer.running_var);
      }
    }
    std::vector<torch::Tensor> out = forward(group);
    if (parts.empty()) parts.resize(out.size());
    for (size_t i = 0; i < out.size(); ++i) parts[i].push_back(std::move(out[i]));
    const torch::NoGradGuard no_grad;
    for (auto& layer : layers) {
      layer.mean_sum.add_(*layer.mean_slot);
      layer.var_sum.add_(*layer.var_slot);
    }
  }
  const auto groups = static_cast<double>(n / group_size);
  for (auto& layer : layers) {
    const torch::NoGradGuard no_grad;
    *layer.mean_slot = layer.running_mean;
    *layer.var_slot = layer.running_var;
    const double m = layer.momentum;
    layer.running_mean.mul_(1 - m).add_(layer.mean_sum, m / groups);
    layer.running_var.mul_(1 - m).add_(layer.var_sum, m / groups);
    if (layer.num_batches_tracked.defined())
      layer.num_batches_tracked.fill_(layer.batches_before + 1);
  }
  std::vector<torch::Tensor> out;
  for (auto& part : parts)
    out.push_back(part.front().defined() ? torch::cat(part) : torch::Tensor());
  return out;
}

methods::models::ReIdOutput forward_in_groups(methods::models::ReIdentifier& model,
                                              const torch::Tensor& x, int64_t group_size) {
  const auto out = forward_in_groups(*model, x, group_size, [&](const torch::Tensor& group) {
    const methods::models::ReIdOutput o = model->forward(group);
    return std::vector<torch::Tensor>{o.logits, o.features, o.neck};
  });
  return {out[0], out[1], out[2]};
}

}  // namespace tandem::worker
