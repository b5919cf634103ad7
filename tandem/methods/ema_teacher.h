// Exponential-moving-average teacher (mean teacher).
//
// Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017;
// French et al., "Self-ensembling for visual domain adaptation", ICLR 2018;
// MMT (Ge et al., ICLR 2020) uses one per peer network with a warm-up.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

namespace tandem::methods {

namespace functional {
/// θ_teacher ← α·θ_teacher + (1−α)·θ_student for every parameter (buffers are
/// left alone), matched by name; throws a c10::Error naming the parameter if
/// the two modules differ.
void ema_update(torch::nn::Module& teacher, const torch::nn::Module& student, double alpha);
}  // namespace functional

namespace detail {
/// Every parameter of `module` stops requiring gradients.
void freeze_parameters(torch::nn::Module& module);
}  // namespace detail

/// MMT's warm-up: α_t = min(α, 1 − 1/(t+1)) for the 0-based global step t,
/// so the first update copies the student and α grows to its final value.
inline double ema_warmup_alpha(double alpha, int64_t step) {
  return std::min(alpha, 1.0 - 1.0 / static_cast<double>(step + 1));
}

/// The EMA teacher of a student module: a deep clone whose parameters never
/// require grad, updated by θ'_t = α·θ'_{t−1} + (1−α)·θ_t. Only parameters are
/// averaged; the teacher's buffers (BatchNorm statistics) change only through
/// its own forward passes in train mode, as in the originals.
///
/// `ModuleHolder` is a TORCH_MODULE holder of a torch::nn::Cloneable module
/// (e.g. ReIdentifier, AfnImageClassifier, torch::nn::Linear).
///
///   auto student = torch::nn::Linear(4, 2);
///   EmaTeacher<torch::nn::Linear> teacher(student, 0.99);
///   auto y = teacher(x);     // the teacher's forward
///   teacher.update();        // after each optimiser step
template <typename ModuleHolder>
class EmaTeacher {
 public:
  using Impl = typename ModuleHolder::ContainedType;

  EmaTeacher(ModuleHolder model, double alpha)
      : student_(std::move(model)),
        teacher_(std::dynamic_pointer_cast<Impl>(student_->clone())),
        alpha_(alpha) {
    TORCH_CHECK(alpha >= 0 && alpha <= 1, "EmaTeacher: alpha must be in [0, 1], got ", alpha);
    detail::freeze_parameters(*teacher_);
  }

  /// The teacher's forward pass.
  template <typename... Args>
  decltype(auto) forward(Args&&... args) {
    return teacher_->forward(std::forward<Args>(args)...);
  }
  template <typename... Args>
  decltype(auto) operator()(Args&&... args) {
    return forward(std::forward<Args>(args)...);
  }

  /// One EMA step with the constant α (Self-Ensemble); counts the step.
  void update() {
    functional::ema_update(*teacher_, *student_, alpha_);
    ++step_;
  }

  /// One EMA step with MMT's warm-up α_t = min(α, 1 − 1/(step+1)), where step
  /// counts every update so far (never reset per epoch); counts the step.
  void update_with_warmup() {
    functional::ema_update(*teacher_, *student_, ema_warmup_alpha(alpha_, step_));
    ++step_;
  }

  void set_alpha(double alpha) {
    TORCH_CHECK(alpha >= 0 && alpha <= 1, "EmaTeacher: alpha must be in [0, 1], got ", alpha);
    alpha_ = alpha;
  }
  double alpha() const { return alpha_; }
  /// Number of updates so far (the global step of MMT's schedule).
  int64_t step() const { return step_; }
  void set_step(int64_t step) {
    TORCH_CHECK(step >= 0, "EmaTeacher: step must be non-negative, got ", step);
    step_ = step;
  }

  /// The teacher network.
  ModuleHolder& module() { return teacher_; }
  const ModuleHolder& module() const { return teacher_; }
  /// The student it follows.
  ModuleHolder& student() { return student_; }

  void train(bool on = true) { teacher_->train(on); }
  void eval() { teacher_->eval(); }
  bool is_training() const { return teacher_->is_training(); }
  void to(torch::Device device) { teacher_->to(device); }

  /// Writes the teacher's parameters and buffers, α and the step counter.
  void save(torch::serialize::OutputArchive& archive) const {
    torch::serialize::OutputArchive teacher_archive;
    teacher_->save(teacher_archive);
    archive.write("teacher", teacher_archive);
    archive.write("alpha", c10::IValue(alpha_));
    archive.write("step", c10::IValue(step_));
  }
  /// Restores what save() wrote (into a teacher of the same structure).
  void load(torch::serialize::InputArchive& archive) {
    torch::serialize::InputArchive teacher_archive;
    archive.read("teacher", teacher_archive);
    teacher_->load(teacher_archive);
    c10::IValue value;
    archive.read("alpha", value);
    alpha_ = value.toDouble();
    archive.read("step", value);
    step_ = value.toInt();
    detail::freeze_parameters(*teacher_);
  }

 private:
  ModuleHolder student_;
  ModuleHolder teacher_;
  double alpha_;
  int64_t step_ = 0;
};

}  // namespace tandem::methods
