// The classification self-training loops of TLlib's examples (notes §8) on
// small 32 × 32 RGB images (the Fashion-MNIST source → target shift of
// data/fashion_mnist.h): every step is supervised cross entropy on a labelled
// source batch plus the method's unsupervised term on an unlabelled target
// batch.
//
//   source only:   CE(y_s)
//   Self-Ensemble: CE(y_s) + w_c·L2Cons(p_t, p_teacher, mask)
//                  + w_b·ClassBalance(p_t)·mean(mask), student on an augmented
//                  target view, EMA teacher (train mode) on the un-augmented
//                  view, mask = teacher's max softmax > threshold; optimiser
//                  step, then teacher.update() (French et al., ICLR 2018).
//   MCC:           CE(y_s) + λ·MCC_T(y_t), source and target in one forward
//                  (shared BN statistics) (Jin et al., ECCV 2020).
//   AFN:           CE(y_s) + λ·(AFN_Δ(f_s) + AFN_Δ(f_t)) on the features of an
//                  AfnImageClassifier (AfnBlock bottleneck), one forward
//                  (Xu et al., ICCV 2019).
//
// The network is built fresh per run from the seed: SmallReidNet backbone →
// global average pooling → bottleneck (Linear → BN → ReLU, or AFN's block) →
// Linear head. All methods share the optimiser (SGD, Nesterov momentum,
// TLlib's lr·(1 + γ·it)^−decay schedule) and the augmentation, so the
// comparison isolates the unsupervised term.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/sgd.h>
#include <torch/types.h>

#include "tandem/methods/afn.h"
#include "tandem/methods/ema_teacher.h"
#include "tandem/methods/models/resnet.h"
#include "tandem/methods/serialization.h"
#include "tandem/worker/data_parallel.h"
#include "tandem/worker/train/progress.h"

namespace tandem::worker {

enum class ClassificationMethod { kSourceOnly, kSelfEnsemble, kMcc, kAfn };

/// "source_only", "self_ensemble", "mcc", "afn".
std::string classification_method_name(ClassificationMethod method);
/// The inverse of classification_method_name; throws c10::Error listing the names.
ClassificationMethod parse_classification_method(const std::string& name);

struct ClassificationOptions {
  /// Optimiser steps (each: one source batch and one target batch); the
  /// benchmark's 1500 (docs/training.md).
  int64_t iterations = 1500;
  /// Images per domain per step (TLlib's examples: 32–36).
  int64_t batch_size = 32;
  /// SGD with Nesterov momentum and TLlib's schedule lr·(1 + lr_gamma·it)^−lr_decay.
  double lr = 0.01;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  double lr_gamma = 0.001;
  double lr_decay = 0.75;
  /// Seeds the network's initialisation, batch order, augmentation and dropout.
  uint64_t seed = 0;

  /// Channels of SmallReidNet's first stage (the pooled features have 8 × width).
  int64_t backbone_width = 16;
  /// Width of the bottleneck (Linear → BN → ReLU, or AFN's block).
  int64_t bottleneck_dim = 256;

  /// The training augmentation (source batches, and the student's target view
  /// of Self-Ensemble; every other method's target batch too): a random shift
  /// of up to `augment_shift` pixels (zero padding), a horizontal flip with
  /// `augment_flip_probability`, and a per-image, per-channel gain in
  /// [1 − j, 1 + j] and offset in [−j, j] (normalised units) with j =
  /// `augment_color_jitter`. Evaluation and Self-Ensemble's teacher see the
  /// un-augmented images. `augment_invert_probability` inverts an image's
  /// intensities (v → 255 − v) with that probability, French et al.'s
  /// intensity flip for digits; off by default, since it encodes knowledge of
  /// this target's inversion.
  int64_t augment_shift = 2;
  double augment_flip_probability = 0.5;
  double augment_color_jitter = 0.2;
  double augment_invert_probability = 0.0;

  /// Steps of supervised source training before the unsupervised term is
  /// switched on (its weight is 0 before, 1 after; the target batch is still
  /// forwarded and Self-Ensemble's teacher still updated). TLlib's examples
  /// use none (Self-Ensemble's --pretrain-epochs 0) because they start from
  /// an ImageNet-trained backbone whose features already mean something.
  /// Here the network starts from scratch, and 500 source steps stand in for
  /// that pre-training: without them AFN's norm term enlarges features that
  /// do not classify yet and AFN falls below source only (docs/training.md).
  /// The same for every method; source only is unaffected.
  int64_t unsupervised_warmup_iterations = 500;

  /// Self-Ensemble (notes §8): EMA α, the teacher's confidence threshold,
  /// consistency and class-balance weights.
  double self_ensemble_alpha = 0.99;
  double self_ensemble_confidence_threshold = 0.8;
  double self_ensemble_consistency_weight = 3.0;
  double self_ensemble_balance_weight = 0.01;

  /// MCC (notes §3.4): softmax temperature and trade-off.
  double mcc_temperature = 2.5;
  double mcc_trade_off = 1.0;

  /// AFN (notes §3.5): the step Δ, the trade-off of the norm term and the
  /// dropout of its block.
  double afn_delta = 1.0;
  double afn_trade_off = 0.05;
  double afn_dropout = 0.5;

  /// Images per forward pass when evaluating.
  int64_t eval_batch_size = 500;

  /// BatchNorm over fixed groups of this many images of each domain's batch
  /// (worker/train/group_batch_norm.h); 0: over every image of a forward.
  int64_t bn_group_size = 0;
  /// Data-parallel ranks (make_data_parallel; no lanes needed); null: this
  /// process alone. Every rank draws the same global batches and
  /// augmentations (the same generator), forwards its contiguous share of
  /// the source and of the target batch, and computes the losses of the whole
  /// global batch from the gathered outputs; gradients are summed by a
  /// GradientReducer, BatchNorm statistics averaged after every train() call.
  /// AFN's dropout masks are drawn per share, so AFN matches one rank in
  /// distribution, not bit for bit.
  std::shared_ptr<const DataParallel> data_parallel;

  /// Where the networks, their optimiser state and the losses live
  /// (worker/device.h resolves a spec's device); images stay on the host,
  /// where they are augmented (the CPU generator draws the same
  /// augmentations on every device), and each batch is copied over.
  torch::Device device = torch::kCPU;
  /// Forward passes under bf16 autocast on `device` (fp32 master weights;
  /// losses on fp32 outputs).
  bool bf16 = false;

  /// Throws c10::Error naming the first invalid field.
  void validate() const;
  /// The learning rate after `iteration` steps.
  double lr_at(int64_t iteration) const;
};

/// The network of the source-only, Self-Ensemble and MCC runs: backbone →
/// global average pooling → Linear → BatchNorm1d → ReLU → Linear head.
/// forward(x (N, 3, H, W)) → (logits (N, C), bottleneck features (N, D)).
class SmallImageClassifierImpl : public torch::nn::Cloneable<SmallImageClassifierImpl> {
 public:
  SmallImageClassifierImpl(int64_t num_classes, int64_t backbone_width, int64_t bottleneck_dim);
  void reset() override;
  std::tuple<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x);

  int64_t num_classes, backbone_width, bottleneck_dim;
  methods::models::SmallReidNet backbone{nullptr};
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(SmallImageClassifier);

/// Mean losses and the share of confident target samples over some steps.
struct ClassificationStepStats {
  int64_t iterations = 0;
  double lr = 0;
  double ce = 0;
  /// The method's unsupervised term, weighted as it enters the total
  /// (Self-Ensemble: consistency + balance; 0 for source only).
  double unsupervised = 0;
  double total = 0;
  /// Self-Ensemble: mean share of target samples above the teacher's threshold.
  double confident_share = 0;
  double source_batch_accuracy = 0;
  /// Mean L2 norm of the bottleneck features (what AFN enlarges) of the
  /// source and the target batch, in training mode.
  double source_feature_norm = 0;
  double target_feature_norm = 0;
};

/// One run of one method. Images are uint8 (n, H, W, 3) HWC RGB (as
/// fashion_domain_images gives), labels int64 (n) in 0..num_classes−1; they
/// are converted to normalised float NCHW once ((v/255 − 0.5)/0.5).
class ClassificationTrainer {
 public:
  ClassificationTrainer(ClassificationMethod method, const torch::Tensor& source_images,
                        const torch::Tensor& source_labels,
                        const torch::Tensor& target_train_images, int64_t num_classes,
                        ClassificationOptions options);

  /// Runs `count` steps and returns their mean statistics. `on_iteration`
  /// (optional) is called after every step with `epoch`, the 1-based step
  /// within these `count` and the step's loss terms (ce, unsupervised, total).
  ClassificationStepStats train(int64_t count, const ProgressFn& on_iteration = {},
                                int64_t epoch = 0);
  /// Accuracy of the predicting network (Self-Ensemble: the teacher, as in
  /// French et al.; the others: the classifier) on images and labels, in eval mode.
  double accuracy(const torch::Tensor& images_hwc_u8, const torch::Tensor& labels);
  /// The predicting network's labels (int64 (n)) for images, in eval mode.
  torch::Tensor predict(const torch::Tensor& images_hwc_u8);
  /// Accuracy of the trained classifier (the student of Self-Ensemble).
  double student_accuracy(const torch::Tensor& images_hwc_u8, const torch::Tensor& labels);

  /// The full training state under `prefix.`: the classifier's and the
  /// teacher's parameters and buffers, SGD's momentum buffers, the step
  /// counter, both batch orders and cursors, and the state of LibTorch's
  /// default CPU generator (augmentation, batch order and AFN's dropout draw
  /// from it). load_state into a trainer built with the same method, data
  /// sizes and options continues exactly as the saved one would have.
  void save_state(methods::StateDict& state, const std::string& prefix) const;
  /// Restores what save_state wrote; a missing or mismatched entry is a
  /// c10::Error naming it.
  void load_state(const methods::StateDict& state, const std::string& prefix);

  /// Copies the classifier (and the teacher) from rank 0 to every rank (done
  /// at construction; call again after load_state). Collective.
  void synchronise();

  ClassificationMethod method() const { return method_; }
  int64_t iteration() const { return iteration_; }
  /// The trained network: a SmallImageClassifier, or an AfnImageClassifier for AFN.
  std::shared_ptr<torch::nn::Module> classifier() const;
  /// Self-Ensemble's EMA teacher (nullptr for the other methods).
  methods::EmaTeacher<SmallImageClassifier>* teacher() { return teacher_ ? &*teacher_ : nullptr; }

 private:
  /// The classifier (or the teacher) on x under the options' autocast,
  /// outputs in float32.
  std::tuple<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x);
  std::tuple<torch::Tensor, torch::Tensor> teacher_forward(const torch::Tensor& x);
  torch::Tensor augment(const torch::Tensor& x);
  torch::Tensor next_batch(const torch::Tensor& images, torch::Tensor& order, int64_t& cursor);
  torch::Tensor predictions(torch::nn::Module& module, bool use_teacher,
                            const torch::Tensor& images_hwc_u8);
  double evaluate(torch::nn::Module& module, bool use_teacher, const torch::Tensor& images_hwc_u8,
                  const torch::Tensor& labels);

  ClassificationMethod method_;
  ClassificationOptions options_;
  int64_t num_classes_;
  torch::Tensor source_, source_labels_, target_;
  torch::Tensor source_order_, target_order_;
  int64_t source_cursor_ = 0, target_cursor_ = 0;
  int64_t iteration_ = 0;
  SmallImageClassifier plain_{nullptr};
  methods::AfnImageClassifier afn_{nullptr};
  std::optional<methods::EmaTeacher<SmallImageClassifier>> teacher_;
  std::unique_ptr<torch::optim::SGD> optimizer_;
  std::unique_ptr<GradientReducer> reducer_;
};

struct ClassificationResult {
  ClassificationMethod method = ClassificationMethod::kSourceOnly;
  /// Accuracy on the target test set of the predicting network.
  double target_accuracy = 0;
  /// Accuracy of the predicting network on the source images trained on.
  double source_accuracy = 0;
  /// Self-Ensemble: the student's target accuracy (= target_accuracy otherwise).
  double student_target_accuracy = 0;
  /// Mean statistics of the last min(100, iterations) steps.
  ClassificationStepStats last_steps;
  double train_seconds = 0;
};

/// Builds the network from options.seed, trains `options.iterations` steps of
/// `method` and evaluates on the target test set (and the source images).
ClassificationResult train_and_evaluate(
    ClassificationMethod method, const torch::Tensor& source_images,
    const torch::Tensor& source_labels, const torch::Tensor& target_train_images,
    const torch::Tensor& target_test_images, const torch::Tensor& target_test_labels,
    const ClassificationOptions& options, int64_t num_classes = 10);

}  // namespace tandem::worker
