// Data-parallel training over a c10d process group (distributed issue).
//
// Tandem's trainers keep every rank's networks identical and make W ranks
// compute the function one rank computes on the same global batch:
//  - parameters and buffers are broadcast from rank 0 at the start and after
//    a resume (broadcast_module);
//  - each rank forwards its contiguous share of the global P×K batch, the
//    outputs are all-gathered (all_gather_rows: differentiable for the rows
//    of this rank) and every rank computes the loss of the whole global
//    batch, as the originals' DataParallel does on GPU 0;
//  - the gradients are summed over the ranks by LibTorch's own DDP engine,
//    c10d::Reducer, bucketed and all-reduced while the backward pass runs
//    (GradientReducer). The loss is the same on every rank and each rank's
//    backward gives ∂L/∂θ through its own rows only, so the sum over ranks is
//    the single-rank gradient;
//  - BatchNorm's running statistics, updated from each rank's own images,
//    are averaged at the end of every epoch (average_buffers): the running
//    average is linear in the batch statistics, so this is the single-rank
//    value when every rank normalises over the same image groups
//    (worker/train/group_batch_norm.h);
//  - what one rank computes for all (the clustering) is shared through the
//    store with an explicit, generous timeout (share_from_rank0), never by
//    holding the other ranks in a collective that can time out.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "tandem/worker/distributed.h"

namespace c10d {
class Reducer;
}

namespace tandem::worker {

/// Rank `rank`'s contiguous share [begin, end) of `n` items over `world_size`
/// ranks; the first n mod W shards are one item longer.
struct Shard {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};
Shard shard_of(int64_t n, int rank, int world_size);

/// What a data-parallel trainer holds: the main group (extraction, buffers,
/// broadcasts) and one more group per concurrent user of collectives. MMT's
/// two student/teacher pairs run on two threads at once; collectives from
/// two threads on one group could be ordered differently on different ranks,
/// so each pair has its own lane.
struct DataParallel {
  ProcessGroupHandle main;
  std::vector<c10::intrusive_ptr<c10d::ProcessGroup>> lanes;
  /// How long ranks wait for what rank 0 computes alone (the clustering).
  std::chrono::milliseconds share_timeout = std::chrono::hours(1);

  int rank() const { return main.options.rank; }
  int world_size() const { return main.options.world_size; }
  c10d::ProcessGroup& group() const { return *main.group; }
  c10d::ProcessGroup& lane(int which) const;
};

/// Joins `lanes` more groups of the same ranks over `main`'s store (each
/// under its own prefix). Collective: every rank calls it.
std::shared_ptr<DataParallel> make_data_parallel(
    ProcessGroupHandle main, int lanes,
    std::chrono::milliseconds share_timeout = std::chrono::hours(1));

/// Copies every parameter and buffer of `module` from rank `root` to all
/// ranks (one broadcast per dtype). Collective.
void broadcast_module(torch::nn::Module& module, c10d::ProcessGroup& group, int root = 0);

/// Replaces every floating-point buffer of `module` (BatchNorm's running
/// mean and variance) by its mean over the ranks; integer buffers (the
/// batch counters) are equal on every rank and stay. Collective.
void average_buffers(torch::nn::Module& module, c10d::ProcessGroup& group);

/// The rows of every rank concatenated in rank order: (W·n, ...) from each
/// rank's (n, ...), same shape on every rank. Differentiable: the gradient
/// of the result flows back to this rank's rows (the loss computed from the
/// result is the same on every rank, so no reduction is needed here).
/// Collective.
torch::Tensor all_gather_rows(const torch::Tensor& local, c10d::ProcessGroup& group);

/// Rows of uneven shards (rank r holds `rows[r]` rows, columns equal)
/// concatenated in rank order; not differentiable. Collective.
torch::Tensor all_gather_shards(const torch::Tensor& local, c10d::ProcessGroup& group,
                                const std::vector<int64_t>& rows);

/// Rank 0 runs `produce` and publishes its tensors under `key` in the store;
/// the other ranks wait for them up to `parallel.share_timeout` and read
/// them. Every rank returns the same tensors. An error on rank 0 is
/// published too, so the others fail with its message instead of waiting.
std::vector<torch::Tensor> share_from_rank0(
    const DataParallel& parallel, const std::string& key,
    const std::function<std::vector<torch::Tensor>()>& produce);

/// Throws unless a rank's loaded batch is its whole share: the gathers need
/// equal shares on every rank, so an unreadable image (which one rank alone
/// would skip) stops data-parallel training with a message naming the
/// batch. `batch_index`/`skipped` are the loader's, `expected_index` the
/// batch the trainer waits for, `share` the images of a whole share.
void check_whole_share(const char* owner, int rank, int64_t batch_index, int64_t expected_index,
                       int64_t skipped, int64_t share);

/// One rank's part of an epoch's global P×K batches (every rank drew the
/// same ones): its contiguous share of each batch and, with several ranks,
/// the labels of each whole global batch on `device` (the losses run on the
/// gathered outputs). The block pretrain and MMT share.
struct RankBatches {
  int world = 1;
  int rank = 0;
  /// Images of each global batch this rank loads (batch_size / world).
  int64_t local_batch = 0;
  /// This rank's share of each global batch (all of it on one rank).
  std::vector<std::vector<int64_t>> batches;
  /// Labels of each global batch (empty on one rank).
  std::vector<torch::Tensor> global_labels;
};
RankBatches share_batches(std::vector<std::vector<int64_t>> global_batches, int64_t batch_size,
                          const torch::Tensor& labels, const DataParallel* parallel,
                          const torch::Device& device);

/// Communication of one GradientReducer, summed over the backward passes
/// since the last reset.
struct CommunicationStats {
  int64_t backward_passes = 0;
  int64_t buckets = 0;
  /// Bytes handed to all-reduce (each rank's gradient buffers).
  int64_t bytes = 0;
  /// Backward pass wall time: prepare_for_backward() → backward_done().
  double backward_seconds = 0;
  /// Time with at least one bucket's all-reduce in flight.
  double communication_seconds = 0;
  /// The part of it before the last bucket was launched, i.e. while
  /// gradients were still being computed.
  double overlapped_seconds = 0;
};

/// The gradients of `parameters` summed over the ranks of `group` during
/// every backward pass announced with prepare_for_backward(): LibTorch's
/// c10d::Reducer (what torch.nn.parallel.DistributedDataParallel runs),
/// buckets of `bucket_bytes` (the first one `first_bucket_bytes`, so that
/// communication starts early) in the reverse order of the parameters,
/// all-reduced as soon as a bucket's gradients are ready, summed rather than
/// averaged (a communication hook: see the file comment). Every parameter
/// must get a gradient in every announced backward pass.
class GradientReducer {
 public:
  GradientReducer(std::vector<torch::Tensor> parameters,
                  c10::intrusive_ptr<c10d::ProcessGroup> group, int64_t bucket_bytes = 25 << 20,
                  int64_t first_bucket_bytes = 1 << 20);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// Before the next backward(): its gradients are to be summed.
  void prepare_for_backward();
  /// After backward() returned (the summed gradients are in .grad): books
  /// the pass's statistics.
  void backward_done();

  CommunicationStats stats() const;
  void reset_stats();

  struct Timeline;

 private:
  std::unique_ptr<c10d::Reducer> reducer_;
  std::shared_ptr<Timeline> timeline_;
};

}  // namespace tandem::worker
