// BatchNorm over fixed groups of G images, whatever the number of ranks
// (distributed issue, "BatchNorm invariance").
//
// The MMT reference trains on 4 GPUs with DataParallel: each BatchNorm
// layer normalises over the 16 images of its GPU, never over the batch of
// 64, so the function trained depends on the GPU count. forward_in_groups
// runs a network in training mode on consecutive groups of G images: the
// only operation that mixes images is BatchNorm, so each group is
// normalised over its own G images exactly as on one of the reference's
// GPUs, and a rank holding 64/W images computes, for W = 1, 2 or 4, the
// same outputs as one rank holding all 64.
//
// Running statistics: the groups' batch statistics s_g are averaged and the
// running value updated once per call, r ← (1 − m)·r + m·mean_g(s_g), with
// the batch counter advanced by one (the reference keeps GPU 0's update
// only). Being linear in s_g, this update averaged over the ranks
// (worker/data_parallel.h, average_buffers) is the single-rank update.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "tandem/methods/models/reidentifier.h"

namespace tandem::worker {

/// `forward(x)` of a network `module` (its outputs: one row per image, or
/// undefined) on consecutive groups of `group_size` images of `x`, with
/// every BatchNorm layer of `module` handled as described above; outputs
/// concatenated in input order. In eval mode, or with group_size 0 or >=
/// N, one plain call. N must be a multiple of group_size otherwise.
std::vector<torch::Tensor> forward_in_groups(
    torch::nn::Module& module, const torch::Tensor& x, int64_t group_size,
    const std::function<std::vector<torch::Tensor>(const torch::Tensor&)>& forward);

/// `model` on `x` (N images) in groups of `group_size` images: in training
/// mode with 0 < group_size < N, N must be a multiple of group_size (an
/// error names bn_group_size otherwise); otherwise (eval mode, group_size
/// 0 or >= N) a plain forward. Outputs are concatenated in input order.
methods::models::ReIdOutput forward_in_groups(methods::models::ReIdentifier& model,
                                              const torch::Tensor& x, int64_t group_size);

/// Checks that a global batch of `batch` images splits over `world_size`
/// ranks and each share into groups of `bn_group_size` (0: no groups; one
/// rank may hold fewer images than a group, then its whole batch is one).
/// Errors name `owner`'s fields (e.g. "MmtOptions").
void validate_batch_split(const char* owner, int64_t batch, int64_t world_size,
                          int64_t bn_group_size);

}  // namespace tandem::worker
