// Supervised source pre-training of a re-ID model, MMT's first stage (Ge et
// al., ICLR 2020, source_pretrain.py; notes §2): label-smoothed cross entropy
// plus the hard soft-margin triplet loss (SoftTripletLoss with margin 0) on
// P×K batches of the labelled source, Adam with a linear warm-up and
// step decay. Run twice with different seeds to give MMT its two different
// initialisations. As in MMT and TLlib (notes §7.4), each iteration can also
// forward a batch of unlabelled target images without a loss, in train
// mode, so BatchNorm's running statistics see the target domain.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/optim/adam.h>
#include <torch/types.h>

#include "tandem/methods/models/reidentifier.h"
#include "tandem/worker/data/loader.h"
#include "tandem/worker/data/transforms.h"
#include "tandem/worker/data_parallel.h"
#include "tandem/worker/train/progress.h"

namespace tandem::worker {

struct PretrainOptions {
  /// Epochs and iterations per epoch (MMT: 80 × 100 on 4 GPUs).
  int64_t epochs = 80;
  int64_t iters = 100;
  /// P identities × K instances per batch.
  int64_t num_identities = 16;
  int64_t num_instances = 4;
  double lr = 3.5e-4;
  double weight_decay = 5e-4;
  /// Linear warm-up from warmup_factor · lr over warmup_epochs (MMT: 10, 0.01).
  int64_t warmup_epochs = 10;
  double warmup_factor = 0.01;
  /// lr × gamma at each milestone epoch (MMT: 40 and 70, × 0.1).
  std::vector<int64_t> milestones = {40, 70};
  double gamma = 0.1;
  /// Label smoothing ε.
  double label_smoothing = 0.1;
  /// Margin of the triplet term (MMT: 0, the soft-margin form).
  double triplet_margin = 0.0;
  TransformOptions train_transform = TransformOptions::train(256, 128);
  int64_t loader_threads = 2;
  uint64_t seed = 1;
  /// BatchNorm over fixed groups of this many images, whatever the number of
  /// ranks (worker/train/group_batch_norm.h); 0 (the default here): over
  /// all the images a rank forwards.
  int64_t bn_group_size = 0;
  /// Data-parallel ranks (make_data_parallel, no lanes needed); null: this
  /// process alone. Each rank loads and forwards its share of every global
  /// batch (and of every target batch), every rank computes the global
  /// batch's loss from the gathered outputs, gradients are summed by a
  /// GradientReducer, BatchNorm statistics averaged after every epoch.
  std::shared_ptr<const DataParallel> data_parallel;
  /// Where the model, its optimiser state, the batches and the losses live
  /// (worker/device.h resolves a spec's device); the constructor moves the
  /// model there. Batches are copied to it without blocking the host.
  torch::Device device = torch::kCPU;
  /// Forward passes under bf16 autocast on `device` (fp32 master weights,
  /// losses in fp32).
  bool bf16 = false;

  /// Called after every iteration (none: silent).
  ProgressFn on_iteration;

  /// Throws c10::Error naming the first invalid field.
  void validate() const;
  /// The learning rate of `epoch` (MMT's WarmupMultiStepLR, stepped per epoch).
  double lr_at(int64_t epoch) const;
};

struct PretrainEpochStats {
  int64_t epoch = 0;
  double lr = 0;
  double ce = 0;
  double triplet = 0;
  double total = 0;
  /// Share of samples whose logits put their own identity first.
  double train_accuracy = 0;
  int64_t iterations = 0;
  double train_images_per_second = 0;
};

class PretrainTrainer {
 public:
  using Model = methods::models::ReIdentifier;
  /// `pids` are the source train ids 0..C-1 (C = the model's classes) and
  /// `cameras` their cameras, one per image of `source`.
  PretrainTrainer(Model model, std::shared_ptr<const ImageSource> source, std::vector<int64_t> pids,
                  std::vector<int64_t> cameras, PretrainOptions options);

  /// Forward a batch of `target` (unlabelled, the train transform, drawn
  /// without replacement in a seeded order per epoch) after every source
  /// iteration, under no_grad: only BatchNorm's running statistics change.
  /// nullptr switches it off (the default).
  void set_target_bn_source(std::shared_ptr<const ImageSource> target);

  PretrainEpochStats train_epoch(int64_t epoch);
  /// Copies the model from rank 0 to every rank (done at construction; call
  /// again after loading a checkpoint). Collective.
  void synchronise();
  Model& model() { return model_; }
  /// The Adam of the whole run (its state goes into checkpoints).
  torch::optim::Adam& optimizer() { return *optimizer_; }

 private:
  Model model_;
  std::shared_ptr<const ImageSource> source_;
  std::shared_ptr<const ImageSource> target_bn_;
  std::vector<int64_t> pids_, cameras_;
  PretrainOptions options_;
  std::unique_ptr<torch::optim::Adam> optimizer_;
  std::unique_ptr<GradientReducer> reducer_;
};

}  // namespace tandem::worker
