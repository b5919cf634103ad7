#include "tandem/methods/ema_teacher.h"

#include <torch/torch.h>

namespace tandem::methods {
namespace functional {

void ema_update(torch::nn::Module& teacher, const torch::nn::Module& student, double alpha) {
  TORCH_CHECK(alpha >= 0 && alpha <= 1, "ema_update: alpha must be in [0, 1], got ", alpha);
  torch::NoGradGuard no_grad;
  auto teacher_parameters = teacher.named_parameters(/*recurse=*/true);
  const auto student_parameters = student.named_parameters(/*recurse=*/true);
  TORCH_CHECK(teacher_parameters.size() == student_parameters.size(),
              "EmaTeacher.update: the teacher has ", teacher_parameters.size(),
              " parameters but the student has ", student_parameters.size(),
              " (was a layer of only one of them replaced?)");
  for (const auto& item : student_parameters) {
    auto* teacher_parameter = teacher_parameters.find(item.key());
    TORCH_CHECK(teacher_parameter != nullptr, "EmaTeacher.update: student parameter '", item.key(),
                "' has no counterpart in the teacher");
    TORCH_CHECK(teacher_parameter->sizes() == item.value().sizes(),
                "EmaTeacher.update: parameter '", item.key(), "' has shape ",
                teacher_parameter->sizes(), " in the teacher but ", item.value().sizes(),
                " in the student");
    // detail::check_same_device's message, built only on failure.
    TORCH_CHECK(teacher_parameter->device() == item.value().device(),
                "EmaTeacher.update: student parameter '", item.key(), "' is on ",
                item.value().device(), " but teacher parameter '", item.key(), "' is on ",
                teacher_parameter->device(), "; every tensor must be on one device");
    teacher_parameter->mul_(alpha).add_(item.value().detach(), 1.0 - alpha);
  }
}

}  // namespace functional

namespace detail {

void freeze_parameters(torch::nn::Module& module) {
  for (auto& parameter : module.parameters(/*recurse=*/true)) parameter.set_requires_grad(false);
}

}  // namespace detail
}  // namespace tandem::methods
