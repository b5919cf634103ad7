// The MMT training loop (Ge et al., "Mutual Mean-Teaching: Pseudo Label
// Refinery for Unsupervised Domain Adaptation on Person Re-identification",
// ICLR 2020, https://arxiv.org/abs/2001.01526), one epoch at a time, in
// process. Notes: ../shared/reference/mmt_reference_notes.md §4.
//
// Per epoch: both EMA teachers embed the target train set (eval mode, L2-
// normalised neck features), the average goes to a pseudo-label function
// (k-means, or Jaccard + DBSCAN, from clustering/ or the clustering
// service), the heads of all four networks restart from the L2-normalised
// centroids, a new Adam is created, and `iters` P×K iterations run on two
// augmented views with the cross pairing: student 1 on view 1 is taught by
// teacher 2 on view 2 and vice versa,
//   L = (1−λ_id)(CE_ls(y1) + CE_ls(y2)) + (1−λ_tri)(ST_0(f1) + ST_0(f2))
//     + λ_id (SCE(y1, ŷ2) + SCE(y2, ŷ1)) + λ_tri (ST(f1, f̂2) + ST(f2, f̂1)),
// followed by the EMA update with MMT's warm-up α_t = min(α, 1 − 1/(t+1)).
// One iteration is an MmtStep (worker/train/mmt_step.h): by default the
// two student/teacher pairs run on two threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <torch/types.h>

#include "tandem/methods/ema_teacher.h"
#include "tandem/methods/models/reidentifier.h"
#include "tandem/worker/data/loader.h"
#include "tandem/worker/data/transforms.h"
#include "tandem/worker/data_parallel.h"
#include "tandem/worker/train/mmt_step.h"
#include "tandem/worker/train/progress.h"

namespace tandem::worker {

/// What a pseudo-label function returns for n target images.
struct PseudoLabels {
  /// int64 (n): cluster id in [0, K), or -1 for noise (dropped).
  torch::Tensor labels;
  /// float32 (K, d): the clusters' centres (the trainer L2-normalises them).
  torch::Tensor centroids;
  /// eps DBSCAN used (0 for k-means), reported in the epoch's statistics.
  double eps = 0.0;
};

/// Clusters `features` (n × d, the averaged teacher features) at `epoch`.
using PseudoLabelFn = std::function<PseudoLabels(const torch::Tensor& features, int64_t epoch)>;

/// MMT's hyper-parameters (notes §2); defaults are the paper's.
struct MmtOptions {
  /// Epochs and iterations per epoch (MMT: 40 × 400).
  int64_t epochs = 40;
  int64_t iters = 400;
  /// P identities × K instances per batch (MMT: 16 × 4 = 64).
  int64_t num_identities = 16;
  int64_t num_instances = 4;
  /// Adam on every parameter, re-created every epoch.
  double lr = 3.5e-4;
  double weight_decay = 5e-4;
  /// EMA momentum (with the warm-up schedule).
  double alpha = 0.999;
  /// λ_id (soft cross entropy) and λ_tri (soft triplet).
  double soft_ce_weight = 0.5;
  double soft_triplet_weight = 0.8;
  /// Label smoothing ε of the hard cross entropy.
  double label_smoothing = 0.1;
  /// Input size and augmentation of the training views.
  TransformOptions train_transform = TransformOptions::train(256, 128);
  /// Loader threads and the batch size of feature extraction.
  int64_t loader_threads = 2;
  int64_t extract_batch = 64;
  /// Seed of the sampler and augmentation.
  uint64_t seed = 1;
  /// Each iteration runs the two student/teacher pairs on two threads, each
  /// with half of the intra-op threads (MmtStep, worker/train/mmt_step.h);
  /// off, or with one intra-op thread, they run one after the other. Both
  /// give the same parameters for the same per-pair thread count.
  bool parallel_pairs = true;
  /// BatchNorm over fixed groups of this many images (the reference's 16 per
  /// GPU on 4 GPUs; worker/train/group_batch_norm.h), whatever the number
  /// of ranks, so that W = 1 and W = 4 train the same function; 0: over all
  /// the images a rank forwards.
  int64_t bn_group_size = 16;
  /// Data-parallel ranks with two lanes (make_data_parallel(..., 2)); null:
  /// this process alone. Every rank builds the same global batches, loads
  /// and forwards its contiguous share, extracts a shard of the target
  /// set; rank 0 alone runs the pseudo-label function and shares the result
  /// through the store.
  std::shared_ptr<const DataParallel> data_parallel;
  /// Where the four networks, their optimiser state and the batches live
  /// (worker/device.h resolves a spec's device); the constructor moves the
  /// models there. Teacher features come back to the host for clustering.
  torch::Device device = torch::kCPU;
  /// Forward passes under bf16 autocast on `device` (MmtStepOptions).
  bool bf16 = false;
  /// Networks and views channels_last during training (MmtStepOptions).
  bool channels_last = false;

  /// Called after every iteration (none: silent).
  ProgressFn on_iteration;
  /// Called when an epoch starts extracting, clustering and training.
  PhaseFn on_phase;

  /// Throws c10::Error naming the first invalid field.
  void validate() const;
};

struct MmtEpochStats {
  int64_t epoch = 0;
  /// Loss terms (MmtLosses, worker/train/mmt_step.h) averaged over the
  /// epoch's iterations.
  int64_t clusters = 0;
  int64_t noise = 0;
  double eps = 0;
  int64_t iterations = 0;
  MmtLosses losses;
  double train_images_per_second = 0;
  /// Whether the iterations ran the two pairs on two threads.
  bool parallel_pairs = false;
  /// Ranks, and the gradient communication of this rank's two students.
  int world_size = 1;
  CommunicationStats communication;
};

/// Embeds every image of `source` with `model` in eval mode through
/// `transform` (the test transform): L2-normalised neck features, (n, d)
/// float32, in source order. With `parallel` (more than one rank) each rank
/// embeds its shard (shard_of) and the shards are gathered: collective.
torch::Tensor extract_features(methods::models::ReIdentifier& model,
                               const std::shared_ptr<const ImageSource>& source,
                               const ImageTransform& transform, int64_t batch_size, int64_t threads,
                               const DataParallel* parallel = nullptr);

class MmtTrainer {
 public:
  using Model = methods::models::ReIdentifier;
  using Teacher = methods::EmaTeacher<Model>;

  /// `model_1` and `model_2` are the two differently initialised (pretrained)
  /// students; the teachers start as their copies. `cameras` (one per target
  /// train image) drive the sampler's other-camera preference.
  MmtTrainer(Model model_1, Model model_2, std::shared_ptr<const ImageSource> target_train,
             std::vector<int64_t> cameras, MmtOptions options, PseudoLabelFn pseudo_labels);

  /// One epoch as described above. Returns its statistics.
  MmtEpochStats train_epoch(int64_t epoch);

  /// The averaged, L2-normalised features of both teachers on the target
  /// train set (what clustering sees); collective with data parallelism.
  torch::Tensor teacher_features();

  /// Copies all four networks from rank 0 to every rank (done at
  /// construction; call again after loading a checkpoint). Collective.
  void synchronise();

  Model& student(int which) { return which == 0 ? model_1_ : model_2_; }
  Teacher& teacher(int which) { return which == 0 ? *teacher_1_ : *teacher_2_; }
  const MmtOptions& options() const { return options_; }

 private:
  Model model_1_, model_2_;
  std::unique_ptr<Teacher> teacher_1_, teacher_2_;
  std::shared_ptr<const ImageSource> target_train_;
  std::vector<int64_t> cameras_;
  MmtOptions options_;
  PseudoLabelFn pseudo_labels_;
  ImageTransform test_transform_;
};

}  // namespace tandem::worker
