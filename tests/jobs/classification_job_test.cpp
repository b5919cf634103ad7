// `tandem train` with the classification kinds (jobs/classification_job.cpp),
// through the real binary, on a few hundred Fashion-MNIST images.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "support/run_tandem.h"
#include "support/train_test_support.h"
#include "tandem/jobs/rank_events.h"
#include "tandem/methods/models/weights.h"
#include "tandem/methods/serialization.h"
#include "tandem/worker/data/fashion_mnist.h"
#include "tandem/worker/train/classification_trainer.h"

namespace tandem::jobs {
namespace {
namespace fs = std::filesystem;
using cli::testing::expect_same_tensors;
using cli::testing::kill_after_first_checkpoint_then_resume;
using cli::testing::run_tandem;
using cli::testing::scratch_path;
using cli::testing::spawn_tandem;
using cli::testing::wait_for;
using cli::testing::write_file;

bool have_fashion_mnist() {
  return fs::exists(worker::fashion_mnist_path(worker::kFashionMnistDefaultDir,
                                               worker::FashionMnistSplit::kTrain, false)) &&
         fs::exists(worker::fashion_mnist_path(worker::kFashionMnistDefaultDir,
                                               worker::FashionMnistSplit::kTest, false));
}

#define SKIP_WITHOUT_FASHION_MNIST()                                                              \
  if (!have_fashion_mnist())                                                                      \
  GTEST_SKIP() << "dataset-fashion-mnist is not installed in " << worker::kFashionMnistDefaultDir \
               << " (scripts/setup installs it)"

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

/// The tiny network and data of these tests.
const char* kTiny = "backbone_width: 4\nbottleneck_dim: 16\nbatch_size: 16\nseed: 3\n";

/// Accuracy of model.pt (a SmallImageClassifier state dict) on `images`.
double accuracy_of_model(const fs::path& model, const torch::Tensor& images,
                         const torch::Tensor& labels) {
  worker::SmallImageClassifier net(10, 4, 16);
  const auto report = methods::models::load_weights(*net, methods::load_state_dict(model.string()));
  EXPECT_TRUE(report.missing.empty() && report.unexpected.empty() && report.mismatched.empty())
      << report.summary();
  torch::NoGradGuard no_grad;
  net->eval();
  const torch::Tensor x =
      images.permute({0, 3, 1, 2}).to(torch::kFloat32).div(127.5).sub(1.0).contiguous();
  const torch::Tensor predicted = std::get<0>(net->forward(x)).argmax(1);
  return predicted.eq(labels).to(torch::kFloat64).mean().item<double>();
}

/// source_only on the built-in shift end to end: it learns (far above the
/// 10 % of chance on the held-out target test set), the events, metrics.json
/// and model.pt agree, and the same images as ImageList files give the same
/// model bit for bit.
TEST(ClassificationJob, SourceOnlyOnTheFashionShiftAndTheSameImagesAsImageLists) {
  SKIP_WITHOUT_FASHION_MNIST();
  const fs::path dir = scratch_path("classification");
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string common = std::string(kTiny) + "epochs: 2\niters: 50\nlr: 0.05\n";
  write_file(dir / "fashion.yaml",
             "kind: source_only\noutput_dir: " + (dir / "fashion").string() +
                 "\nsource: {kind: fashion_mnist_source, images: 400}\n"
                 "target: {kind: fashion_mnist_target, images: 100, test_images: 200}\n" +
                 common);
  auto run = run_tandem({"train", (dir / "fashion.yaml").string()}, "cls-fashion");
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("epoch 2/2"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("held-out target test images"), std::string::npos) << run.out;
  // Not a terminal: plain progress lines every tenth of an epoch.
  EXPECT_NE(run.out.find("  epoch 1/2 5/50"), std::string::npos) << run.out;

  const nlohmann::json metrics = read_json(dir / "fashion" / "metrics.json");
  const double accuracy = metrics["target_accuracy"].get<double>();
  EXPECT_EQ(metrics["test_images"], 200);
  EXPECT_EQ(metrics["classes"], 10);
  EXPECT_EQ(metrics["iterations"], 100);
  EXPECT_GT(accuracy, 0.2) << "100 source steps transfer something (chance: 0.1)";
  EXPECT_LT(accuracy, 1.0);

  // model.pt is the network the accuracy is of: recompute it here.
  const worker::FashionShift data =
      worker::load_fashion_target(worker::kFashionMnistDefaultDir, 100, 200);
  EXPECT_DOUBLE_EQ(
      accuracy_of_model(dir / "fashion" / "model.pt", data.target_test, data.target_test_labels),
      accuracy);

  int64_t iterations = 0, epochs = 0, results = 0;
  for (const RankEvent& event : read_rank_events(dir / "fashion" / "events.jsonl")) {
    const std::string line = rank_event_json(event);
    EXPECT_EQ(event.kind(), "source_only");
    if (event.event() == "iteration") {
      ++iterations;
      EXPECT_EQ(event.iterations(), 50);
      // The iteration's loss terms (the trainer's names).
      ASSERT_EQ(event.losses().count("unsupervised"), 1u) << line;
      ASSERT_EQ(event.losses().count("loss"), 1u) << line;
      ASSERT_EQ(event.losses().count("ce"), 1u) << line;
      EXPECT_EQ(event.losses().at("unsupervised"), 0.0) << "source only has no target term";
      EXPECT_DOUBLE_EQ(event.losses().at("loss"), event.losses().at("ce"));
    } else if (event.event() == "epoch") {
      ++epochs;
      EXPECT_EQ(event.epoch(), epochs - 1);
      ASSERT_TRUE(event.has_target_accuracy()) << line;  // eval_every 1
      if (epochs == 2) {
        EXPECT_DOUBLE_EQ(event.target_accuracy(), accuracy);
      }
    } else {
      ASSERT_EQ(event.event(), "result");
      ++results;
      EXPECT_DOUBLE_EQ(event.target_accuracy(), accuracy);
    }
  }
  EXPECT_EQ(iterations, 100);
  EXPECT_EQ(epochs, 2);
  EXPECT_EQ(results, 1);

  // The same rows written as PNG ImageList files (lossless) train the same model.
  const auto train =
      worker::load_fashion_mnist(worker::kFashionMnistDefaultDir, worker::FashionMnistSplit::kTrain,
                                 worker::kFashionTargetTrainOffset + 100);
  const auto test = worker::load_fashion_mnist(worker::kFashionMnistDefaultDir,
                                               worker::FashionMnistSplit::kTest, 200);
  worker::FashionMnist target_rows{
      train.images.narrow(0, worker::kFashionTargetTrainOffset, 100).contiguous(),
      train.labels.narrow(0, worker::kFashionTargetTrainOffset, 100).contiguous()};
  try {
    worker::write_fashion_image_list(train, worker::FashionDomain::kSource, 1,
                                     (dir / "list-source").string(), 400);
    worker::write_fashion_image_list(target_rows, worker::FashionDomain::kTarget, 2,
                                     (dir / "list-target").string(), 100);
    worker::write_fashion_image_list(test, worker::FashionDomain::kTarget, 3,
                                     (dir / "list-test").string(), 200);
  } catch (const worker::ImageError& e) {
    GTEST_SKIP() << "no PNG codec in this build: " << e.what();
  }
  ASSERT_EQ(train.labels.narrow(0, 0, 400).max().item<int64_t>(), 9) << "all ten classes";
  write_file(
      dir / "list.yaml",
      "kind: source_only\noutput_dir: " + (dir / "list").string() +
          "\nsource: {kind: image_list, list: " + (dir / "list-source" / "list.txt").string() +
          "}\ntarget: {kind: image_list, list: " + (dir / "list-target" / "list.txt").string() +
          ", test_list: " + (dir / "list-test" / "list.txt").string() + "}\n" + common);
  auto list_run = run_tandem({"train", (dir / "list.yaml").string()}, "cls-list");
  ASSERT_EQ(list_run.exit_code, 0) << list_run.out << list_run.err;
  expect_same_tensors(dir / "fashion" / "model.pt", dir / "list" / "model.pt");
  EXPECT_DOUBLE_EQ(read_json(dir / "list" / "metrics.json")["target_accuracy"].get<double>(),
                   accuracy);

  // A checkpoint of another kind in the output folder is refused, by name.
  write_file(dir / "other.yaml", "kind: mcc\noutput_dir: " + (dir / "fashion").string() +
                                     "\nsource: {kind: fashion_mnist_source, images: 400}\n"
                                     "target: {kind: fashion_mnist_target, images: 100, "
                                     "test_images: 200}\n" +
                                     common);
  auto other = run_tandem({"train", (dir / "other.yaml").string()}, "cls-other");
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.err.find("is a checkpoint of another job kind"), std::string::npos) << other.err;
  // A bad list names the field.
  write_file(dir / "bad.yaml",
             "kind: afn\noutput_dir: " + (dir / "bad").string() +
                 "\nsource: {kind: image_list, list: " + (dir / "nope.txt").string() +
                 "}\ntarget: {kind: fashion_mnist_target}\n");
  auto bad = run_tandem({"train", (dir / "bad.yaml").string()}, "cls-bad");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("nope.txt"), std::string::npos) << bad.err;
  fs::remove_all(dir);
}

/// Self-Ensemble (student, EMA teacher and its step, momentum, batch orders)
/// and AFN (dropout draws from the generator) killed after their first epoch
/// finish bit-identical to uninterrupted runs.
TEST(ClassificationJob, KilledJobsResumeBitIdentical) {
  SKIP_WITHOUT_FASHION_MNIST();
  const fs::path dir = scratch_path("classification-resume");
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const std::string kind : {"self_ensemble", "afn"}) {
    SCOPED_TRACE(kind);
    for (const char* run : {"straight", "killed"}) {
      write_file(dir / (kind + "-" + run + ".yaml"),
                 "kind: " + kind + "\noutput_dir: " + (dir / (kind + "-" + run)).string() +
                     "\nsource: {kind: fashion_mnist_source, images: 200}\n"
                     "target: {kind: fashion_mnist_target, images: 200, test_images: 100}\n" +
                     kTiny +
                     "epochs: 4\niters: 20\neval_every: 2\nunsupervised_warmup_iterations: 30\n"
                     "self_ensemble_confidence_threshold: 0.2\n");
    }
    auto straight =
        run_tandem({"train", (dir / (kind + "-straight.yaml")).string()}, "cls-resume-" + kind);
    ASSERT_EQ(straight.exit_code, 0) << straight.out << straight.err;
    kill_after_first_checkpoint_then_resume(dir / (kind + "-killed.yaml"), dir / (kind + "-killed"),
                                            "cls-resume-" + kind, /*epochs=*/4);
    for (const char* file : {"model.pt", "checkpoint.pt"}) {
      expect_same_tensors(dir / (kind + "-straight") / file, dir / (kind + "-killed") / file);
    }
    EXPECT_EQ(read_json(dir / (kind + "-straight") / "metrics.json")["target_accuracy"],
              read_json(dir / (kind + "-killed") / "metrics.json")["target_accuracy"]);
  }
  // Self-Ensemble's checkpoint holds the teacher; AFN's does not.
  const auto se =
      methods::load_state_dict((dir / "self_ensemble-straight" / "checkpoint.pt").string());
  EXPECT_NE(se.find("trainer.teacher_step"), nullptr);
  EXPECT_EQ(se.find("trainer.teacher_step")->item<int64_t>(), 80);
  EXPECT_EQ(se.find("trainer.iteration")->item<int64_t>(), 80);
  const auto afn = methods::load_state_dict((dir / "afn-straight" / "checkpoint.pt").string());
  EXPECT_EQ(afn.find("trainer.teacher_step"), nullptr);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tandem::jobs
