// The job runners' shared parts (jobs/train_jobs.h) in process: the resolved
// spec's classification defaults are the trainers' (spec/job_spec.cpp's
// table against worker::ClassificationOptions), and make_model. The runners
// themselves run through the real binary (cli/train_command_test.cpp,
// jobs/classification_job_test.cpp, jobs/launcher_test.cpp).
#include "tandem/jobs/train_jobs.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "tandem/spec/job_spec.h"
#include "tandem/worker/train/classification_trainer.h"

namespace tandem::jobs {
namespace {

using tandem::spec::is_classification_kind;
using tandem::spec::parse_job_spec;

const std::string kFashion =
    "output_dir: out\nsource: {kind: fashion_mnist_source}\ntarget: {kind: fashion_mnist_target}\n";

TEST(ClassificationJobSpec, DefaultsAreTheClassificationTrainers) {
  for (const char* kind : {"source_only", "self_ensemble", "mcc", "afn"}) {
    SCOPED_TRACE(kind);
    const JobSpec s = parse_job_spec(std::string("kind: ") + kind + "\n" + kFashion, "job.yaml");
    EXPECT_TRUE(is_classification_kind(s.kind()));
    const worker::ClassificationOptions o;
    EXPECT_EQ(s.batch_size(), o.batch_size);
    EXPECT_EQ(s.lr(), o.lr);
    EXPECT_EQ(s.momentum(), o.momentum);
    EXPECT_EQ(s.weight_decay(), o.weight_decay);
    EXPECT_EQ(s.lr_gamma(), o.lr_gamma);
    EXPECT_EQ(s.lr_decay(), o.lr_decay);
    EXPECT_EQ(s.backbone_width(), o.backbone_width);
    EXPECT_EQ(s.bottleneck_dim(), o.bottleneck_dim);
    EXPECT_EQ(s.augment_shift(), o.augment_shift);
    EXPECT_EQ(s.augment_flip_probability(), o.augment_flip_probability);
    EXPECT_EQ(s.augment_color_jitter(), o.augment_color_jitter);
    EXPECT_EQ(s.augment_invert_probability(), o.augment_invert_probability);
    EXPECT_EQ(s.unsupervised_warmup_iterations(), o.unsupervised_warmup_iterations);
    EXPECT_EQ(s.self_ensemble_alpha(), o.self_ensemble_alpha);
    EXPECT_EQ(s.self_ensemble_confidence_threshold(), o.self_ensemble_confidence_threshold);
    EXPECT_EQ(s.self_ensemble_consistency_weight(), o.self_ensemble_consistency_weight);
    EXPECT_EQ(s.self_ensemble_balance_weight(), o.self_ensemble_balance_weight);
    EXPECT_EQ(s.mcc_temperature(), o.mcc_temperature);
    EXPECT_EQ(s.mcc_trade_off(), o.mcc_trade_off);
    EXPECT_EQ(s.afn_delta(), o.afn_delta);
    EXPECT_EQ(s.afn_trade_off(), o.afn_trade_off);
    EXPECT_EQ(s.afn_dropout(), o.afn_dropout);
    // The benchmark's length (epochs × iters = its 1500 iterations) and size.
    EXPECT_EQ(s.epochs() * s.iters(), o.iterations);
    EXPECT_EQ(s.backbone(), "small");
    EXPECT_EQ(s.height(), 32);
    EXPECT_EQ(s.width(), 32);
    EXPECT_EQ(s.source().kind(), "fashion_mnist_source");
    EXPECT_EQ(s.source().images(), 10000);
    EXPECT_EQ(s.target().shift(), "standard");
    EXPECT_EQ(s.target().images(), 10000);
    EXPECT_EQ(s.target().test_images(), 2000);
  }
  // The re-ID kinds keep MMT's defaults.
  const JobSpec mmt = parse_job_spec(
      "kind: mmt\noutput_dir: out\ntarget: {kind: market1501, root: /data}\n", "job.yaml");
  EXPECT_FALSE(is_classification_kind(mmt.kind()));
  EXPECT_EQ(mmt.lr(), 3.5e-4);
  EXPECT_EQ(mmt.backbone(), "resnet50");
  EXPECT_EQ(mmt.height(), 256);
}

TEST(MakeModel, TheSpecsBackboneWithAHeadOfClassesRowsSeededBySpecSeed) {
  const JobSpec spec = parse_job_spec(
      "kind: pretrain\noutput_dir: out\nsource: {kind: market1501, root: /data}\n"
      "backbone: small\nbackbone_width: 4\nseed: 5\n",
      "job.yaml");
  methods::models::ReIdentifier model = make_model(spec, 7);
  EXPECT_EQ(model->num_classes(), 7);
  ASSERT_FALSE(model->head.is_empty());
  EXPECT_EQ(model->head->weight.size(0), 7);
  EXPECT_EQ(model->head->weight.size(1), model->features_dim);
  EXPECT_EQ(make_model(spec, 3)->num_classes(), 3);
  // The same spec (seed) builds the same weights; another seed others.
  const methods::models::ReIdentifier again = make_model(spec, 7);
  const auto a = model->named_parameters();
  const auto b = again->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) {
    const torch::Tensor* other = b.find(item.key());
    ASSERT_NE(other, nullptr) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), *other)) << item.key();
  }
  JobSpec reseeded = spec;
  reseeded.set_seed(6);
  EXPECT_FALSE(torch::equal(make_model(reseeded, 7)->head->weight, model->head->weight));
}

TEST(RhoForTarget, MmtsRhoScaledToTheSameNeighboursPerImage) {
  // 1.6e-3 of all pairs on Market-1501's 12,936 train images is about 10
  // neighbours per image; the same 10 on n images need 1.6e-3 * 12,936 / n.
  EXPECT_DOUBLE_EQ(rho_for_target(12936), 1.6e-3);
  EXPECT_DOUBLE_EQ(rho_for_target(1000), 1.6e-3 * 12936.0 / 1000.0);
  EXPECT_DOUBLE_EQ(rho_for_target(10), 0.5);  // at most half of the pairs
  EXPECT_THROW(rho_for_target(0), c10::Error);
}

}  // namespace
}  // namespace tandem::jobs
