// The classification kinds' fields of cli/job_spec.cpp (source_only,
// self_ensemble, mcc, afn); the re-ID kinds' fields are tested in
// train_command_test.cpp.
#include "tandem/cli/job_spec.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include <tandem/v1/job_spec.pb.h>

#include "tandem/worker/train/classification_trainer.h"

namespace tandem::cli {
namespace {

std::string error_of(const std::string& yaml) {
  try {
    parse_job_spec(yaml, "job.yaml");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

const std::string kFashion =
    "output_dir: out\nsource: {kind: fashion_mnist_source}\ntarget: {kind: fashion_mnist_target}\n";

// A value of the right type for a field of the wire schema.
std::string sample_value(const google::protobuf::FieldDescriptor& field) {
  using F = google::protobuf::FieldDescriptor;
  if (field.is_repeated()) return "[1]";
  switch (field.cpp_type()) {
    case F::CPPTYPE_STRING: return "x";
    case F::CPPTYPE_BOOL: return "true";
    case F::CPPTYPE_DOUBLE:
    case F::CPPTYPE_FLOAT: return "0.5";
    case F::CPPTYPE_MESSAGE: return "{kind: market1501, root: /data}";
    default: return "1";
  }
}

TEST(JobSpecSchema, EveryFieldOfTheWireSchemaIsReadAndNoOtherKeyIs) {
  // proto/tandem/v1/job_spec.proto is the schema; parse_job_spec refuses any
  // key it lacks, and this test fails for a schema field that tandem train
  // does not read (only world_size is the service's alone).
  const auto* schema = tandem::v1::JobSpec::descriptor();
  const std::string base = "kind: mmt\noutput_dir: out\ntarget: {kind: market1501, root: /data}\n";
  for (int i = 0; i < schema->field_count(); ++i) {
    const auto& field = *schema->field(i);
    if (field.name() == "kind" || field.name() == "output_dir" || field.name() == "target")
      continue;
    const std::string error = error_of(base + field.name() + ": " + sample_value(field) + "\n");
    EXPECT_EQ(error.find("is not a field of a job spec"), std::string::npos) << error;
    if (field.name() == "world_size") {
      EXPECT_NE(error.find("spec.world_size is a field of the service's job spec that tandem "
                           "train does not read"),
                std::string::npos)
          << error;
    } else {
      EXPECT_EQ(error.find("does not read"), std::string::npos) << field.name() << ": " << error;
    }
  }
  const auto* dataset = tandem::v1::DatasetSpec::descriptor();
  for (int i = 0; i < dataset->field_count(); ++i) {
    const std::string error = error_of(
        "kind: mmt\noutput_dir: out\ntarget: {kind: market1501, "
        "root: /data, " +
        dataset->field(i)->name() + ": " + sample_value(*dataset->field(i)) + "}\n");
    EXPECT_EQ(error.find("is not a field ("), std::string::npos) << error;
  }
  EXPECT_NE(error_of(base + "identites: 4\n").find("spec.identites is not a field of a job spec"),
            std::string::npos);
}

TEST(ClassificationJobSpec, DefaultsAreTheClassificationTrainers) {
  for (const char* kind : {"source_only", "self_ensemble", "mcc", "afn"}) {
    SCOPED_TRACE(kind);
    const JobSpec s = parse_job_spec(std::string("kind: ") + kind + "\n" + kFashion, "job.yaml");
    EXPECT_TRUE(is_classification_kind(s.kind));
    const worker::ClassificationOptions o;
    EXPECT_EQ(s.batch_size, o.batch_size);
    EXPECT_EQ(s.lr, o.lr);
    EXPECT_EQ(s.momentum, o.momentum);
    EXPECT_EQ(s.weight_decay, o.weight_decay);
    EXPECT_EQ(s.lr_gamma, o.lr_gamma);
    EXPECT_EQ(s.lr_decay, o.lr_decay);
    EXPECT_EQ(s.backbone_width, o.backbone_width);
    EXPECT_EQ(s.bottleneck_dim, o.bottleneck_dim);
    EXPECT_EQ(s.augment_shift, o.augment_shift);
    EXPECT_EQ(s.augment_flip_probability, o.augment_flip_probability);
    EXPECT_EQ(s.augment_color_jitter, o.augment_color_jitter);
    EXPECT_EQ(s.augment_invert_probability, o.augment_invert_probability);
    EXPECT_EQ(s.unsupervised_warmup_iterations, o.unsupervised_warmup_iterations);
    EXPECT_EQ(s.self_ensemble_alpha, o.self_ensemble_alpha);
    EXPECT_EQ(s.self_ensemble_confidence_threshold, o.self_ensemble_confidence_threshold);
    EXPECT_EQ(s.self_ensemble_consistency_weight, o.self_ensemble_consistency_weight);
    EXPECT_EQ(s.self_ensemble_balance_weight, o.self_ensemble_balance_weight);
    EXPECT_EQ(s.mcc_temperature, o.mcc_temperature);
    EXPECT_EQ(s.mcc_trade_off, o.mcc_trade_off);
    EXPECT_EQ(s.afn_delta, o.afn_delta);
    EXPECT_EQ(s.afn_trade_off, o.afn_trade_off);
    EXPECT_EQ(s.afn_dropout, o.afn_dropout);
    // The benchmark's length (epochs × iters = its 1500 iterations) and size.
    EXPECT_EQ(s.epochs * s.iters, o.iterations);
    EXPECT_EQ(s.backbone, "small");
    EXPECT_EQ(s.height, 32);
    EXPECT_EQ(s.width, 32);
    EXPECT_EQ(s.source.kind, "fashion_mnist_source");
    EXPECT_EQ(s.source.images, 10000);
    EXPECT_EQ(s.target.shift, "standard");
    EXPECT_EQ(s.target.images, 10000);
    EXPECT_EQ(s.target.test_images, 2000);
  }
  // The re-ID kinds keep MMT's defaults.
  const JobSpec mmt = parse_job_spec(
      "kind: mmt\noutput_dir: out\ntarget: {kind: market1501, root: /data}\n", "job.yaml");
  EXPECT_FALSE(is_classification_kind(mmt.kind));
  EXPECT_EQ(mmt.lr, 3.5e-4);
  EXPECT_EQ(mmt.backbone, "resnet50");
  EXPECT_EQ(mmt.height, 256);
}

TEST(ClassificationJobSpec, ReadsEveryFieldAndTheDataSets) {
  const JobSpec s = parse_job_spec(
      "kind: mcc\noutput_dir: o\nsource: {kind: image_list, list: /d/a.txt, root: /d}\n"
      "target: {kind: image_list, list: /d/w.txt, test_list: /d/w_test.txt}\n"
      "height: 64\nwidth: 48\nlr: 0.02\nepochs: 3\niters: 7\nbatch_size: 8\nmomentum: 0.5\n"
      "lr_gamma: 0.002\nlr_decay: 0.5\nbottleneck_dim: 64\naugment_shift: 1\n"
      "augment_flip_probability: 0\naugment_color_jitter: 0.1\naugment_invert_probability: 0.25\n"
      "unsupervised_warmup_iterations: 5\nself_ensemble_alpha: 0.9\n"
      "self_ensemble_confidence_threshold: 0.7\nself_ensemble_consistency_weight: 2\n"
      "self_ensemble_balance_weight: 0.1\nmcc_temperature: 3\nmcc_trade_off: 0.5\n"
      "afn_delta: 0.5\nafn_trade_off: 0.01\nafn_dropout: 0.25\n",
      "job.yaml");
  EXPECT_EQ(s.source.list, "/d/a.txt");
  EXPECT_EQ(s.source.root, "/d");
  EXPECT_EQ(s.target.test_list, "/d/w_test.txt");
  EXPECT_EQ(s.height, 64);
  EXPECT_EQ(s.width, 48);
  EXPECT_EQ(s.lr, 0.02);
  EXPECT_EQ(s.epochs, 3);
  EXPECT_EQ(s.iters, 7);
  EXPECT_EQ(s.batch_size, 8);
  EXPECT_EQ(s.momentum, 0.5);
  EXPECT_EQ(s.lr_gamma, 0.002);
  EXPECT_EQ(s.lr_decay, 0.5);
  EXPECT_EQ(s.bottleneck_dim, 64);
  EXPECT_EQ(s.augment_shift, 1);
  EXPECT_EQ(s.augment_flip_probability, 0.0);
  EXPECT_EQ(s.augment_color_jitter, 0.1);
  EXPECT_EQ(s.augment_invert_probability, 0.25);
  EXPECT_EQ(s.unsupervised_warmup_iterations, 5);
  EXPECT_EQ(s.self_ensemble_alpha, 0.9);
  EXPECT_EQ(s.self_ensemble_confidence_threshold, 0.7);
  EXPECT_EQ(s.self_ensemble_consistency_weight, 2.0);
  EXPECT_EQ(s.self_ensemble_balance_weight, 0.1);
  EXPECT_EQ(s.mcc_temperature, 3.0);
  EXPECT_EQ(s.mcc_trade_off, 0.5);
  EXPECT_EQ(s.afn_delta, 0.5);
  EXPECT_EQ(s.afn_trade_off, 0.01);
  EXPECT_EQ(s.afn_dropout, 0.25);

  const JobSpec f = parse_job_spec(
      "kind: afn\noutput_dir: o\nsource: {kind: fashion_mnist_source, images: 300, root: /f}\n"
      "target: {kind: fashion_mnist_target, images: 200, test_images: 100, shift: hard}\n",
      "job.yaml");
  EXPECT_EQ(f.source.images, 300);
  EXPECT_EQ(f.source.root, "/f");
  EXPECT_EQ(f.target.images, 200);
  EXPECT_EQ(f.target.test_images, 100);
  EXPECT_EQ(f.target.shift, "hard");
}

/// One field set to a bad value, and the start of the message it must give.
struct BadField {
  std::string name;
  std::string yaml;
  std::string message;
};

class ClassificationJobSpecField : public ::testing::TestWithParam<BadField> {};

TEST_P(ClassificationJobSpecField, BadValueIsAnErrorNamingTheField) {
  const BadField& c = GetParam();
  const std::string message = error_of("kind: self_ensemble\n" + kFashion + c.yaml);
  EXPECT_NE(message.find("job.yaml: spec." + c.message), std::string::npos)
      << c.yaml << " gave: " << message;
  // And the field alone, well set, is accepted (the base spec is valid).
  EXPECT_EQ(error_of("kind: self_ensemble\n" + kFashion), "");
}

INSTANTIATE_TEST_SUITE_P(
    EveryField, ClassificationJobSpecField,
    ::testing::Values(
        BadField{"batch_size", "batch_size: 1\n", "batch_size must be >= 2, got 1"},
        BadField{"batch_size_type", "batch_size: many\n",
                 "batch_size must be an integer, got 'many'"},
        BadField{"momentum", "momentum: 1\n", "momentum must be in [0, 1), got 1"},
        BadField{"lr_gamma", "lr_gamma: -0.1\n", "lr_gamma must be >= 0, got -0.1"},
        BadField{"lr_decay", "lr_decay: -1\n", "lr_decay must be >= 0, got -1"},
        BadField{"bottleneck_dim", "bottleneck_dim: 0\n", "bottleneck_dim must be >= 1, got 0"},
        BadField{"augment_shift", "augment_shift: -1\n", "augment_shift must be >= 0, got -1"},
        BadField{"augment_flip_probability", "augment_flip_probability: 1.5\n",
                 "augment_flip_probability must be in [0, 1], got 1.5"},
        BadField{"augment_color_jitter", "augment_color_jitter: 1\n",
                 "augment_color_jitter must be in [0, 1), got 1"},
        BadField{"augment_invert_probability", "augment_invert_probability: -0.5\n",
                 "augment_invert_probability must be in [0, 1], got -0.5"},
        BadField{"unsupervised_warmup_iterations", "unsupervised_warmup_iterations: -3\n",
                 "unsupervised_warmup_iterations must be >= 0, got -3"},
        BadField{"self_ensemble_alpha", "self_ensemble_alpha: 1.5\n",
                 "self_ensemble_alpha must be in [0, 1], got 1.5"},
        BadField{"self_ensemble_confidence_threshold", "self_ensemble_confidence_threshold: 2\n",
                 "self_ensemble_confidence_threshold must be in [0, 1], got 2"},
        BadField{"self_ensemble_consistency_weight", "self_ensemble_consistency_weight: -1\n",
                 "self_ensemble_consistency_weight must be >= 0, got -1"},
        BadField{"self_ensemble_balance_weight", "self_ensemble_balance_weight: -0.01\n",
                 "self_ensemble_balance_weight must be >= 0, got -0.01"},
        BadField{"mcc_temperature", "mcc_temperature: 0\n", "mcc_temperature must be positive"},
        BadField{"mcc_trade_off", "mcc_trade_off: -1\n", "mcc_trade_off must be >= 0, got -1"},
        BadField{"afn_delta", "afn_delta: 0\n", "afn_delta must be positive"},
        BadField{"afn_trade_off", "afn_trade_off: -0.05\n",
                 "afn_trade_off must be >= 0, got -0.05"},
        BadField{"afn_dropout", "afn_dropout: 1\n", "afn_dropout must be in [0, 1), got 1"},
        BadField{"backbone", "backbone: resnet50\n",
                 "backbone must be small for self_ensemble, got 'resnet50'"}),
    [](const ::testing::TestParamInfo<BadField>& info) { return info.param.name; });

/// Data-set fields: a whole spec each (the data sets are the part that varies).
class ClassificationDatasetField : public ::testing::TestWithParam<BadField> {};

TEST_P(ClassificationDatasetField, BadValueIsAnErrorNamingTheField) {
  const BadField& c = GetParam();
  const std::string message = error_of(c.yaml);
  EXPECT_NE(message.find("job.yaml: spec." + c.message), std::string::npos)
      << c.yaml << " gave: " << message;
}

INSTANTIATE_TEST_SUITE_P(
    EveryField, ClassificationDatasetField,
    ::testing::Values(
        BadField{"list_required",
                 "kind: mcc\noutput_dir: o\nsource: {kind: image_list, root: /d}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.list is required for an image_list data set"},
        BadField{"test_list_required",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source}\n"
                 "target: {kind: image_list, list: /d/t.txt}\n",
                 "target.test_list is required"},
        BadField{"test_list_of_the_source",
                 "kind: mcc\noutput_dir: o\n"
                 "source: {kind: image_list, list: /d/s.txt, test_list: /d/x.txt}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.test_list is a field of the target only"},
        BadField{"list_type",
                 "kind: mcc\noutput_dir: o\nsource: {kind: image_list, list: [a, b]}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.list must be a string"},
        BadField{"shift",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source}\n"
                 "target: {kind: fashion_mnist_target, shift: sideways}\n",
                 "target.shift must be standard or hard, got 'sideways'"},
        BadField{"shift_of_the_source",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source, shift: hard}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.shift is not a field of a fashion_mnist_source data set"},
        BadField{"images",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source, images: 0}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.images must be in [1, 30000], got 0"},
        BadField{"images_too_many",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source}\n"
                 "target: {kind: fashion_mnist_target, images: 30001}\n",
                 "target.images must be in [1, 30000], got 30001"},
        BadField{"test_images",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source}\n"
                 "target: {kind: fashion_mnist_target, test_images: 10001}\n",
                 "target.test_images must be in [1, 10000], got 10001"},
        BadField{"images_of_an_image_list",
                 "kind: mcc\noutput_dir: o\nsource: {kind: image_list, list: /s.txt, images: 5}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.images is not a field of a image_list data set"},
        BadField{"unknown_dataset_field",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source, count: 5}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.count is not a field"},
        BadField{"source_required",
                 "kind: afn\noutput_dir: o\ntarget: {kind: fashion_mnist_target}\n",
                 "source is required for afn"},
        BadField{"target_required",
                 "kind: afn\noutput_dir: o\nsource: {kind: fashion_mnist_source}\n",
                 "target is required for afn"},
        BadField{"source_kind",
                 "kind: afn\noutput_dir: o\nsource: {kind: market1501, root: /m}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.kind must be image_list or fashion_mnist_source for afn"},
        BadField{"target_kind",
                 "kind: afn\noutput_dir: o\nsource: {kind: fashion_mnist_source}\n"
                 "target: {kind: fashion_mnist_source}\n",
                 "target.kind must be image_list or fashion_mnist_target for afn"},
        BadField{"reid_kind_rejects_classification_data",
                 "kind: mmt\noutput_dir: o\ntarget: {kind: fashion_mnist_target}\n",
                 "target.kind must be a re-ID layout"},
        BadField{"reid_dataset_rejects_list",
                 "kind: mmt\noutput_dir: o\ntarget: {kind: market1501, root: /m, list: /l}\n",
                 "target.list is not a field of a market1501 data set"},
        BadField{"unknown_kind", "kind: dann\noutput_dir: o\n",
                 "kind must be pretrain, mmt, evaluate, source_only, self_ensemble, mcc or afn"}),
    [](const ::testing::TestParamInfo<BadField>& info) { return info.param.name; });

}  // namespace
}  // namespace tandem::cli
