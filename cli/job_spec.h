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
  /// Layout: market1501, dukemtmc, msmt17, msmt17-market-layout, folder.
  std::string kind;
  std::string root;
  bool empty() const { return kind.empty() && root.empty(); }
};

struct JobSpec {
  /// pretrain (supervised source training), mmt (adaptation to the target)
  /// or evaluate (a model on the target's query/gallery).
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
  int64_t k1 = 20;
  int64_t k2 = 6;
  int64_t min_samples = 4;
  /// Evaluate every N epochs (0: only after the last).
  int64_t eval_every = 1;
  /// Loader threads.
  int64_t loader_threads = 2;
};

/// Reads a YAML or JSON file (JSON is YAML). Unknown keys, wrong types and
/// out-of-range values throw std::invalid_argument naming the field and the
/// file.
JobSpec load_job_spec(const std::string& path);

/// The same from YAML/JSON text; `where` names the source in errors.
JobSpec parse_job_spec(const std::string& text, const std::string& where);

}  // namespace tandem::cli
