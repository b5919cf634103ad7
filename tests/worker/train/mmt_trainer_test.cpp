#include "tandem/worker/train/mmt_trainer.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <iostream>

#include "../run_ranks.h"
#include "support/golden.h"
#include "tiny_reid.h"

namespace tandem::worker {
namespace {
using methods::models::ReIdentifier;
using testing::kCameras;
using testing::kIds;
using testing::kPerCamera;
using testing::max_relative_error;
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

TEST(MmtTrainer, Bf16AutocastKeepsFp32WeightsAndTracksTheFp32Losses) {
  const TinyTarget t = tiny_target();
  MmtTrainer fp32(tiny_model(1), tiny_model(2), t.source, t.cameras, tiny_options(),
                  oracle_labels(t.pids));
  auto options = tiny_options();
  options.bf16 = true;  // CPU autocast here; CUDA autocast on a GPU
  MmtTrainer bf16(tiny_model(1), tiny_model(2), t.source, t.cameras, options,
                  oracle_labels(t.pids));
  const MmtEpochStats a = fp32.train_epoch(0);
  const MmtEpochStats b = bf16.train_epoch(0);
  EXPECT_NE(a.losses.total, b.losses.total) << "autocast changed nothing";
  EXPECT_NEAR(b.losses.total, a.losses.total, 0.05 * a.losses.total);
  for (const auto& p : bf16.student(0)->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat32);
}

TEST(MmtTrainer, TrainsOnTheGpuAsOnTheCpu_CUDA) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const TinyTarget t = tiny_target();
  MmtTrainer cpu(tiny_model(1), tiny_model(2), t.source, t.cameras, tiny_options(),
                 oracle_labels(t.pids));
  auto options = tiny_options();
  options.device = torch::Device(torch::kCUDA, 0);
  MmtTrainer gpu(tiny_model(1), tiny_model(2), t.source, t.cameras, options,
                 oracle_labels(t.pids));
  for (int which : {0, 1}) {
    for (const auto& p : gpu.student(which)->parameters()) EXPECT_TRUE(p.is_cuda());
    for (const auto& p : gpu.teacher(which).module()->parameters()) EXPECT_TRUE(p.is_cuda());
  }
  const MmtEpochStats a = cpu.train_epoch(0);
  const MmtEpochStats b = gpu.train_epoch(0);
  EXPECT_NEAR(b.losses.total, a.losses.total, 1e-3 * a.losses.total);
  EXPECT_TRUE(gpu.teacher_features().device().is_cpu()) << "features come back for clustering";
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

/// Sets the caller's intra-op threads for its lifetime.
class IntraOpThreads {
 public:
  explicit IntraOpThreads(int threads) : previous_(at::get_num_threads()) {
    at::set_num_threads(threads);
  }
  ~IntraOpThreads() { at::set_num_threads(previous_); }
  IntraOpThreads(const IntraOpThreads&) = delete;
  IntraOpThreads& operator=(const IntraOpThreads&) = delete;

 private:
  int previous_;
};

/// Parameters and buffers (BatchNorm statistics) of a module, copied.
std::vector<torch::Tensor> state_of(const torch::nn::Module& module) {
  std::vector<torch::Tensor> out = copies(module.parameters());
  for (const auto& b : module.buffers()) out.push_back(b.detach().clone());
  return out;
}

TEST(MmtTrainer, ParallelPairsGiveTheSequentialStepsParameters) {
  // Two pairs on two threads with one intra-op thread each must compute
  // exactly what the sequential step computes with one intra-op thread:
  // same parameters and BatchNorm statistics of all four networks, same
  // loss terms, bit for bit.
  const TinyTarget t = tiny_target();
  MmtEpochStats stats[2];
  std::vector<torch::Tensor> states[2][4];
  for (int parallel : {0, 1}) {
    const IntraOpThreads threads(parallel ? 2 : 1);
    MmtOptions options = tiny_options();
    options.iters = 3;
    options.parallel_pairs = parallel == 1;
    MmtTrainer trainer(tiny_model(1), tiny_model(2), t.source, t.cameras, options,
                       oracle_labels(t.pids));
    trainer.train_epoch(0);
    stats[parallel] = trainer.train_epoch(1);
    for (int which : {0, 1}) {
      states[parallel][which] = state_of(*trainer.student(which));
      states[parallel][2 + which] = state_of(*trainer.teacher(which).module());
    }
  }
  EXPECT_FALSE(stats[0].parallel_pairs);
  EXPECT_TRUE(stats[1].parallel_pairs) << "two intra-op threads did not run the pairs in parallel";
  const char* names[4] = {"student 1", "student 2", "teacher 1", "teacher 2"};
  for (int k = 0; k < 4; ++k) {
    EXPECT_TRUE(all_equal(states[0][k], states[1][k]))
        << names[k] << " differs between the sequential and the parallel step";
  }
  EXPECT_EQ(stats[0].losses.ce, stats[1].losses.ce);
  EXPECT_EQ(stats[0].losses.triplet, stats[1].losses.triplet);
  EXPECT_EQ(stats[0].losses.soft_ce, stats[1].losses.soft_ce);
  EXPECT_EQ(stats[0].losses.soft_triplet, stats[1].losses.soft_triplet);
  EXPECT_EQ(stats[0].losses.total, stats[1].losses.total);
}

/// The four networks' states after two epochs of the same MMT job (global
/// batch 4 x 4) on `world` ranks (threads over loopback Gloo), rank by rank.
std::vector<std::array<std::vector<torch::Tensor>, 4>> train_on_ranks(int world,
                                                                      int64_t bn_group_size) {
  const TinyTarget t = tiny_target();
  std::vector<std::array<std::vector<torch::Tensor>, 4>> states(static_cast<size_t>(world));
  // Made here, not on the rank threads, which would draw from torch's one
  // global generator at the same time.
  const ReIdentifier initial[2] = {tiny_model(1), tiny_model(2)};
  const auto copy = [](const ReIdentifier& m) {
    return ReIdentifier(std::dynamic_pointer_cast<methods::models::ReIdentifierImpl>(m->clone()));
  };
  const auto body = [&](int rank, const std::shared_ptr<DataParallel>& parallel) {
    const IntraOpThreads threads(world == 1 ? 1 : 2);  // ranks > 1: pairs in parallel
    MmtOptions options = tiny_options();
    options.iters = 3;
    options.num_identities = 4;
    options.bn_group_size = bn_group_size;
    options.data_parallel = parallel;
    MmtTrainer trainer(copy(initial[0]), copy(initial[1]), t.source, t.cameras, options,
                       oracle_labels(t.pids));
    trainer.train_epoch(0);
    trainer.train_epoch(1);
    for (int which : {0, 1}) {
      states[static_cast<size_t>(rank)][static_cast<size_t>(which)] =
          state_of(*trainer.student(which));
      states[static_cast<size_t>(rank)][static_cast<size_t>(2 + which)] =
          state_of(*trainer.teacher(which).module());
    }
  };
  testing::run_data_parallel(world, 2, body);
  return states;
}

TEST(MmtTrainer, TwoRanksTrainWhatOneRankTrainsWithBatchNormGroups) {
  // The equivalence of the distributed issue: the same job on W = 1 and
  // W = 2 ends with the same networks (1e-4 relative error) when BatchNorm
  // normalises over fixed groups (4 images here), and both ranks hold
  // bit-identical networks.
  const auto one = train_on_ranks(1, 4);
  const auto two = train_on_ranks(2, 4);
  ASSERT_EQ(two.size(), 2u);
  const char* names[4] = {"student 1", "student 2", "teacher 1", "teacher 2"};
  double grouped = 0;
  for (size_t k = 0; k < 4; ++k) {
    ASSERT_FALSE(two[0][k].empty()) << "rank 0 did not finish";
    EXPECT_TRUE(all_equal(two[0][k], two[1][k])) << names[k] << ": the two ranks differ";
    const double error = max_relative_error(two[0][k], one[0][k]);
    EXPECT_LT(error, 1e-4) << names[k] << ": W=2 vs W=1";
    grouped = std::max(grouped, error);
  }
  // Without groups each rank normalises over its 8 images, one rank over
  // all 16: a different function, and it shows.
  const auto one_plain = train_on_ranks(1, 0);
  const auto two_plain = train_on_ranks(2, 0);
  double worst = 0;
  for (size_t k = 0; k < 4; ++k) {
    worst = std::max(worst, max_relative_error(two_plain[0][k], one_plain[0][k]));
  }
  EXPECT_GT(worst, 1e-3) << "BatchNorm over 8 and over 16 images gave the same networks";
  std::cout << "W=2 vs W=1, largest relative error of a tensor: " << grouped
            << " with BatchNorm groups of 4, " << worst << " without\n";
}

TEST(MmtStep, OnePairsErrorReachesTheCallerInBothModes) {
  // Labels that do not match the batch: the loss of each pair throws (on a
  // pair thread when parallel); run() must rethrow it, not hang or abort.
  const IntraOpThreads threads(2);
  for (bool parallel : {false, true}) {
    MmtStep::Model s1 = tiny_model(1), s2 = tiny_model(2);
    MmtStep::Teacher t1(s1, 0.999), t2(s2, 0.999);
    MmtStepOptions options;
    options.num_classes = kIds;
    options.parallel_pairs = parallel;
    MmtStep step(s1, s2, t1, t2, options);
    EXPECT_EQ(step.parallel(), parallel);
    const torch::Tensor x = torch::randn({12, 3, 32, 16});
    const torch::Tensor wrong = torch::arange(5, torch::kInt64);
    EXPECT_THROW(step.run(x, x, wrong), c10::Error);
    // And the step still works afterwards.
    const MmtLosses losses = step.run(x, x, torch::arange(3, torch::kInt64).repeat_interleave(4));
    EXPECT_TRUE(std::isfinite(losses.total));
    EXPECT_EQ(at::get_num_threads(), 2) << "the caller's intra-op threads changed";
  }
}

TEST(MmtStep, ChannelsLastWhileItLivesAndContiguousAfter) {
  MmtStep::Model s1 = tiny_model(1), s2 = tiny_model(2);
  MmtStep::Teacher t1(s1, 0.999), t2(s2, 0.999);
  const auto four_d = [&] {
    std::vector<torch::Tensor> out;
    for (MmtStep::Model* m : {&s1, &s2, &t1.module(), &t2.module()}) {
      for (const auto& p : (*m)->parameters()) {
        if (p.dim() == 4) out.push_back(p);
      }
    }
    return out;
  };
  const auto before = copies(four_d());
  MmtStepOptions options;
  options.num_classes = kIds;
  options.channels_last = true;
  {
    MmtStep step(s1, s2, t1, t2, options);
    for (const auto& p : four_d()) EXPECT_TRUE(p.is_contiguous(torch::MemoryFormat::ChannelsLast));
    EXPECT_TRUE(all_equal(before, copies(four_d()))) << "the layout change changed values";
    const torch::Tensor x = torch::randn({12, 3, 32, 16});
    const MmtLosses losses = step.run(x, x, torch::arange(3, torch::kInt64).repeat_interleave(4));
    EXPECT_TRUE(std::isfinite(losses.total));
  }
  for (const auto& p : four_d()) EXPECT_TRUE(p.is_contiguous());
  EXPECT_FALSE(all_equal(before, copies(four_d()))) << "the step did not train";
}

TEST(InPlaceAdam, MatchesTorchAdamBitForBit) {
  // Same start, same gradients: after several steps the parameters (one of
  // them channels_last, one never given a gradient) are identical.
  torch::manual_seed(4);
  const std::vector<torch::Tensor> start = {
      torch::randn({8, 3, 5, 5}).contiguous(torch::MemoryFormat::ChannelsLast), torch::randn({17}),
      torch::randn({4, 9}), torch::randn({3})};
  std::vector<torch::Tensor> a, b;
  for (const auto& t : start) {
    a.push_back(t.clone().set_requires_grad(true));
    b.push_back(t.clone().set_requires_grad(true));
  }
  torch::optim::Adam reference(a, torch::optim::AdamOptions(3.5e-4).weight_decay(5e-4));
  InPlaceAdam adam(b, 3.5e-4, 5e-4);
  for (int step = 0; step < 5; ++step) {
    reference.zero_grad();
    adam.zero_grad();
    for (size_t i = 0; i + 1 < start.size(); ++i) {
      const torch::Tensor w = torch::randn(start[i].sizes());
      (a[i] * a[i] * w).sum().backward();
      (b[i] * b[i] * w).sum().backward();
    }
    reference.step();
    adam.step();
  }
  for (size_t i = 0; i < start.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  }
  EXPECT_TRUE(torch::equal(b.back(), start.back())) << "a parameter without gradient moved";
  EXPECT_TRUE(b[0].is_contiguous(torch::MemoryFormat::ChannelsLast));
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
