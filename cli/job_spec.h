// Job specs of `tandem train`: one plain struct loaded from YAML or JSON,
// every field validated with a message naming it (spec.batch.identities,
// ...). Defaults are the MMT paper's (notes §2) for the job's kind. The
// server's JobSpec message (proto/) will carry the same fields.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tandem::cli {

struct DatasetSpec {
  /// Layout. Re-ID kinds (pretrain, mmt, evaluate): market1501, dukemtmc,
  /// msmt17, msmt17-market-layout, folder. Classification kinds (source_only,
  /// self_ensemble, mcc, afn): image_list, or the built-in Fashion-MNIST pair
  /// fashion_mnist_source / fashion_mnist_target (docs/fashion_mnist.md).
  std::string kind;
  /// Re-ID: the data set's folder (required). image_list: the folder that
  /// relative paths join (optional; default the list's folder, or the one
  /// above an image_list/ folder). fashion_mnist_*: the IDX files' folder
  /// (optional; default /usr/share/datasets/fashion-mnist).
  std::string root;
  /// image_list: the ImageList file, `<path> <int label>` per line (required).
  std::string list{};
  /// image_list target: the held-out, labelled test list the job's target
  /// accuracy is measured on (required; never trained on).
  std::string test_list{};
  /// fashion_mnist_target: the named shift, standard or hard.
  std::string shift = "standard";
  /// fashion_mnist_source: train rows [0, images); fashion_mnist_target:
  /// train rows [30000, 30000 + images), unlabelled (1..30000).
  int64_t images = 10000;
  /// fashion_mnist_target: the held-out test rows [0, test_images) (1..10000).
  int64_t test_images = 2000;
  bool empty() const { return kind.empty() && root.empty(); }
};

struct JobSpec {
  /// pretrain (supervised source training), mmt (adaptation to the target)
  /// or evaluate (a model on the target's query/gallery); or a
  /// classification adaptation job: source_only, self_ensemble, mcc, afn
  /// (the fields under "classification kinds" below).
  std::string kind;
  /// Where weights, metrics and events go (created when missing).
  std::string output_dir;
  uint64_t seed = 1;
  /// pretrain: the labelled source (required) and an optional target to
  /// evaluate on; mmt: the unlabelled target (required).
  DatasetSpec source;
  DatasetSpec target;
  /// Backbone: small (CPU tests and demos), resnet18, resnet50, resnet50_ibn_a.
  std::string backbone = "resnet50";
  /// small: channels of its first stage.
  int64_t backbone_width = 16;
  /// small: conv layers per stage (1 to 8).
  int64_t backbone_depth = 1;
  /// mmt: weights of the two pre-trained models (state dicts written by a
  /// pretrain job, or torchvision-named files); loaded by key intersection.
  std::string init_1;
  std::string init_2;
  /// pretrain: initial weights (e.g. ImageNet's torchvision ResNet, or a
  /// model.pt of another job), loaded by key intersection; the head is
  /// always new.
  std::string init;
  /// evaluate: the weights to evaluate (model.pt / best.pt of a job, or a
  /// torchvision-named file).
  std::string weights;
  int64_t height = 256;
  int64_t width = 128;
  /// P identities × K instances per batch.
  int64_t identities = 16;
  int64_t instances = 4;
  double lr = 3.5e-4;
  double weight_decay = 5e-4;
  /// Defaults by kind: pretrain 80 × 100, mmt 40 × 400.
  int64_t epochs = 0;
  int64_t iters = 0;
  /// pretrain's schedule.
  int64_t warmup_epochs = 10;
  double warmup_factor = 0.01;
  std::vector<int64_t> milestones = {40, 70};
  /// pretrain with a target: forward one target batch per iteration without
  /// a loss, so BatchNorm's running statistics see the target (MMT and TLlib
  /// do, notes §7.4).
  bool target_bn = true;
  /// mmt's EMA and loss weights.
  double alpha = 0.999;
  double soft_ce_weight = 0.5;
  double soft_triplet_weight = 0.8;
  /// mmt's pseudo labels: kmeans with k, or dbscan on the Jaccard distance
  /// (k1, k2, min_samples) with eps, or MMT's adaptive eps (rho) when eps = 0.
  std::string clustering = "dbscan";
  int64_t k = 500;
  double eps = 0.0;
  double rho = 1.6e-3;
  /// dbscan with adaptive eps: recompute it from every epoch's features
  /// (false: MMT's rule, epoch 0 only).
  bool eps_every_epoch = false;
  /// mmt: cluster the teacher features standardised per target camera
  /// (clustering::standardise_per_camera; the heads still start from the
  /// raw features' cluster means). Off: MMT's clustering input as is.
  bool camera_standardise = false;
  int64_t k1 = 20;
  int64_t k2 = 6;
  int64_t min_samples = 4;
  /// Evaluate every N epochs (0: only after the last).
  int64_t eval_every = 1;
  /// Loader threads.
  int64_t loader_threads = 2;
  /// Where the job trains (worker/device.h): auto (CUDA when the build has
  /// it and a GPU is visible, else the CPU), cpu, cuda (cuda:LOCAL_RANK, one
  /// rank per GPU) or cuda:N. A CUDA device the host lacks fails at start.
  std::string device = "auto";
  /// fp32, or bf16: forward passes under bf16 autocast on the device, fp32
  /// master weights and optimiser state (pretrain, mmt and the
  /// classification kinds; evaluate embeds in fp32 either way).
  std::string precision = "fp32";
  /// mmt: networks and batches stored channels_last (NHWC) while training.
  bool channels_last = false;
  /// cuDNN's deterministic algorithms instead of its autotuner.
  bool deterministic = false;
  /// BatchNorm over fixed groups of this many images, whatever the number
  /// of ranks (the reference's 16 images per GPU on 4 GPUs), so that results
  /// do not depend on the world size; 0: over each rank's whole batch.
  /// Defaults by kind: mmt 16, every other kind 0; -1 (what a spec built in
  /// code starts with) means that default (resolved_bn_group_size).
  int64_t bn_group_size = -1;

  // Classification kinds (source_only, self_ensemble, mcc, afn): the fields
  // of worker::ClassificationOptions under the same names, with its defaults
  // (the notes' method defaults, docs/training.md). These kinds also change
  // the defaults of backbone (small), height × width (32 × 32), lr (0.01),
  // epochs × iters (10 × 150) and eval_every; every step is one source and one
  // target batch of batch_size images.
  int64_t batch_size = 32;
  double momentum = 0.9;
  double lr_gamma = 0.001;
  double lr_decay = 0.75;
  int64_t bottleneck_dim = 256;
  int64_t augment_shift = 2;
  double augment_flip_probability = 0.5;
  double augment_color_jitter = 0.2;
  double augment_invert_probability = 0.0;
  int64_t unsupervised_warmup_iterations = 500;
  double self_ensemble_alpha = 0.99;
  double self_ensemble_confidence_threshold = 0.8;
  double self_ensemble_consistency_weight = 3.0;
  double self_ensemble_balance_weight = 0.01;
  double mcc_temperature = 2.5;
  double mcc_trade_off = 1.0;
  double afn_delta = 1.0;
  double afn_trade_off = 0.05;
  double afn_dropout = 0.5;
};

/// spec.bn_group_size, or its kind's default when it is -1 (mmt 16, else 0).
int64_t resolved_bn_group_size(const JobSpec& spec);

/// True for source_only, self_ensemble, mcc and afn.
bool is_classification_kind(const std::string& kind);

/// Reads a YAML or JSON file (JSON is YAML). Unknown keys, wrong types and
/// out-of-range values throw std::invalid_argument naming the field and the
/// file.
JobSpec load_job_spec(const std::string& path);

/// The same from YAML/JSON text; `where` names the source in errors.
JobSpec parse_job_spec(const std::string& text, const std::string& where);

}  // namespace tandem::cli
