#include "tandem/worker/train/mmt_step.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "tandem/methods/autocast.h"
#include "tandem/methods/reid_loss.h"
#include "tandem/worker/train/group_batch_norm.h"

namespace tandem::worker {
namespace fn = methods::functional;
using methods::models::ReIdOutput;

namespace {

// Counts down from 2; wait() returns once both pairs have arrived.
class Latch {
 public:
  void arrive() {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      --count_;
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return count_ <= 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int count_ = 2;
};

// Every 4-d parameter and buffer of `module` stored in `format` (what
// Python's module.to(memory_format=...) does); gradients are dropped (the
// next backward writes them in the new layout).
void store_as(torch::nn::Module& module, torch::MemoryFormat format) {
  const torch::NoGradGuard no_grad;
  for (auto& p : module.parameters(/*recurse=*/true)) {
    p.mutable_grad().reset();
    if (p.dim() == 4) p.set_data(p.data().contiguous(format));
  }
  for (auto& b : module.buffers(/*recurse=*/true)) {
    if (b.dim() == 4) b.set_data(b.data().contiguous(format));
  }
}

bool on_cpu(const MmtStep::Model& model) {
  for (const auto& p : model->parameters()) {
    if (!p.device().is_cpu()) return false;
  }
  return true;
}

}  // namespace

InPlaceAdam::InPlaceAdam(std::vector<torch::Tensor> parameters, double lr, double weight_decay,
                         double beta1, double beta2, double eps)
    : parameters_(std::move(parameters)),
      lr_(lr),
      weight_decay_(weight_decay),
      beta1_(beta1),
      beta2_(beta2),
      eps_(eps) {
  TORCH_CHECK(lr > 0, "InPlaceAdam: lr must be positive, got ", lr);
  TORCH_CHECK(weight_decay >= 0, "InPlaceAdam: weight_decay must be >= 0, got ", weight_decay);
  TORCH_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
              "InPlaceAdam: betas must be in [0, 1), got ", beta1, " and ", beta2);
  TORCH_CHECK(eps >= 0, "InPlaceAdam: eps must be >= 0, got ", eps);
  int64_t largest = 0;
  for (const auto& p : parameters_) {
    TORCH_CHECK(p.device() == parameters_[0].device() && p.dtype() == parameters_[0].dtype(),
                "InPlaceAdam: every parameter must have the first one's device and dtype");
    // As torch::optim::Adam's state: zeros in the parameter's memory format.
    exp_avg_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    largest = std::max(largest, p.numel());
  }
  steps_.assign(parameters_.size(), 0);
  if (!parameters_.empty()) scratch_ = torch::empty({largest}, parameters_[0].options());
}

void InPlaceAdam::zero_grad() {
  for (auto& p : parameters_) {
    auto& grad = p.mutable_grad();
    if (grad.defined()) {
      grad.detach_();
      grad.zero_();
    }
  }
}

void InPlaceAdam::step() {
  const torch::NoGradGuard no_grad;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    torch::Tensor& p = parameters_[i];
    torch::Tensor grad = p.mutable_grad();
    if (!grad.defined()) continue;
    torch::Tensor& exp_avg = exp_avg_[i];
    torch::Tensor& exp_avg_sq = exp_avg_sq_[i];
    const int64_t step = ++steps_[i];
    const double bias_correction1 = 1 - std::pow(beta1_, static_cast<double>(step));
    const double bias_correction2 = 1 - std::pow(beta2_, static_cast<double>(step));
    // torch::optim::Adam: grad = grad.add(p, weight_decay) (a new tensor).
    if (weight_decay_ != 0) grad.add_(p, weight_decay_);
    exp_avg.mul_(beta1_).add_(grad, 1 - beta1_);
    exp_avg_sq.mul_(beta2_).addcmul_(grad, grad, 1 - beta2_);
    // torch::optim::Adam: denom = (exp_avg_sq.sqrt() / sqrt(bc2)).add_(eps)
    // (two new tensors); here the scratch buffer, laid out as exp_avg_sq.
    torch::Tensor denom = exp_avg_sq.is_non_overlapping_and_dense()
                              ? scratch_.as_strided(exp_avg_sq.sizes(), exp_avg_sq.strides())
                              : torch::empty_like(exp_avg_sq);
    torch::sqrt_out(denom, exp_avg_sq);
    denom.div_(std::sqrt(bias_correction2)).add_(eps_);
    p.addcdiv_(exp_avg, denom, -lr_ / bias_correction1);
  }
}

struct MmtStep::Pair {
  Model student = nullptr;
  Teacher* teacher = nullptr;
  std::unique_ptr<InPlaceAdam> adam;
  // The gradient all-reduce over this pair's lane (data parallel only).
  std::unique_ptr<GradientReducer> reducer;
  c10d::ProcessGroup* lane = nullptr;
  const torch::Tensor* view = nullptr;
  // The teacher's outputs on `view` (float32 constants for the other pair).
  torch::Tensor teacher_logits, teacher_features;
  // This student's forward on `view`.
  ReIdOutput out;
  // ce, triplet, soft_ce, soft_triplet of this student (detached).
  torch::Tensor terms;
};

// Two persistent threads, thread i with its own intra-op thread count
// (OpenMP's thread count is per calling thread); run() hands both the same
// task with the caller's thread-local state (grad mode, autocast, ...).
class MmtStep::PairThreads {
 public:
  explicit PairThreads(std::array<int, 2> intra_op) {
    const int caller = at::get_num_threads();
    for (int i = 0; i < 2; ++i)
      threads_[static_cast<size_t>(i)] =
          std::thread([this, i, intra_op] { loop(i, intra_op[static_cast<size_t>(i)]); });
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return started_ == 2; });
    lock.unlock();
    // at::set_num_threads also sets the default of threads yet to start:
    // give it back to what the caller had.
    at::set_num_threads(caller);
  }

  ~PairThreads() {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  PairThreads(const PairThreads&) = delete;
  PairThreads& operator=(const PairThreads&) = delete;

  /// task(0) on thread 0 and task(1) on thread 1; returns when both are
  /// done and rethrows the first pair's error, if any.
  void run(const std::function<void(int)>& task) {
    const at::ThreadLocalState state;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      state_ = &state;
      pending_ = 2;
      errors_ = {};
      ++generation_;
    }
    cv_.notify_all();
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return pending_ == 0; });
    task_ = nullptr;
    state_ = nullptr;
    for (const auto& error : errors_) {
      if (error) std::rethrow_exception(error);
    }
  }

 private:
  void loop(int which, int intra_op) {
    // The first parallel op of a thread sets its thread count to the
    // process default; do that first, then set this thread's own. It must be
    // LibTorch's own first-use flag: at::internal::lazy_init_num_threads() is
    // inline, and the wheel builds with -fvisibility-inlines-hidden, so the
    // header's copy of its thread_local flag is ours, not libtorch_cpu's;
    // calling it left libtorch's flag unset, and the thread's first
    // at::get_num_threads() inside LibTorch put it back to the process count
    // (both pairs then ran 2 intra-op threads each on 2 cores). The exported
    // at::get_num_threads() runs LibTorch's own lazy initialisation.
    (void)at::get_num_threads();
    at::set_num_threads(intra_op);
    uint64_t seen = 0;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      ++started_;
    }
    cv_.notify_all();
    for (;;) {
      const std::function<void(int)>* task = nullptr;
      const at::ThreadLocalState* state = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        task = task_;
        state = state_;
      }
      std::exception_ptr error;
      try {
        const at::ThreadLocalStateGuard guard(*state);
        (*task)(which);
      } catch (...) {
        error = std::current_exception();
      }
      {
        const std::lock_guard<std::mutex> lock(mutex_);
        errors_[static_cast<size_t>(which)] = error;
        --pending_;
      }
      cv_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  const std::function<void(int)>* task_ = nullptr;
  const at::ThreadLocalState* state_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  int started_ = 0;
  bool stop_ = false;
  std::array<std::exception_ptr, 2> errors_;
  std::array<std::thread, 2> threads_;
};

MmtStep::MmtStep(Model student_1, Model student_2, Teacher& teacher_1, Teacher& teacher_2,
                 MmtStepOptions options)
    : options_(options) {
  TORCH_CHECK(options_.num_classes >= 1, "MmtStep: num_classes must be >= 1, got ",
              options_.num_classes);
  networks_ = {student_1, student_2, teacher_1.module(), teacher_2.module()};
  if (options_.channels_last) {
    for (auto& network : networks_) store_as(*network, torch::MemoryFormat::ChannelsLast);
  }
  const std::array<Model, 2> students = {std::move(student_1), std::move(student_2)};
  Teacher* teachers[2] = {&teacher_1, &teacher_2};
  for (int i = 0; i < 2; ++i) {
    auto pair = std::make_unique<Pair>();
    pair->student = students[static_cast<size_t>(i)];
    pair->teacher = teachers[i];
    std::vector<torch::Tensor> parameters;
    for (const auto& p : pair->student->parameters()) {
      if (p.requires_grad()) parameters.push_back(p);
    }
    const auto& parallel = options_.data_parallel;
    if (parallel && parallel->world_size() > 1) {
      TORCH_CHECK(parallel->lanes.size() >= 2, "MmtStep: data parallelism needs two lanes, got ",
                  parallel->lanes.size());
      pair->lane = parallel->lanes[static_cast<size_t>(i)].get();
      pair->reducer = std::make_unique<GradientReducer>(
          parameters, parallel->lanes[static_cast<size_t>(i)], options_.gradient_bucket_bytes);
    }
    pair->adam =
        std::make_unique<InPlaceAdam>(std::move(parameters), options_.lr, options_.weight_decay);
    pairs_[static_cast<size_t>(i)] = std::move(pair);
  }
  const int threads = at::get_num_threads();
  pair_threads_ = {threads, threads};
  if (options_.parallel_pairs && threads >= 2 && on_cpu(students[0]) && on_cpu(students[1])) {
    pair_threads_ = {(threads + 1) / 2, threads / 2};
    pool_ = std::make_unique<PairThreads>(
        std::array<int, 2>{pair_threads_.first, pair_threads_.second});
  }
}

MmtStep::~MmtStep() {
  pool_.reset();
  if (options_.channels_last) {
    for (auto& network : networks_) store_as(*network, torch::MemoryFormat::Contiguous);
  }
}

void MmtStep::teacher_forward(int which) {
  Pair& pair = *pairs_[static_cast<size_t>(which)];
  ReIdOutput out;
  {
    const methods::AutocastGuard autocast(pair.view->device().type(), c10::kBFloat16,
                                          options_.bf16_autocast);
    const torch::InferenceMode no_autograd;  // teachers never get gradients
    out = forward_in_groups(pair.teacher->module(), *pair.view, options_.bn_group_size);
    // Outside autocast the losses see float32 (a no-op in float32 runs).
    pair.teacher_logits = out.logits.to(torch::kFloat32);
    pair.teacher_features = out.features.to(torch::kFloat32);
    if (pair.lane != nullptr) {  // the whole global batch's targets
      pair.teacher_logits = all_gather_rows(pair.teacher_logits, *pair.lane);
      pair.teacher_features = all_gather_rows(pair.teacher_features, *pair.lane);
    }
  }
}

void MmtStep::student_forward(int which) {
  Pair& pair = *pairs_[static_cast<size_t>(which)];
  {
    const methods::AutocastGuard autocast(pair.view->device().type(), c10::kBFloat16,
                                          options_.bf16_autocast);
    pair.out = forward_in_groups(pair.student, *pair.view, options_.bn_group_size);
  }
  if (pair.lane != nullptr) {  // differentiable for this rank's rows
    pair.out.logits = all_gather_rows(pair.out.logits.to(torch::kFloat32), *pair.lane);
    pair.out.features = all_gather_rows(pair.out.features.to(torch::kFloat32), *pair.lane);
    pair.out.neck = torch::Tensor();
  }
}

void MmtStep::student_update(int which, const torch::Tensor& y) {
  Pair& pair = *pairs_[static_cast<size_t>(which)];
  // Cross pairing: student 1 is taught by teacher 2 and vice versa.
  const Pair& other = *pairs_[static_cast<size_t>(1 - which)];
  const torch::Tensor logits = pair.out.logits.to(torch::kFloat32);
  const torch::Tensor features = pair.out.features.to(torch::kFloat32);
  pair.out = {};
  const double w_id = options_.soft_ce_weight, w_tri = options_.soft_triplet_weight;
  const torch::Tensor ce =
      fn::cross_entropy_label_smooth(logits, y,
                                     methods::CrossEntropyLabelSmoothOptions(options_.num_classes)
                                         .epsilon(options_.label_smoothing));
  const torch::Tensor triplet =
      fn::soft_triplet_loss(features, features, y, methods::SoftTripletLossOptions().margin(0.0));
  const torch::Tensor soft_ce = fn::soft_cross_entropy_loss(logits, other.teacher_logits);
  const torch::Tensor soft_tri = fn::soft_triplet_loss(features, other.teacher_features, y);
  const torch::Tensor total =
      (1 - w_id) * ce + (1 - w_tri) * triplet + w_id * soft_ce + w_tri * soft_tri;
  pair.adam->zero_grad();
  if (pair.reducer) pair.reducer->prepare_for_backward();
  total.backward();
  if (pair.reducer) pair.reducer->backward_done();
  pair.adam->step();
  pair.teacher->update_with_warmup();
  const torch::NoGradGuard no_grad;
  pair.terms = torch::stack({ce, triplet, soft_ce, soft_tri});
}

CommunicationStats MmtStep::communication() const {
  CommunicationStats sum;
  for (const auto& pair : pairs_) {
    if (!pair->reducer) continue;
    const CommunicationStats s = pair->reducer->stats();
    sum.backward_passes += s.backward_passes;
    sum.buckets += s.buckets;
    sum.bytes += s.bytes;
    sum.backward_seconds += s.backward_seconds;
    sum.communication_seconds += s.communication_seconds;
    sum.overlapped_seconds += s.overlapped_seconds;
  }
  return sum;
}

MmtLosses MmtStep::run(const torch::Tensor& x1, const torch::Tensor& x2, const torch::Tensor& y) {
  const auto layout = [&](const torch::Tensor& x) {
    return options_.channels_last && x.dim() == 4 ? x.contiguous(torch::MemoryFormat::ChannelsLast)
                                                  : x;
  };
  const torch::Tensor v1 = layout(x1), v2 = layout(x2);
  pairs_[0]->view = &v1;
  pairs_[1]->view = &v2;
  if (pool_) {
    Latch teachers_done;
    pool_->run([&](int which) {
      {
        // Arrive even on an error, so that the other pair never waits forever.
        struct Arrive {
          Latch& latch;
          ~Arrive() { latch.arrive(); }
        } arrive{teachers_done};
        teacher_forward(which);
      }
      student_forward(which);
      teachers_done.wait();  // the other teacher's outputs are this loss's targets
      student_update(which, y);
    });
  } else {
    teacher_forward(0);
    teacher_forward(1);
    for (int which : {0, 1}) {
      student_forward(which);
      student_update(which, y);
    }
  }
  // One copy to the host for the epoch statistics.
  const torch::Tensor terms =
      torch::stack({pairs_[0]->terms, pairs_[1]->terms}).to(torch::kCPU, torch::kFloat32);
  const auto a = terms.accessor<float, 2>();
  const auto sum = [&](int64_t k) { return static_cast<double>(a[0][k] + a[1][k]); };
  MmtLosses losses;
  losses.ce = sum(0);
  losses.triplet = sum(1);
  losses.soft_ce = sum(2);
  losses.soft_triplet = sum(3);
  const double w_id = options_.soft_ce_weight, w_tri = options_.soft_triplet_weight;
  losses.total = (1 - w_id) * losses.ce + (1 - w_tri) * losses.triplet + w_id * losses.soft_ce +
                 w_tri * losses.soft_triplet;
  for (auto& pair : pairs_) {
    pair->view = nullptr;
    pair->teacher_logits = torch::Tensor();
    pair->teacher_features = torch::Tensor();
    pair->terms = torch::Tensor();
  }
  return losses;
}

}  // namespace tandem::worker
