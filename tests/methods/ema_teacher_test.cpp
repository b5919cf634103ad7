#include "tandem/methods/ema_teacher.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <sstream>
#include <string>

#include "support/golden.h"
#include "tandem/methods/afn.h"
#include "tandem/methods/models/reidentifier.h"
#include "tandem/methods/models/resnet.h"

namespace tandem::methods {
namespace {

using testing::error_message;
using testing::golden_cases;
using testing::tensors_close;

// Linear → BatchNorm1d, so the teacher has buffers that EMA must not touch.
struct TinyNetImpl : torch::nn::Cloneable<TinyNetImpl> {
  TinyNetImpl() { reset(); }
  void reset() override {
    fc = register_module("fc", torch::nn::Linear(3, 2));
    bn = register_module("bn", torch::nn::BatchNorm1d(2));
  }
  torch::Tensor forward(const torch::Tensor& x) { return bn(fc(x)); }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};
TORCH_MODULE(TinyNet);

TEST(EmaTeacher, IsADeepCloneThatNeverRequiresGrad) {
  TinyNet student;
  EmaTeacher<TinyNet> teacher(student, 0.9);
  EXPECT_NE(teacher.module().get(), student.get());
  EXPECT_TRUE(torch::equal(teacher.module()->fc->weight, student->fc->weight));
  EXPECT_NE(teacher.module()->fc->weight.data_ptr(), student->fc->weight.data_ptr());
  for (const auto& p : teacher.module()->parameters()) EXPECT_FALSE(p.requires_grad());
  for (const auto& p : student->parameters()) EXPECT_TRUE(p.requires_grad());
}

TEST(EmaTeacher, UpdateAveragesParametersOnly) {
  TinyNet student;
  EmaTeacher<TinyNet> teacher(student, 0.75);
  const auto teacher_before = teacher.module()->fc->weight.clone();
  const auto running_mean_before = teacher.module()->bn->running_mean.clone();
  {
    torch::NoGradGuard no_grad;
    student->fc->weight.add_(1.0);
    student->bn->running_mean.fill_(5.0);  // a student buffer change must not leak
  }
  teacher.update();
  const auto expected = 0.75 * teacher_before + 0.25 * student->fc->weight;
  EXPECT_TRUE(torch::allclose(teacher.module()->fc->weight, expected, 1e-6, 1e-7));
  EXPECT_TRUE(torch::equal(teacher.module()->bn->running_mean, running_mean_before));
  EXPECT_EQ(teacher.step(), 1);
}

TEST(EmaTeacher, WarmupCopiesTheStudentFirstThenConvergesToAlpha) {
  EXPECT_DOUBLE_EQ(ema_warmup_alpha(0.999, 0), 0.0);
  EXPECT_DOUBLE_EQ(ema_warmup_alpha(0.999, 1), 0.5);
  EXPECT_DOUBLE_EQ(ema_warmup_alpha(0.999, 9), 0.9);
  EXPECT_DOUBLE_EQ(ema_warmup_alpha(0.999, 999), 0.999);
  EXPECT_DOUBLE_EQ(ema_warmup_alpha(0.999, 5000), 0.999);

  TinyNet student;
  EmaTeacher<TinyNet> teacher(student, 0.999);
  {
    torch::NoGradGuard no_grad;
    student->fc->weight.normal_();
  }
  teacher.update_with_warmup();  // α_0 = 0: the teacher becomes the student
  EXPECT_TRUE(torch::equal(teacher.module()->fc->weight, student->fc->weight));
  const auto before = teacher.module()->fc->weight.clone();
  {
    torch::NoGradGuard no_grad;
    student->fc->weight.add_(2.0);
  }
  teacher.update_with_warmup();  // α_1 = 0.5
  EXPECT_TRUE(
      torch::allclose(teacher.module()->fc->weight, 0.5 * before + 0.5 * student->fc->weight));
  EXPECT_EQ(teacher.step(), 2);
}

TEST(EmaTeacher, TrajectoryMatchesGolden) {
  for (const auto& golden : golden_cases("ema_teacher")) {
    const auto initial = golden.input("initial");
    const auto steps = golden.input("student_steps");
    torch::nn::Linear student(torch::nn::LinearOptions(initial.size(0), 1).bias(false));
    student->to(torch::kFloat64);
    {
      torch::NoGradGuard no_grad;
      student->weight.copy_(initial.unsqueeze(0));
    }
    EmaTeacher<torch::nn::Linear> teacher(student, golden.option_double("alpha"));
    const bool warmup = golden.option_bool("warmup");
    std::vector<torch::Tensor> trajectory;
    for (int64_t t = 0; t < steps.size(0); ++t) {
      {
        torch::NoGradGuard no_grad;
        student->weight.copy_(steps[t].unsqueeze(0));
      }
      warmup ? teacher.update_with_warmup() : teacher.update();
      trajectory.push_back(teacher.module()->weight.squeeze(0).clone());
    }
    EXPECT_TRUE(tensors_close(torch::stack(trajectory), golden.output(), 1e-12, 1e-14))
        << golden.label();
  }
}

TEST(EmaTeacher, ForwardIsTheTeachersAndFollowsItsMode) {
  TinyNet student;
  EmaTeacher<TinyNet> teacher(student, 0.9);
  auto x = torch::randn({4, 3});
  teacher.eval();
  EXPECT_FALSE(teacher.module()->is_training());
  EXPECT_TRUE(student->is_training());
  auto expected = teacher.module()->forward(x);
  EXPECT_TRUE(torch::equal(teacher(x), expected));
  teacher.train();
  EXPECT_TRUE(teacher.is_training());
}

TEST(EmaTeacher, SaveAndLoadKeepWeightsAlphaAndStep) {
  TinyNet student;
  EmaTeacher<TinyNet> teacher(student, 0.99);
  for (int i = 0; i < 3; ++i) teacher.update_with_warmup();
  torch::serialize::OutputArchive out;
  teacher.save(out);
  std::ostringstream bytes;
  out.save_to(bytes);

  TinyNet other_student;
  EmaTeacher<TinyNet> restored(other_student, 0.5);
  torch::serialize::InputArchive in;
  std::istringstream stream(bytes.str());
  in.load_from(stream);
  restored.load(in);
  EXPECT_DOUBLE_EQ(restored.alpha(), 0.99);
  EXPECT_EQ(restored.step(), 3);
  EXPECT_TRUE(torch::equal(restored.module()->fc->weight, teacher.module()->fc->weight));
  EXPECT_TRUE(torch::equal(restored.module()->bn->running_var, teacher.module()->bn->running_var));
  for (const auto& p : restored.module()->parameters()) EXPECT_FALSE(p.requires_grad());
}

TEST(EmaTeacher, RejectsBadAlphaAndStructureChanges) {
  EXPECT_NE(error_message([] {
              EmaTeacher<TinyNet>(TinyNet(), 1.5);
            }).find("alpha must be in [0, 1], got 1.5"),
            std::string::npos);
  TinyNet student;
  EmaTeacher<TinyNet> teacher(student, 0.9);
  student->fc = student->replace_module("fc", torch::nn::Linear(3, 4));
  EXPECT_NE(error_message([&] { teacher.update(); }).find("parameter 'fc.weight' has shape"),
            std::string::npos);
}

// One parameter, created on `device` (torch::nn::Module::to cannot move
// parameters to the meta device).
struct OneParameterImpl : torch::nn::Cloneable<OneParameterImpl> {
  explicit OneParameterImpl(torch::Device device = torch::kCPU) : device(device) { reset(); }
  void reset() override { w = register_parameter("w", torch::zeros({2}, device)); }
  torch::Device device;
  torch::Tensor w;
};
TORCH_MODULE(OneParameter);

TEST(EmaTeacher, RejectsATeacherOnAnotherDevice) {
  // The meta device stands in for a GPU the student was not moved to.
  OneParameter teacher(torch::kMeta);
  OneParameter student(torch::kCPU);
  EXPECT_EQ(error_message([&] { functional::ema_update(*teacher, *student, 0.9); }),
            "EmaTeacher.update: student parameter 'w' is on cpu but teacher parameter 'w' is on "
            "meta; every tensor must be on one device");
  EXPECT_EQ(error_message([&] { functional::ema_update(*student, *OneParameter(), 0.9); }), "");
}

TEST(EmaTeacher, WorksWithTheReIdModelAndItsClassifierReset) {
  models::ReIdentifier student(torch::nn::AnyModule(models::SmallReidNet()), 128,
                               models::ReIdentifierOptions(5));
  EmaTeacher<models::ReIdentifier> teacher(student, 0.999);
  // The teacher owns its own backbone.
  EXPECT_NE(teacher.module()->backbone.ptr().get(), student->backbone.ptr().get());
  auto centroids = torch::nn::functional::normalize(
      torch::randn({7, 128}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  student->reset_classifier(centroids);
  teacher.module()->reset_classifier(centroids);
  EXPECT_FALSE(teacher.module()->head->weight.requires_grad());
  EXPECT_TRUE(student->head->weight.requires_grad());
  teacher.update_with_warmup();
  EXPECT_TRUE(torch::equal(teacher.module()->head->weight, student->head->weight));
  auto out = teacher(torch::randn({2, 3, 32, 16}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 7}));
}

TEST(EmaTeacher, FollowsAnAfnImageClassifierAsInTheSeedExample) {
  // The seed's example: teacher = EmaTeacher(ImageClassifier(backbone, ...), 0.9).
  torch::manual_seed(61);
  AfnImageClassifier student(torch::nn::AnyModule(models::SmallReidNet()), 128,
                             AfnImageClassifierOptions(3).num_blocks(2).bottleneck_dim(8));
  EmaTeacher<AfnImageClassifier> teacher(student, 0.9);
  const auto student_parameters = student->named_parameters();
  const auto teacher_parameters = teacher.module()->named_parameters();
  ASSERT_EQ(teacher_parameters.size(), student_parameters.size());
  for (const auto& item : teacher_parameters) {
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
    EXPECT_TRUE(student_parameters[item.key()].requires_grad()) << item.key();
    EXPECT_NE(item.value().data_ptr(), student_parameters[item.key()].data_ptr()) << item.key();
  }
  const auto teacher_buffers_before = teacher.module()->named_buffers();
  std::map<std::string, torch::Tensor> buffers_before;
  for (const auto& item : teacher_buffers_before) buffers_before[item.key()] = item.value().clone();
  ASSERT_FALSE(buffers_before.empty());

  // A training step of the student: new weights and new BN statistics.
  const auto step_student = [&] {
    torch::NoGradGuard no_grad;
    for (auto& p : student->parameters()) p.add_(torch::randn_like(p));
    student(torch::randn({4, 3, 32, 32}));  // train mode: moves the student's BN buffers
  };
  const auto expect_buffers_untouched = [&](const char* when) {
    for (const auto& item : teacher.module()->named_buffers()) {
      EXPECT_TRUE(torch::equal(item.value(), buffers_before.at(item.key())))
          << item.key() << " " << when;
    }
  };

  // First update (warm-up α_0 = 0): the teacher becomes the student exactly.
  step_student();
  teacher.update_with_warmup();
  for (const auto& item : teacher.module()->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), student_parameters[item.key()])) << item.key();
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
  }
  expect_buffers_untouched("after the first update");

  // Second update with the constant α = 0.9: θ' = 0.9·θ'_prev + 0.1·θ.
  std::map<std::string, torch::Tensor> previous;
  for (const auto& item : teacher.module()->named_parameters()) {
    previous[item.key()] = item.value().clone();
  }
  step_student();
  teacher.update();
  for (const auto& item : teacher.module()->named_parameters()) {
    const auto expected = 0.9 * previous.at(item.key()) + 0.1 * student_parameters[item.key()];
    EXPECT_TRUE(tensors_close(item.value(), expected, 1e-6, 1e-6)) << item.key();
    EXPECT_FALSE(torch::equal(item.value(), student_parameters[item.key()])) << item.key();
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
  }
  expect_buffers_untouched("after the second update");
  EXPECT_EQ(teacher.step(), 2);

  // The teacher's forward is its own and sends no gradient to its weights.
  teacher.eval();
  auto [logits, features] = teacher(torch::randn({2, 3, 32, 32}));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_FALSE(logits.requires_grad());
}

}  // namespace
}  // namespace tandem::methods
