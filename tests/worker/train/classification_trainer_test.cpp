#include "tandem/worker/train/classification_trainer.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "support/golden.h"
#include "tandem/worker/data/fashion_mnist.h"

namespace tandem::worker {
namespace {

namespace fs = std::filesystem;

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

/// A few hundred images of the real source → target shift: disjoint garments
/// for the source and the target train set, the test split for the target test.
struct SmallShift {
  torch::Tensor source, source_labels, target_train, target_test, target_test_labels;
};

/// nullopt (and `why`) when the Fashion-MNIST files or zlib are missing.
const std::optional<SmallShift>& small_shift(std::string* why) {
  static std::string reason;
  static const std::optional<SmallShift> data = []() -> std::optional<SmallShift> {
    const std::string dir = kFashionMnistDefaultDir;
    if (!fs::exists(fashion_mnist_path(dir, FashionMnistSplit::kTrain, /*labels=*/false)) ||
        !fs::exists(fashion_mnist_path(dir, FashionMnistSplit::kTest, /*labels=*/false))) {
      reason = "dataset-fashion-mnist is not installed in " + dir + " (scripts/setup installs it)";
      return std::nullopt;
    }
    try {
      const FashionMnist train = load_fashion_mnist(dir, FashionMnistSplit::kTrain, 400);
      const FashionMnist test = load_fashion_mnist(dir, FashionMnistSplit::kTest, 100);
      SmallShift s;
      s.source = fashion_domain_images(train.images.narrow(0, 0, 200), FashionDomain::kSource, 1);
      s.source_labels = train.labels.narrow(0, 0, 200).contiguous();
      s.target_train =
          fashion_domain_images(train.images.narrow(0, 200, 200), FashionDomain::kTarget, 2);
      s.target_test = fashion_domain_images(test.images, FashionDomain::kTarget, 3);
      s.target_test_labels = test.labels;
      return s;
    } catch (const std::exception& e) {
      reason = std::string("cannot read Fashion-MNIST: ") + e.what();
      return std::nullopt;
    }
  }();
  *why = reason;
  return data;
}

#define SKIP_WITHOUT_FASHION_MNIST(data) \
  std::string why_;                      \
  const auto& data = small_shift(&why_); \
  if (!data) GTEST_SKIP() << why_

ClassificationOptions tiny_options() {
  ClassificationOptions o;
  o.iterations = 4;
  o.batch_size = 16;
  o.backbone_width = 4;
  o.bottleneck_dim = 16;
  o.eval_batch_size = 64;
  o.seed = 7;
  o.unsupervised_warmup_iterations = 0;  // the terms from the first step
  return o;
}

TEST(ClassificationTrainer, EveryMethodRunsAndReturnsAnAccuracy) {
  SKIP_WITHOUT_FASHION_MNIST(d);
  for (const auto method : {ClassificationMethod::kSourceOnly, ClassificationMethod::kSelfEnsemble,
                            ClassificationMethod::kMcc, ClassificationMethod::kAfn}) {
    SCOPED_TRACE(classification_method_name(method));
    const ClassificationResult r =
        train_and_evaluate(method, d->source, d->source_labels, d->target_train, d->target_test,
                           d->target_test_labels, tiny_options());
    EXPECT_EQ(r.method, method);
    for (const double acc : {r.target_accuracy, r.source_accuracy, r.student_target_accuracy}) {
      EXPECT_TRUE(std::isfinite(acc));
      EXPECT_GE(acc, 0.0);
      EXPECT_LE(acc, 1.0);
    }
    EXPECT_EQ(r.last_steps.iterations, 4);
    EXPECT_TRUE(std::isfinite(r.last_steps.total));
    EXPECT_NEAR(r.last_steps.total, r.last_steps.ce + r.last_steps.unsupervised,
                1e-5 * std::abs(r.last_steps.total) + 1e-6);
    if (method == ClassificationMethod::kSourceOnly) {
      EXPECT_EQ(r.last_steps.unsupervised, 0.0);
    }
    if (method == ClassificationMethod::kAfn) {
      // The AFN term's value is always 2·Δ² (source + target) times the trade-off.
      EXPECT_NEAR(r.last_steps.unsupervised, 0.05 * 2.0, 1e-4);
    }
    if (method != ClassificationMethod::kSelfEnsemble) {
      EXPECT_EQ(r.target_accuracy, r.student_target_accuracy);
    }
  }
}

TEST(ClassificationTrainer, SameSeedSameResult) {
  SKIP_WITHOUT_FASHION_MNIST(d);
  const auto run = [&](uint64_t seed) {
    ClassificationOptions o = tiny_options();
    o.seed = seed;
    ClassificationTrainer trainer(ClassificationMethod::kMcc, d->source, d->source_labels,
                                  d->target_train, 10, o);
    return trainer.train(3).total;
  };
  EXPECT_DOUBLE_EQ(run(3), run(3));
  EXPECT_NE(run(3), run(4));
}

TEST(ClassificationTrainer, Bf16AutocastKeepsFp32WeightsAndTracksTheFp32Losses) {
  SKIP_WITHOUT_FASHION_MNIST(d);
  for (const auto method : {ClassificationMethod::kMcc, ClassificationMethod::kSelfEnsemble}) {
    SCOPED_TRACE(classification_method_name(method));
    // The first step: the same weights and batch (each constructor seeds the
    // CPU generator, so each trainer steps right after its construction),
    // only bf16 rounding apart.
    ClassificationTrainer fp32(method, d->source, d->source_labels, d->target_train, 10,
                               tiny_options());
    const ClassificationStepStats a = fp32.train(1);
    ClassificationOptions options = tiny_options();
    options.bf16 = true;  // CPU autocast here; CUDA autocast on a GPU
    ClassificationTrainer bf16(method, d->source, d->source_labels, d->target_train, 10, options);
    const ClassificationStepStats b = bf16.train(1);
    EXPECT_NE(a.total, b.total) << "autocast changed nothing";
    EXPECT_NEAR(b.ce, a.ce, 0.02 * a.ce);
    for (const auto& p : bf16.classifier()->parameters())
      EXPECT_EQ(p.scalar_type(), torch::kFloat32);
    const double accuracy = bf16.accuracy(d->target_test, d->target_test_labels);
    EXPECT_GE(accuracy, 0.0);
    EXPECT_LE(accuracy, 1.0);
  }
}

TEST(ClassificationTrainer, TrainsOnTheGpuAsOnTheCpuAndCheckpointsMoveBetweenThem_CUDA) {
  TANDEM_SKIP_WITHOUT_CUDA();
  SKIP_WITHOUT_FASHION_MNIST(d);
  for (const auto method : {ClassificationMethod::kSourceOnly, ClassificationMethod::kSelfEnsemble,
                            ClassificationMethod::kMcc}) {
    SCOPED_TRACE(classification_method_name(method));
    // Each trainer steps right after its constructor seeded the CPU generator.
    ClassificationTrainer cpu(method, d->source, d->source_labels, d->target_train, 10,
                              tiny_options());
    const ClassificationStepStats a = cpu.train(3);
    ClassificationOptions options = tiny_options();
    options.device = torch::Device(torch::kCUDA, 0);
    ClassificationTrainer gpu(method, d->source, d->source_labels, d->target_train, 10, options);
    for (const auto& p : gpu.classifier()->parameters()) EXPECT_TRUE(p.is_cuda());
    const ClassificationStepStats b = gpu.train(3);
    EXPECT_NEAR(b.total, a.total, 1e-3 * std::abs(a.total) + 1e-5);
    EXPECT_EQ(gpu.predict(d->target_test).device().type(), torch::kCPU);
    // The GPU run's state continues on the CPU exactly as the GPU run goes on.
    // (load_state restores the CPU generator, so the GPU run goes first.)
    methods::StateDict state;
    gpu.save_state(state, "trainer");
    const double gpu_next = gpu.train(2).total;
    ClassificationTrainer resumed(method, d->source, d->source_labels, d->target_train, 10,
                                  tiny_options());
    resumed.load_state(state, "trainer");
    EXPECT_NEAR(resumed.train(2).total, gpu_next, 1e-3 * std::abs(a.total) + 1e-5);
  }
}

TEST(ClassificationTrainer, SelfEnsembleTeacherFollowsTheStudentByEma) {
  SKIP_WITHOUT_FASHION_MNIST(d);
  ClassificationTrainer trainer(ClassificationMethod::kSelfEnsemble, d->source, d->source_labels,
                                d->target_train, 10, tiny_options());
  auto* teacher = trainer.teacher();
  ASSERT_NE(teacher, nullptr);
  auto& teacher_module = *teacher->module();
  auto student = trainer.classifier();
  ASSERT_NE(static_cast<torch::nn::Module*>(&teacher_module), student.get())
      << "the teacher is the student";

  const auto snapshot = [](const torch::nn::Module& m) {
    std::vector<torch::Tensor> out;
    for (const auto& p : m.parameters()) out.push_back(p.detach().clone());
    return out;
  };
  const std::vector<torch::Tensor> teacher_0 = snapshot(teacher_module);
  const std::vector<torch::Tensor> student_0 = snapshot(*student);
  ASSERT_EQ(teacher_0.size(), student_0.size());
  for (size_t i = 0; i < teacher_0.size(); ++i) {
    EXPECT_TRUE(torch::equal(teacher_0[i], student_0[i])) << "the teacher starts as a copy";
  }
  for (const auto& p : teacher_module.parameters()) EXPECT_FALSE(p.requires_grad());

  trainer.train(1);
  const std::vector<torch::Tensor> teacher_1 = snapshot(teacher_module);
  const std::vector<torch::Tensor> student_1 = snapshot(*student);
  bool teacher_moved = false, differs_from_student = false;
  for (size_t i = 0; i < teacher_1.size(); ++i) {
    teacher_moved = teacher_moved || !torch::equal(teacher_1[i], teacher_0[i]);
    differs_from_student = differs_from_student || !torch::equal(teacher_1[i], student_1[i]);
    // θ'_1 = α·θ'_0 + (1 − α)·θ_1, after the optimiser step.
    EXPECT_TRUE(
        torch::allclose(teacher_1[i], 0.99 * teacher_0[i] + 0.01 * student_1[i], 1e-5, 1e-6))
        << "parameter " << i;
    EXPECT_NE(teacher_1[i].data_ptr(), student_1[i].data_ptr());
  }
  EXPECT_TRUE(teacher_moved) << "teacher.update() was not called";
  EXPECT_TRUE(differs_from_student) << "the teacher copies the student instead of averaging";
  EXPECT_EQ(teacher->step(), 1);
  trainer.train(2);
  EXPECT_EQ(teacher->step(), 3);
  EXPECT_EQ(trainer.iteration(), 3);

  ClassificationTrainer other(ClassificationMethod::kMcc, d->source, d->source_labels,
                              d->target_train, 10, tiny_options());
  EXPECT_EQ(other.teacher(), nullptr);
}

TEST(ClassificationTrainer, UnsupervisedTermStartsAfterTheWarmup) {
  SKIP_WITHOUT_FASHION_MNIST(d);
  ClassificationOptions o = tiny_options();
  o.unsupervised_warmup_iterations = 3;
  ClassificationTrainer afn(ClassificationMethod::kAfn, d->source, d->source_labels,
                            d->target_train, 10, o);
  const ClassificationStepStats warmup = afn.train(3);
  EXPECT_EQ(warmup.unsupervised, 0.0);
  EXPECT_DOUBLE_EQ(warmup.total, warmup.ce);
  EXPECT_GT(warmup.target_feature_norm, 0.0) << "the target batch is forwarded in the warm-up";
  const ClassificationStepStats after = afn.train(2);
  // AFN's term is 2·Δ²·λ from the first step after the warm-up on.
  EXPECT_NEAR(after.unsupervised, 2.0 * o.afn_trade_off, 1e-4);
  // Self-Ensemble's teacher follows the student during the warm-up too.
  ClassificationTrainer se(ClassificationMethod::kSelfEnsemble, d->source, d->source_labels,
                           d->target_train, 10, o);
  EXPECT_EQ(se.train(3).unsupervised, 0.0);
  EXPECT_EQ(se.teacher()->step(), 3);
  EXPECT_EQ(ClassificationOptions().unsupervised_warmup_iterations, 500);
}

TEST(ClassificationTrainer, ReportsFeatureNormsAndProgress) {
  SKIP_WITHOUT_FASHION_MNIST(d);
  ClassificationTrainer trainer(ClassificationMethod::kMcc, d->source, d->source_labels,
                                d->target_train, 10, tiny_options());
  std::vector<IterationProgress> seen;
  const ClassificationStepStats stats = trainer.train(
      3, [&](const IterationProgress& p) { seen.push_back(p); }, 5);
  ASSERT_EQ(seen.size(), 3u);
  double total = 0;
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].epoch, 5);
    EXPECT_EQ(seen[i].iteration, static_cast<int64_t>(i) + 1);
    EXPECT_EQ(seen[i].iterations, 3);
    ASSERT_EQ(seen[i].losses.size(), 3u);
    EXPECT_EQ(seen[i].losses[0].first, "ce");
    EXPECT_EQ(seen[i].losses[1].first, "unsupervised");
    EXPECT_EQ(seen[i].losses[2].first, "loss");
    EXPECT_NEAR(seen[i].losses[2].second, seen[i].losses[0].second + seen[i].losses[1].second,
                1e-5);
    total += seen[i].losses[2].second;
  }
  EXPECT_NEAR(stats.total, total / 3, 1e-9) << "the epoch mean is the mean of the steps";
  EXPECT_GT(stats.source_feature_norm, 0.0);
  EXPECT_GT(stats.target_feature_norm, 0.0);
  ClassificationTrainer source_only(ClassificationMethod::kSourceOnly, d->source, d->source_labels,
                                    d->target_train, 10, tiny_options());
  EXPECT_EQ(source_only.train(2).target_feature_norm, 0.0) << "source only sees no target";
}

/// save_state after some steps, load_state into a fresh trainer: the next
/// steps are bit-identical to the original trainer's (weights, teacher,
/// momentum, batch order, augmentation and dropout draws).
TEST(ClassificationTrainer, SavedStateContinuesBitIdentical) {
  SKIP_WITHOUT_FASHION_MNIST(d);
  for (const auto method : {ClassificationMethod::kSelfEnsemble, ClassificationMethod::kAfn}) {
    SCOPED_TRACE(classification_method_name(method));
    ClassificationOptions o = tiny_options();
    o.unsupervised_warmup_iterations = 2;
    ClassificationTrainer a(method, d->source, d->source_labels, d->target_train, 10, o);
    a.train(15);  // crosses the end of the 200-image source order (12 batches of 16)
    methods::StateDict state;
    a.save_state(state, "t");
    const double a_next = a.train(4).total;
    methods::StateDict a_after;
    a.save_state(a_after, "t");

    ClassificationOptions other = o;
    other.seed = 99;  // a different initialisation, all overwritten by the state
    ClassificationTrainer b(method, d->source, d->source_labels, d->target_train, 10, other);
    b.load_state(state, "t");
    EXPECT_EQ(b.iteration(), 15);
    const double b_next = b.train(4).total;
    EXPECT_EQ(a_next, b_next);
    methods::StateDict b_after;
    b.save_state(b_after, "t");
    ASSERT_EQ(a_after.size(), b_after.size());
    for (const auto& item : a_after) {
      const torch::Tensor* other_value = b_after.find(item.key());
      ASSERT_NE(other_value, nullptr) << item.key();
      EXPECT_TRUE(torch::equal(item.value(), *other_value)) << item.key();
    }
    // Without the state the continuation differs (the test can fail).
    ClassificationTrainer c(method, d->source, d->source_labels, d->target_train, 10, o);
    EXPECT_NE(c.train(4).total, a_next);
  }
  // A state of another shape is refused, by entry name.
  ClassificationTrainer plain(ClassificationMethod::kMcc, d->source, d->source_labels,
                              d->target_train, 10, tiny_options());
  methods::StateDict state;
  plain.save_state(state, "t");
  ClassificationOptions wider = tiny_options();
  wider.bottleneck_dim = 32;
  ClassificationTrainer other(ClassificationMethod::kMcc, d->source, d->source_labels,
                              d->target_train, 10, wider);
  EXPECT_NE(error_of([&] { other.load_state(state, "t"); }).find("t.classifier.fc.weight"),
            std::string::npos);
}

TEST(ClassificationOptions, ValidationNamesTheField) {
  const std::vector<std::pair<std::string, std::function<void(ClassificationOptions&)>>> cases = {
      {"iterations", [](auto& o) { o.iterations = 0; }},
      {"batch_size", [](auto& o) { o.batch_size = 1; }},
      {"lr", [](auto& o) { o.lr = 0; }},
      {"momentum", [](auto& o) { o.momentum = 1.0; }},
      {"weight_decay", [](auto& o) { o.weight_decay = -1; }},
      {"lr_gamma", [](auto& o) { o.lr_gamma = -1; }},
      {"lr_decay", [](auto& o) { o.lr_decay = -1; }},
      {"backbone_width", [](auto& o) { o.backbone_width = 0; }},
      {"bottleneck_dim", [](auto& o) { o.bottleneck_dim = 0; }},
      {"augment_shift", [](auto& o) { o.augment_shift = -1; }},
      {"augment_flip_probability", [](auto& o) { o.augment_flip_probability = 1.5; }},
      {"augment_color_jitter", [](auto& o) { o.augment_color_jitter = 1.0; }},
      {"augment_invert_probability", [](auto& o) { o.augment_invert_probability = -0.5; }},
      {"unsupervised_warmup_iterations", [](auto& o) { o.unsupervised_warmup_iterations = -1; }},
      {"self_ensemble_alpha", [](auto& o) { o.self_ensemble_alpha = 1.1; }},
      {"self_ensemble_confidence_threshold",
       [](auto& o) { o.self_ensemble_confidence_threshold = -0.1; }},
      {"self_ensemble_consistency_weight",
       [](auto& o) { o.self_ensemble_consistency_weight = -1; }},
      {"self_ensemble_balance_weight", [](auto& o) { o.self_ensemble_balance_weight = -1; }},
      {"mcc_temperature", [](auto& o) { o.mcc_temperature = 0; }},
      {"mcc_trade_off", [](auto& o) { o.mcc_trade_off = -1; }},
      {"afn_delta", [](auto& o) { o.afn_delta = 0; }},
      {"afn_trade_off", [](auto& o) { o.afn_trade_off = -1; }},
      {"afn_dropout", [](auto& o) { o.afn_dropout = 1.0; }},
      {"eval_batch_size", [](auto& o) { o.eval_batch_size = 0; }},
  };
  EXPECT_EQ(error_of([] { ClassificationOptions().validate(); }), "");
  for (const auto& [field, spoil] : cases) {
    ClassificationOptions o;
    spoil(o);
    const std::string message = error_of([&] { o.validate(); });
    EXPECT_NE(message.find("ClassificationOptions." + field + " "), std::string::npos)
        << field << ": " << message;
  }
}

TEST(ClassificationOptions, DefaultsAreTheNotes) {
  const ClassificationOptions o;
  EXPECT_EQ(o.self_ensemble_alpha, 0.99);
  EXPECT_EQ(o.self_ensemble_confidence_threshold, 0.8);
  EXPECT_EQ(o.self_ensemble_consistency_weight, 3.0);
  EXPECT_EQ(o.self_ensemble_balance_weight, 0.01);
  EXPECT_EQ(o.mcc_temperature, 2.5);
  EXPECT_EQ(o.mcc_trade_off, 1.0);
  EXPECT_EQ(o.afn_delta, 1.0);
  EXPECT_EQ(o.afn_trade_off, 0.05);
  EXPECT_DOUBLE_EQ(o.lr_at(0), o.lr);
  EXPECT_NEAR(o.lr_at(1000), o.lr * std::pow(2.0, -0.75), 1e-12);
}

TEST(ClassificationTrainer, RejectsBadInputs) {
  const torch::Tensor images = torch::zeros({8, 32, 32, 3}, torch::kUInt8);
  const torch::Tensor labels = torch::zeros({8}, torch::kInt64);
  ClassificationOptions o = tiny_options();
  o.batch_size = 4;
  EXPECT_NE(error_of([&] {
              ClassificationTrainer(ClassificationMethod::kMcc, images, labels.narrow(0, 0, 7),
                                    images, 10, o);
            }).find("7 source labels for 8 images"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              ClassificationTrainer(ClassificationMethod::kMcc, images, labels + 10, images, 10, o);
            }).find("source labels must be in 0..9"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              ClassificationTrainer(ClassificationMethod::kMcc, images.to(torch::kFloat32), labels,
                                    images, 10, o);
            }).find("source images must be uint8 (n, H, W, 3)"),
            std::string::npos);
  o.batch_size = 16;
  EXPECT_NE(error_of([&] {
              ClassificationTrainer(ClassificationMethod::kMcc, images, labels, images, 10, o);
            }).find("ClassificationOptions.batch_size (16) exceeds"),
            std::string::npos);
  EXPECT_EQ(parse_classification_method("self_ensemble"), ClassificationMethod::kSelfEnsemble);
  EXPECT_NE(error_of([] { parse_classification_method("dann"); }).find("unknown classification"),
            std::string::npos);
}

}  // namespace
}  // namespace tandem::worker
