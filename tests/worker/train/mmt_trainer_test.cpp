#include "tandem/worker/train/mmt_trainer.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tiny_reid.h"

namespace tandem::worker {
namespace {
using testing::kCameras;
using testing::kIds;
using testing::kPerCamera;
using testing::tiny_model;
using testing::tiny_target;
using testing::TinyTarget;

MmtOptions tiny_options() {
  MmtOptions options;
  options.iters = 2;
  options.num_identities = 3;
  options.num_instances = 4;
  options.train_transform = TransformOptions::train(32, 16);
  options.train_transform.pad = 2;
  options.loader_threads = 1;
  options.extract_batch = 16;
  return options;
}

/// Pseudo labels = the true identities; centroids = their mean features.
PseudoLabelFn oracle_labels(const std::vector<int64_t>& pids) {
  return [pids](const torch::Tensor& features, int64_t) {
    PseudoLabels out;
    out.labels = torch::tensor(pids, torch::kInt64);
    out.centroids = torch::zeros({kIds, features.size(1)});
    out.centroids.index_add_(0, out.labels, features);
    return out;
  };
}

std::vector<torch::Tensor> copies(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.detach().clone());
  return out;
}

bool all_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].sizes().equals(b[i].sizes()) || !torch::equal(a[i], b[i])) return false;
  }
  return true;
}

TEST(MmtTrainer, EpochResetsHeadsTrainsAndReportsEveryLossTerm) {
  const TinyTarget t = tiny_target();
  MmtTrainer trainer(tiny_model(1), tiny_model(2), t.source, t.cameras, tiny_options(),
                     oracle_labels(t.pids));
  const MmtEpochStats stats = trainer.train_epoch(0);
  EXPECT_EQ(stats.clusters, kIds);
  EXPECT_EQ(stats.noise, 0);
  EXPECT_EQ(stats.iterations, 2);
  for (const double v :
       {stats.losses.ce, stats.losses.triplet, stats.losses.soft_ce, stats.losses.soft_triplet}) {
    EXPECT_TRUE(std::isfinite(v));
    EXPECT_GT(v, 0.0);
  }
  // The minimised total is the weighted sum of the terms (λ_id 0.5, λ_tri 0.8).
  EXPECT_NEAR(stats.losses.total,
              0.5 * stats.losses.ce + 0.2 * stats.losses.triplet + 0.5 * stats.losses.soft_ce +
                  0.8 * stats.losses.soft_triplet,
              1e-4 * stats.losses.total);
  for (int which : {0, 1}) {
    EXPECT_EQ(trainer.student(which)->num_classes(), kIds);
    EXPECT_EQ(trainer.teacher(which).module()->num_classes(), kIds);
    for (const auto& p : trainer.teacher(which).module()->parameters())
      EXPECT_FALSE(p.requires_grad());
  }
  EXPECT_GT(stats.train_images_per_second, 0);
  const torch::Tensor features = trainer.teacher_features();
  EXPECT_EQ(features.sizes(), (std::vector<int64_t>{kIds * kCameras * kPerCamera, 32}));
}

TEST(MmtTrainer, FirstEmaUpdateCopiesTheStudentThenAverages) {
  const TinyTarget t = tiny_target();
  MmtOptions options = tiny_options();
  options.iters = 1;
  MmtTrainer trainer(tiny_model(1), tiny_model(2), t.source, t.cameras, options,
                     oracle_labels(t.pids));
  trainer.train_epoch(0);
  // Warm-up α_0 = min(α, 1 − 1/1) = 0: after one step the teacher IS the student.
  for (int which : {0, 1}) {
    EXPECT_TRUE(all_equal(copies(trainer.teacher(which).module()->parameters()),
                          copies(trainer.student(which)->parameters())))
        << "teacher " << which << " is not the EMA of its own student";
  }
  trainer.train_epoch(1);
  // Second step: α_1 = 0.5, so the teacher lies strictly between its old
  // value and the student (they differ now).
  EXPECT_FALSE(all_equal(copies(trainer.teacher(0).module()->parameters()),
                         copies(trainer.student(0)->parameters())))
      << "the EMA update did not average";
  EXPECT_EQ(trainer.teacher(0).step(), 2);
}

TEST(MmtTrainer, SoftLossesAloneMoveTheStudents) {
  // λ_id = λ_tri = 1: only the teacher-driven soft terms remain; if they were
  // disconnected from the students (detached, or zero), nothing would move.
  const TinyTarget t = tiny_target();
  MmtOptions options = tiny_options();
  options.iters = 1;
  options.soft_ce_weight = 1.0;
  options.soft_triplet_weight = 1.0;
  MmtTrainer trainer(tiny_model(1), tiny_model(2), t.source, t.cameras, options,
                     oracle_labels(t.pids));
  // Backbone parameters (the head is replaced at the start of the epoch).
  const auto before = copies(trainer.student(0)->backbone.ptr()->parameters());
  const auto stats = trainer.train_epoch(0);
  EXPECT_NEAR(stats.losses.total, stats.losses.soft_ce + stats.losses.soft_triplet,
              1e-4 * stats.losses.total);
  const auto after = copies(trainer.student(0)->backbone.ptr()->parameters());
  EXPECT_FALSE(all_equal(before, after)) << "soft losses sent no gradient to the student";
}

TEST(MmtTrainer, ClearErrorsForBadPseudoLabelsAndOptions) {
  const TinyTarget t = tiny_target();
  const auto all_noise = [](const torch::Tensor& features, int64_t) {
    PseudoLabels out;
    out.labels = torch::full({features.size(0)}, -1, torch::kInt64);
    out.centroids = torch::zeros({0, features.size(1)});
    return out;
  };
  MmtTrainer trainer(tiny_model(1), tiny_model(2), t.source, t.cameras, tiny_options(), all_noise);
  try {
    trainer.train_epoch(0);
    FAIL() << "zero clusters accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("found no cluster"), std::string::npos);
  }
  MmtOptions bad = tiny_options();
  bad.num_instances = 1;
  try {
    MmtTrainer(tiny_model(1), tiny_model(2), t.source, t.cameras, bad, oracle_labels(t.pids));
    FAIL() << "num_instances 1 accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("num_instances"), std::string::npos);
  }
  EXPECT_THROW(MmtTrainer(tiny_model(1), tiny_model(2), t.source, {0, 1}, tiny_options(),
                          oracle_labels(t.pids)),
               c10::Error);
}

}  // namespace
}  // namespace tandem::worker
