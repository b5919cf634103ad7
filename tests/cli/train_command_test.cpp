#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "support/run_tandem.h"
#include "support/train_test_support.h"
#include "tandem/jobs/rank_events.h"
#include "tandem/methods/serialization.h"

namespace tandem::cli {
namespace {
namespace fs = std::filesystem;
using testing::expect_same_tensors;
using testing::kill_after_first_checkpoint_then_resume;
using testing::run_tandem;
using testing::scratch_path;
using testing::spawn_tandem;
using testing::wait_for;
using testing::write_file;

TEST(TrainCommand, ACudaDeviceTheHostLacksFailsBeforeAnyWork) {
  // This machine has no GPU: device: cuda (and cuda:N) is an error at once,
  // with exit code 2, never a silent CPU run. (On a GPU host the same spec
  // trains; the GPU check script runs it there.)
  const fs::path dir = scratch_path("train-no-gpu");
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const std::string device : {"cuda", "cuda:3"}) {
    const fs::path out = dir / ("out-" + device.substr(0, 4) + device.substr(device.size() - 1));
    write_file(dir / "job.yaml",
               "kind: pretrain\noutput_dir: " + out.string() +
                   "\nsource: {kind: market1501, root: " + (dir / "none").string() +
                   "}\nbackbone: small\ndevice: '" + device + "'\n");
    const auto run = run_tandem({"train", (dir / "job.yaml").string()}, "train-" + device);
    EXPECT_EQ(run.exit_code, 2) << run.out << run.err;
    EXPECT_NE(run.err.find("spec.device: " + device + ", but "), std::string::npos) << run.err;
    EXPECT_NE(run.err.find("(use device: cpu or auto)"), std::string::npos) << run.err;
    EXPECT_FALSE(fs::exists(out / "events.jsonl")) << "no work was done";
  }
  // --nproc checks every local rank's GPU before launching any.
  const auto launched =
      run_tandem({"train", (dir / "job.yaml").string(), "--nproc", "2"}, "train-nproc-cuda");
  EXPECT_EQ(launched.exit_code, 2) << launched.out << launched.err;
  EXPECT_NE(launched.err.find("with --nproc 2: spec.device"), std::string::npos) << launched.err;
  EXPECT_FALSE(fs::exists(dir / "out-cuda3" / "ranks")) << "no rank was launched";
  fs::remove_all(dir);
}

/// Renders two tiny synthetic domains, pre-trains on one, adapts to the other
/// with MMT (k-means and DBSCAN), all through the real binary.
TEST(TrainCommand, PretrainThenMmtEndToEndOnSyntheticDomains) {
  const fs::path dir = scratch_path("train");
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* domain : {"market", "duke"}) {
    auto synth = run_tandem({"synth", "--out", (dir / domain).string(), "--domain", domain, "--ids",
                             "16", "--cameras", "3", "--seed", "4", "--images-per-camera", "3",
                             "--height", "32", "--width", "16", "--quiet"},
                            std::string("train-synth-") + domain);
    ASSERT_EQ(synth.exit_code, 0) << synth.err;
  }
  const std::string common =
      "backbone: small\nbackbone_width: 4\nheight: 32\nwidth: 16\nidentities: 4\ninstances: 4\n"
      "iters: 3\nloader_threads: 1\nlr: 0.001\n";
  write_file(dir / "pretrain.yaml",
             "kind: pretrain\noutput_dir: " + (dir / "pre").string() +
                 "\nsource: {kind: market1501, root: " + (dir / "market").string() +
                 "}\ntarget: {kind: market1501, root: " + (dir / "duke").string() +
                 "}\nepochs: 2\nwarmup_epochs: 1\n" + common);
  auto pre = run_tandem({"train", (dir / "pretrain.yaml").string()}, "train-pre");
  ASSERT_EQ(pre.exit_code, 0) << pre.out << pre.err;
  EXPECT_NE(pre.out.find("epoch 2/2"), std::string::npos) << pre.out;
  EXPECT_NE(pre.out.find("mAP"), std::string::npos) << pre.out;
  ASSERT_TRUE(fs::exists(dir / "pre" / "model.pt"));
  ASSERT_TRUE(fs::exists(dir / "pre" / "gallery_features.pt"));
  double pretrain_map = -1;
  for (const jobs::RankEvent& event : jobs::read_rank_events(dir / "pre" / "events.jsonl")) {
    if (event.event() == "epoch" && event.map_size() > 0) {
      EXPECT_EQ(event.map_size(), 1) << "pretrain evaluates one model";
      pretrain_map = event.map(0);
    }
  }
  ASSERT_GE(pretrain_map, 0);

  // init: a pretrain job starts from another job's weights (the head is new).
  write_file(dir / "pretrain-init.yaml",
             "kind: pretrain\noutput_dir: " + (dir / "pre-init").string() +
                 "\nsource: {kind: market1501, root: " + (dir / "market").string() +
                 "}\ninit: " + (dir / "pre" / "model.pt").string() +
                 "\nepochs: 1\nwarmup_epochs: 0\nmilestones: [100]\n" + common);
  auto init = run_tandem({"train", (dir / "pretrain-init.yaml").string()}, "train-pre-init");
  ASSERT_EQ(init.exit_code, 0) << init.out << init.err;
  EXPECT_NE(init.out.find("model.pt: 29 loaded, 1 missing (head.weight), 0 unexpected"),
            std::string::npos)
      << init.out;
  write_file(dir / "pretrain-bad-init.yaml",
             "kind: pretrain\noutput_dir: " + (dir / "pre-bad-init").string() +
                 "\nsource: {kind: market1501, root: " + (dir / "market").string() +
                 "}\ninit: " + (dir / "pretrain.yaml").string() + "\nepochs: 1\n" + common);
  auto bad_init =
      run_tandem({"train", (dir / "pretrain-bad-init.yaml").string()}, "train-pre-bad-init");
  EXPECT_NE(bad_init.exit_code, 0);
  EXPECT_NE(bad_init.err.find("pretrain.yaml"), std::string::npos) << bad_init.err;

  // evaluate: the same weights on the same target give the pretrain job's own figure.
  write_file(dir / "evaluate.yaml",
             "kind: evaluate\noutput_dir: " + (dir / "eval").string() +
                 "\ntarget: {kind: market1501, root: " + (dir / "duke").string() +
                 "}\nweights: " + (dir / "pre" / "model.pt").string() + "\n" + common);
  auto eval = run_tandem({"train", (dir / "evaluate.yaml").string()}, "train-eval");
  ASSERT_EQ(eval.exit_code, 0) << eval.out << eval.err;
  std::ifstream metrics_file(dir / "eval" / "metrics.json");
  const auto metrics = nlohmann::json::parse(metrics_file);
  EXPECT_NEAR(metrics["mAP"].get<double>(), pretrain_map, 1e-9);
  EXPECT_TRUE(fs::exists(dir / "eval" / "gallery_features.pt"));
  write_file(dir / "evaluate-bad.yaml",
             "kind: evaluate\noutput_dir: " + (dir / "eval-bad").string() +
                 "\ntarget: {kind: market1501, root: " + (dir / "duke").string() +
                 "}\nweights: " + (dir / "evaluate.yaml").string() + "\n" + common);
  auto bad_eval = run_tandem({"train", (dir / "evaluate-bad.yaml").string()}, "train-eval-bad");
  EXPECT_NE(bad_eval.exit_code, 0);
  EXPECT_NE(bad_eval.err.find("evaluate.yaml"), std::string::npos) << bad_eval.err;

  // dbscan-every: the adaptive eps recomputed every epoch (MMT: epoch 0 only);
  // dbscan-rho: a larger rho gives a larger adaptive eps (spec.rho reaches
  // the clustering); dbscan-camera: clustering input standardised per camera.
  std::map<std::string, double> first_eps;
  for (const std::string variant :
       {"kmeans", "dbscan", "dbscan-every", "dbscan-rho", "dbscan-camera"}) {
    const std::string clustering = variant == "kmeans" ? "kmeans" : "dbscan";
    const bool every = variant == "dbscan-every";
    const std::string rho = variant == "dbscan-rho" ? "0.2" : "0.05";
    const std::string camera = variant == "dbscan-camera" ? "true" : "false";
    const fs::path out = dir / ("mmt-" + variant);
    write_file(dir / "mmt.yaml",
               "kind: mmt\noutput_dir: " + out.string() + "\ntarget: {kind: market1501, root: " +
                   (dir / "duke").string() + "}\ninit_1: " + (dir / "pre" / "model.pt").string() +
                   "\ninit_2: " + (dir / "pre" / "model.pt").string() +
                   "\nepochs: 2\nclustering: " + clustering +
                   "\nk: 8\nmin_samples: 2\nrho: " + rho + "\ncamera_standardise: " + camera +
                   "\neps_every_epoch: " + (every ? "true" : "false") + "\n" + common);
    auto mmt = run_tandem({"train", (dir / "mmt.yaml").string()}, "train-mmt-" + variant);
    ASSERT_EQ(mmt.exit_code, 0) << clustering << "\n" << mmt.out << mmt.err;
    EXPECT_NE(mmt.out.find("epoch 2/2  clusters"), std::string::npos) << mmt.out;
    // The export: gallery features of the best teacher, rows in gallery.txt order.
    const auto gallery = methods::load_state_dict((out / "gallery_features.pt").string());
    const torch::Tensor& features = *gallery.find("features");
    std::ifstream list(out / "gallery.txt");
    int64_t paths = 0;
    for (std::string line; std::getline(list, line);) paths += fs::exists(line);
    EXPECT_EQ(features.size(0), paths);
    EXPECT_EQ(gallery.find("pids")->size(0), paths);
    EXPECT_TRUE(torch::allclose(features.norm(2, 1), torch::ones({paths}), 1e-4, 1e-4));
    for (const char* file : {"teacher_1.pt", "teacher_2.pt", "best.pt", "events.jsonl"}) {
      EXPECT_TRUE(fs::exists(out / file)) << clustering << ": " << file;
    }
    int64_t epochs = 0, iterations = 0;
    std::vector<double> eps;
    std::vector<std::string> phases;
    // One RankEvent per line (jobs/rank_events.h).
    for (const jobs::RankEvent& event : jobs::read_rank_events(out / "events.jsonl")) {
      const std::string line = jobs::rank_event_json(event);
      if (event.event() == "phase") {  // what the service shows as the job's phase
        phases.push_back(event.phase());
        continue;
      }
      EXPECT_EQ(event.kind(), "mmt");
      if (event.event() == "iteration") {
        ++iterations;
        EXPECT_EQ(event.iterations(), 3);
        EXPECT_EQ(event.losses().count("soft_tri"), 1u) << line;
        continue;
      }
      ASSERT_EQ(event.event(), "epoch");
      ++epochs;
      EXPECT_GT(event.clusters(), 0);
      EXPECT_EQ(event.map_size(), 2);
      ASSERT_TRUE(event.pseudo_labels().has_adjusted_rand()) << line;
      const double ari = event.pseudo_labels().adjusted_rand();
      EXPECT_GE(ari, -1.0);
      EXPECT_LE(ari, 1.0);
      ASSERT_TRUE(event.has_eps()) << line;
      eps.push_back(event.eps());
    }
    EXPECT_EQ(epochs, 2);
    const std::vector<std::string> epoch_phases = {"extract", "cluster", "train", "evaluate",
                                                   "checkpoint"};
    std::vector<std::string> expected = epoch_phases;
    expected.insert(expected.end(), epoch_phases.begin(), epoch_phases.end());
    EXPECT_EQ(phases, expected);
    ASSERT_EQ(eps.size(), 2u);
    if (clustering == "dbscan" && !every) {
      EXPECT_GT(eps[0], 0);
      EXPECT_EQ(eps[0], eps[1]) << "MMT's eps is fixed after epoch 0";
    }
    if (every) {
      EXPECT_NE(eps[0], eps[1]) << "eps_every_epoch: eps from each epoch's features";
    }
    first_eps[variant] = eps[0];
    EXPECT_EQ(iterations, 6);
    // Not a terminal: plain progress lines (every tenth of an epoch).
    EXPECT_NE(mmt.out.find("  epoch 1/2 3/3"), std::string::npos) << mmt.out;
  }
  EXPECT_GT(first_eps["dbscan-rho"], first_eps["dbscan"]) << "spec.rho did not reach DBSCAN";
  EXPECT_NE(first_eps["dbscan-camera"], first_eps["dbscan"])
      << "camera_standardise did not change the clustering input";

  write_file(dir / "bad.yaml",
             "kind: mmt\noutput_dir: x\ntarget: {kind: market1501, root: /nope}\n");
  auto bad = run_tandem({"train", (dir / "bad.yaml").string()}, "train-bad");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("/nope: folder not found"), std::string::npos) << bad.err;
  fs::remove_all(dir);
}

TEST(TrainCommand, KilledJobsResumeBitIdentical) {
  const fs::path dir = scratch_path("resume");
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto synth = run_tandem({"synth", "--out", (dir / "data").string(), "--domain", "market", "--ids",
                           "16", "--cameras", "3", "--seed", "2", "--images-per-camera", "3",
                           "--height", "32", "--width", "16", "--quiet"},
                          "resume-synth");
  ASSERT_EQ(synth.exit_code, 0) << synth.err;
  const std::string common =
      "backbone: small\nbackbone_width: 4\nheight: 32\nwidth: 16\nidentities: 4\n"
      "instances: 4\niters: 4\nloader_threads: 2\nlr: 0.001\nepochs: 4\neval_every: 0\n";
  const std::string data = "{kind: market1501, root: " + (dir / "data").string() + "}";
  for (const char* run : {"straight", "killed"}) {
    write_file(dir / (std::string("pre-") + run + ".yaml"),
               "kind: pretrain\noutput_dir: " + (dir / (std::string("pre-") + run)).string() +
                   "\nsource: " + data + "\nwarmup_epochs: 2\nmilestones: [3]\n" + common);
  }
  ASSERT_EQ(run_tandem({"train", (dir / "pre-straight.yaml").string()}, "resume-pre").exit_code, 0);
  kill_after_first_checkpoint_then_resume(dir / "pre-killed.yaml", dir / "pre-killed",
                                          "resume-pre");
  expect_same_tensors(dir / "pre-straight" / "model.pt", dir / "pre-killed" / "model.pt");
  expect_same_tensors(dir / "pre-straight" / "checkpoint.pt", dir / "pre-killed" / "checkpoint.pt");

  const std::string init = (dir / "pre-straight" / "model.pt").string();
  for (const char* run : {"straight", "killed"}) {
    write_file(dir / (std::string("mmt-") + run + ".yaml"),
               "kind: mmt\noutput_dir: " + (dir / (std::string("mmt-") + run)).string() +
                   "\ntarget: " + data + "\ninit_1: " + init + "\ninit_2: " + init +
                   "\nclustering: dbscan\nmin_samples: 2\nrho: 0.05\n" + common);
  }
  ASSERT_EQ(run_tandem({"train", (dir / "mmt-straight.yaml").string()}, "resume-mmt").exit_code, 0);
  kill_after_first_checkpoint_then_resume(dir / "mmt-killed.yaml", dir / "mmt-killed",
                                          "resume-mmt");
  for (const char* file : {"teacher_1.pt", "teacher_2.pt", "checkpoint.pt"}) {
    expect_same_tensors(dir / "mmt-straight" / file, dir / "mmt-killed" / file);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tandem::cli
