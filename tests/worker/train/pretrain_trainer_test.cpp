#include "tandem/worker/train/pretrain_trainer.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../run_ranks.h"
#include "support/golden.h"
#include "tiny_reid.h"

namespace tandem::worker {
namespace {
using testing::kIds;
using testing::max_relative_error;
using testing::tiny_model;
using testing::tiny_target;

PretrainOptions tiny_options() {
  PretrainOptions options;
  options.iters = 6;
  options.num_identities = 3;
  options.num_instances = 4;
  options.lr = 3e-3;
  options.warmup_epochs = 0;
  options.train_transform = TransformOptions::train(32, 16);
  options.train_transform.pad = 2;
  options.train_transform.erase_probability = 0;
  options.loader_threads = 1;
  return options;
}

TEST(PretrainOptions, WarmupThenMilestonesAsMmt) {
  PretrainOptions o;  // lr 3.5e-4, warm-up 10 epochs from 0.01, milestones 40, 70
  EXPECT_DOUBLE_EQ(o.lr_at(0), 3.5e-4 * 0.01);
  EXPECT_DOUBLE_EQ(o.lr_at(5), 3.5e-4 * (0.01 * 0.5 + 0.5));
  EXPECT_DOUBLE_EQ(o.lr_at(10), 3.5e-4);
  EXPECT_DOUBLE_EQ(o.lr_at(39), 3.5e-4);
  EXPECT_NEAR(o.lr_at(40), 3.5e-5, 1e-18);
  EXPECT_NEAR(o.lr_at(70), 3.5e-6, 1e-18);
  o.milestones = {5, 3};
  EXPECT_THROW(o.validate(), c10::Error);
}

TEST(PretrainTrainer, LearnsTheSourceIdentities) {
  const auto t = tiny_target();
  PretrainTrainer trainer(tiny_model(1), t.source, t.pids, t.cameras, tiny_options());
  const PretrainEpochStats first = trainer.train_epoch(0);
  PretrainEpochStats last;
  for (int64_t epoch = 1; epoch < 6; ++epoch) last = trainer.train_epoch(epoch);
  EXPECT_EQ(first.iterations, 6);
  EXPECT_TRUE(std::isfinite(first.total));
  EXPECT_NEAR(first.total, first.ce + first.triplet, 1e-5 * first.total);
  EXPECT_LT(last.ce, first.ce) << "cross entropy did not fall";
  EXPECT_GT(last.train_accuracy, first.train_accuracy);
  EXPECT_GT(last.train_accuracy, 2.0 / kIds) << "at least twice chance on 6 identities";
  EXPECT_DOUBLE_EQ(last.lr, 3e-3);
}

TEST(PretrainTrainer, Bf16AutocastKeepsFp32WeightsAndTracksTheFp32Losses) {
  const auto t = tiny_target();
  PretrainTrainer fp32(tiny_model(1), t.source, t.pids, t.cameras, tiny_options());
  auto options = tiny_options();
  options.bf16 = true;  // CPU autocast here; CUDA autocast on a GPU
  const auto model = tiny_model(1);
  PretrainTrainer bf16(model, t.source, t.pids, t.cameras, options);
  const PretrainEpochStats a = fp32.train_epoch(0);
  const PretrainEpochStats b = bf16.train_epoch(0);
  EXPECT_NE(a.total, b.total) << "autocast changed nothing";
  EXPECT_NEAR(b.total, a.total, 0.05 * a.total);
  for (const auto& p : model->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat32);
}

TEST(PretrainTrainer, TrainsOnTheGpuAsOnTheCpu_CUDA) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const auto t = tiny_target();
  PretrainTrainer cpu(tiny_model(1), t.source, t.pids, t.cameras, tiny_options());
  auto options = tiny_options();
  options.device = torch::Device(torch::kCUDA, 0);
  const auto model = tiny_model(1);
  PretrainTrainer gpu(model, t.source, t.pids, t.cameras, options);
  for (const auto& p : model->parameters()) EXPECT_TRUE(p.is_cuda());
  const PretrainEpochStats a = cpu.train_epoch(0);
  const PretrainEpochStats b = gpu.train_epoch(0);
  EXPECT_NEAR(b.ce, a.ce, 1e-3 * a.ce);
  EXPECT_NEAR(b.total, a.total, 1e-3 * a.total);
}

TEST(PretrainTrainer, RejectsIdsThatDoNotMatchTheHead) {
  const auto t = tiny_target();
  std::vector<int64_t> shifted = t.pids;
  for (auto& pid : shifted) pid += 1;  // 1..6 with a 6-class head
  try {
    PretrainTrainer(tiny_model(1), t.source, shifted, t.cameras, tiny_options());
    FAIL() << "accepted ids beyond the head";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("ids must be 0..5"), std::string::npos)
        << e.what_without_backtrace();
  }
  EXPECT_THROW(PretrainTrainer(tiny_model(1), t.source, {0, 1}, {0, 1}, tiny_options()),
               c10::Error);
}

// MMT's target batches (notes §7.4) only move BatchNorm's running
// statistics: the learned parameters stay bit-identical to a run without
// them, while the running means shift toward the (much brighter) target.
TEST(PretrainTrainer, TargetBatchesOnlyMoveBatchNormStatistics) {
  const auto t = tiny_target();
  std::vector<Image> bright;
  for (int i = 0; i < 10; ++i) {
    Image image(32, 16);
    std::fill(image.pixels.begin(), image.pixels.end(), static_cast<uint8_t>(240 + i));
    bright.push_back(std::move(image));
  }
  PretrainTrainer plain(tiny_model(1), t.source, t.pids, t.cameras, tiny_options());
  PretrainTrainer adapted(tiny_model(1), t.source, t.pids, t.cameras, tiny_options());
  adapted.set_target_bn_source(std::make_shared<MemoryImageSource>(std::move(bright)));
  const auto a = plain.train_epoch(0), b = adapted.train_epoch(0);
  EXPECT_DOUBLE_EQ(a.total, b.total) << "the target batches changed the loss";
  const auto pa = plain.model()->named_parameters(), pb = adapted.model()->named_parameters();
  for (const auto& item : pa) {
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key() << " changed";
  }
  const auto ba = plain.model()->named_buffers(), bb = adapted.model()->named_buffers();
  int64_t moved = 0;
  for (const auto& item : ba) {
    if (item.key().find("running_mean") == std::string::npos) continue;
    if (!torch::allclose(item.value(), bb[item.key()])) ++moved;
  }
  EXPECT_GT(moved, 0) << "no BatchNorm running mean saw the target";
  EXPECT_THROW(
      adapted.set_target_bn_source(std::make_shared<MemoryImageSource>(std::vector<Image>{})),
      c10::Error);
}

/// Parameters and buffers of the model after two epochs (global batch
/// 4 x 4, target batches for BatchNorm) on `world` ranks, rank by rank.
std::vector<std::vector<torch::Tensor>> pretrain_on_ranks(int world, int64_t bn_group_size) {
  const auto t = tiny_target();
  std::vector<std::vector<torch::Tensor>> states(static_cast<size_t>(world));
  // Made here, not on the rank threads, which would draw from torch's one
  // global generator at the same time; rank 1 starts from other weights,
  // which the broadcast from rank 0 must replace.
  const methods::models::ReIdentifier initial[2] = {tiny_model(1), tiny_model(2)};
  const auto body = [&](int rank, const std::shared_ptr<DataParallel>& parallel) {
    PretrainOptions options = tiny_options();
    options.iters = 3;
    options.num_identities = 4;
    options.bn_group_size = bn_group_size;
    options.data_parallel = parallel;
    methods::models::ReIdentifier model(
        std::dynamic_pointer_cast<methods::models::ReIdentifierImpl>(initial[rank]->clone()));
    PretrainTrainer trainer(model, t.source, t.pids, t.cameras, options);
    trainer.set_target_bn_source(t.source);
    trainer.train_epoch(0);
    trainer.train_epoch(1);
    auto& state = states[static_cast<size_t>(rank)];
    for (const auto& p : trainer.model()->parameters()) state.push_back(p.detach().clone());
    for (const auto& b : trainer.model()->buffers()) state.push_back(b.detach().clone());
  };
  testing::run_data_parallel(world, 0, body);
  return states;
}

TEST(PretrainTrainer, TwoRanksTrainWhatOneRankTrainsWithBatchNormGroups) {
  const auto one = pretrain_on_ranks(1, 4);
  const auto two = pretrain_on_ranks(2, 4);
  ASSERT_EQ(two[1].size(), one[0].size());
  for (size_t i = 0; i < one[0].size(); ++i) {
    EXPECT_TRUE(torch::equal(two[0][i], two[1][i])) << "tensor " << i << ": the ranks differ";
  }
  EXPECT_LT(max_relative_error(two[0], one[0]), 1e-4);
  EXPECT_GT(max_relative_error(pretrain_on_ranks(2, 0)[0], pretrain_on_ranks(1, 0)[0]), 1e-3)
      << "BatchNorm over 8 and over 16 images gave the same model";
}

}  // namespace
}  // namespace tandem::worker
