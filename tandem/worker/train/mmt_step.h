// One MMT iteration (notes §4), the loop body of MmtTrainer::train_epoch and
// exactly what bench_mmt_step times.
//
// Both EMA teachers run forward on their own view (teacher i on view i, in
// training mode, under InferenceMode: they never get gradients). Then each
// student i runs forward on view i, its loss terms with the cross pairing
// (student 1 is taught by teacher 2, student 2 by teacher 1),
//   L_i = (1−λ_id) CE_ls(y_i) + (1−λ_tri) ST_0(f_i)
//       + λ_id SCE(y_i, ŷ_j) + λ_tri ST(f_i, f̂_j),   j = 3 − i,
// its backward, an Adam step over its own parameters and the warm-up EMA
// update of its teacher. The summed loss L_1 + L_2 is the MMT objective; since
// a teacher's outputs are constants, ∂L/∂θ_i = ∂L_i/∂θ_i, and Adam's update
// is per parameter, so one Adam per student is the same update as one Adam
// over both.
//
// The two pairs are independent once the teachers' outputs exist, so with
// `parallel_pairs` (the default) on a CPU with at least two intra-op threads
// pair 1 and pair 2 run at the same time on two persistent threads, each with
// its share of the intra-op threads (⌈T/2⌉ and ⌊T/2⌋ of the T the caller had
// when the step was made). Each pair runs exactly the operations it runs in
// the sequential order, on its own tensors, so a parallel step with T = 2
// gives bit-identical parameters to a sequential step with T = 1
// (tests/worker/train/mmt_trainer_test.cpp). On CUDA, or with T = 1, the
// pairs run one after the other on the calling thread.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "tandem/methods/ema_teacher.h"
#include "tandem/methods/models/reidentifier.h"
#include "tandem/worker/data_parallel.h"

namespace tandem::worker {

/// Loss terms of both students (one iteration, or averaged over an epoch).
struct MmtLosses {
  double ce = 0;            ///< CE_ls(y1) + CE_ls(y2)
  double triplet = 0;       ///< ST_0(f1) + ST_0(f2)
  double soft_ce = 0;       ///< SCE(y1, ŷ2) + SCE(y2, ŷ1)
  double soft_triplet = 0;  ///< ST(f1, f̂2) + ST(f2, f̂1)
  double total = 0;         ///< the weighted sum that is minimised
};

/// Adam (Kingma & Ba, ICLR 2015) with L2 weight decay: torch::optim::Adam's
/// update, bit for bit (the same ATen operations in the same order), without
/// its three temporaries per parameter and step: the weight decay is added
/// to the gradient in place and the denominator √v̂ + ε is written into one
/// scratch buffer reused for every parameter. One parameter group, no
/// amsgrad; what MMT creates every epoch.
class InPlaceAdam {
 public:
  /// All `parameters` on one device with one dtype.
  InPlaceAdam(std::vector<torch::Tensor> parameters, double lr, double weight_decay,
              double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);

  /// Zeroes every defined gradient in place (torch::optim::Adam's zero_grad).
  void zero_grad();
  /// One update of every parameter with a gradient.
  void step();

  const std::vector<torch::Tensor>& parameters() const { return parameters_; }

 private:
  std::vector<torch::Tensor> parameters_, exp_avg_, exp_avg_sq_;
  std::vector<int64_t> steps_;
  torch::Tensor scratch_;
  double lr_, weight_decay_, beta1_, beta2_, eps_;
};

struct MmtStepOptions {
  /// Classes of the heads (pseudo-label clusters).
  int64_t num_classes = 0;
  /// Adam on every trainable parameter of the students.
  double lr = 3.5e-4;
  double weight_decay = 5e-4;
  /// λ_id (soft cross entropy) and λ_tri (soft triplet).
  double soft_ce_weight = 0.5;
  double soft_triplet_weight = 0.8;
  /// Label smoothing ε of the hard cross entropy.
  double label_smoothing = 0.1;
  /// Run the two pairs on two threads (CPU with >= 2 intra-op threads).
  bool parallel_pairs = true;
  /// While the step exists, the four networks' 4-d parameters and buffers
  /// and the views are stored channels_last (NHWC), oneDNN's native layout
  /// (NCHW makes it reorder every convolution's input and output); the
  /// destructor gives the networks back in the contiguous layout.
  bool channels_last = false;
  /// The four forward passes under bfloat16 autocast on the views' device
  /// (CUDA or CPU; the losses and the backward stay outside autocast, the
  /// losses in float32).
  bool bf16_autocast = false;
  /// BatchNorm over consecutive groups of this many images of each view
  /// (worker/train/group_batch_norm.h); 0: over all the images a network
  /// sees at once.
  int64_t bn_group_size = 0;
  /// Data-parallel ranks (worker/data_parallel.h), with two lanes, one per
  /// pair; null or one rank: this process alone. Each rank passes its share
  /// of the global batch's views and the labels of the whole global batch;
  /// the outputs are gathered, every rank computes the global batch's losses
  /// and the gradients are summed over the ranks during the backward pass
  /// (GradientReducer), so every rank makes the same update.
  std::shared_ptr<const DataParallel> data_parallel;
  /// Gradient bucket size of the all-reduce (DDP's bucket_cap_mb, 25 MiB).
  int64_t gradient_bucket_bytes = 25 << 20;
};

class MmtStep {
 public:
  using Model = methods::models::ReIdentifier;
  using Teacher = methods::EmaTeacher<Model>;

  /// With `channels_last`, converts the networks first. Creates one Adam
  /// (InPlaceAdam) per student over its trainable parameters and, when
  /// the step runs in parallel, the two pair threads. The models and the
  /// teachers must outlive the step.
  MmtStep(Model student_1, Model student_2, Teacher& teacher_1, Teacher& teacher_2,
          MmtStepOptions options);
  ~MmtStep();
  MmtStep(const MmtStep&) = delete;
  MmtStep& operator=(const MmtStep&) = delete;

  /// One iteration: pair i on view `x_i` with labels `y` (int64, P × K;
  /// with data parallelism `x_i` is this rank's share of the rows and `y`
  /// the labels of the whole global batch, in rank order). Reads the loss
  /// terms back with one device-to-host copy.
  MmtLosses run(const torch::Tensor& x1, const torch::Tensor& x2, const torch::Tensor& y);

  /// Whether the pairs run on two threads, and each pair's intra-op threads
  /// (the caller's for both when sequential).
  bool parallel() const { return pool_ != nullptr; }
  std::pair<int, int> pair_threads() const { return pair_threads_; }

  /// Gradient communication of both students since the step was made
  /// (zeros without data parallelism).
  CommunicationStats communication() const;

 private:
  struct Pair;
  class PairThreads;
  void teacher_forward(int which);
  void student_forward(int which);
  void student_update(int which, const torch::Tensor& y);

  MmtStepOptions options_;
  std::vector<Model> networks_;  // students, then teachers
  std::array<std::unique_ptr<Pair>, 2> pairs_;
  std::unique_ptr<PairThreads> pool_;
  std::pair<int, int> pair_threads_{1, 1};
};

}  // namespace tandem::worker
