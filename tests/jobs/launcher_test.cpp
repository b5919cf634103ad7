// `tandem train SPEC --nproc N` through the real binary: N ranks as real
// processes over loopback Gloo, the same result as one rank, and a rank
// killed mid-job restarting the group from the last checkpoint.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <thread>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "support/run_tandem.h"
#include "tandem/jobs/rank_events.h"
#include "tandem/methods/serialization.h"

namespace tandem::jobs {
namespace {
namespace fs = std::filesystem;
using cli::testing::read_file;
using cli::testing::run_tandem;
using cli::testing::scratch_path;
using cli::testing::spawn_tandem;
using cli::testing::wait_for;
using cli::testing::write_file;

/// A tiny duke-style target (8 train ids) rendered once per test binary.
fs::path tiny_target() {
  static const fs::path dir = [] {
    const fs::path d = scratch_path("launcher-data");
    fs::remove_all(d);
    auto synth = run_tandem({"synth", "--out", (d / "duke").string(), "--domain", "duke", "--ids",
                             "16", "--cameras", "3", "--seed", "4", "--images-per-camera", "3",
                             "--height", "32", "--width", "16", "--quiet"},
                            "launcher-synth");
    EXPECT_EQ(synth.exit_code, 0) << synth.err;
    return d / "duke";
  }();
  return dir;
}

/// An MMT spec with a global batch of 4 x 4 and BatchNorm groups of 4.
fs::path mmt_spec(const fs::path& dir, const std::string& name, int epochs,
                  const std::string& extra = "") {
  const fs::path spec = dir / (name + ".yaml");
  write_file(spec,
             "kind: mmt\noutput_dir: " + (dir / name).string() +
                 "\ntarget: {kind: market1501, root: " + tiny_target().string() +
                 "}\nbackbone: small\nbackbone_width: 4\nheight: 32\nwidth: 16\n"
                 "identities: 4\ninstances: 4\niters: 3\nepochs: " +
                 std::to_string(epochs) +
                 "\nloader_threads: 1\nlr: 0.001\nclustering: kmeans\nk: 8\nbn_group_size: 4\n" +
                 extra);
  return spec;
}

double max_relative_error(const fs::path& a, const fs::path& b) {
  const auto x = methods::load_state_dict(a.string());
  const auto y = methods::load_state_dict(b.string());
  double worst = 0;
  for (const auto& item : x) {
    const torch::Tensor* other = y.find(item.key());
    EXPECT_NE(other, nullptr) << item.key();
    if (other == nullptr || !item.value().is_floating_point()) continue;
    const torch::Tensor p = item.value().to(torch::kFloat64), q = other->to(torch::kFloat64);
    if (q.norm().item<double>() > 0)
      worst = std::max(worst, (p - q).norm().item<double>() / q.norm().item<double>());
  }
  return worst;
}

bool process_alive(int pid) {
  return pid > 0 && ::kill(pid, 0) == 0;
}

TEST(Launcher, TwoLocalRanksTrainWhatOneRankTrains) {
  const fs::path dir = scratch_path("launcher-equal");
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto one = run_tandem({"train", mmt_spec(dir, "one", 2).string()}, "launcher-one");
  ASSERT_EQ(one.exit_code, 0) << one.out << one.err;
  auto two =
      run_tandem({"train", mmt_spec(dir, "two", 2).string(), "--nproc", "2"}, "launcher-two");
  ASSERT_EQ(two.exit_code, 0) << two.out << two.err;
  EXPECT_NE(two.out.find("started 2 ranks on 127.0.0.1:"), std::string::npos) << two.out;
  EXPECT_NE(two.out.find("2 epochs x 3 iterations, 2 ranks"), std::string::npos) << two.out;
  // Rank 0 prints and writes; rank 1 logs to its file only.
  EXPECT_EQ(two.out.find("tandem train: mmt on", two.out.find("tandem train: mmt on") + 1),
            std::string::npos)
      << "only rank 0 prints:\n"
      << two.out;
  EXPECT_TRUE(fs::exists(dir / "two" / "ranks" / "rank-1.log"));
  for (const char* file : {"teacher_1.pt", "teacher_2.pt", "best.pt"}) {
    EXPECT_LT(max_relative_error(dir / "two" / file, dir / "one" / file), 1e-4) << file;
  }
  // The epoch events carry the world size and the gradient traffic.
  int epochs = 0;
  for (const RankEvent& event : read_rank_events(dir / "two" / "events.jsonl")) {
    if (event.event() != "epoch") continue;
    ++epochs;
    EXPECT_EQ(event.world_size(), 2);
    EXPECT_EQ(event.communication().backward_passes(), 6);  // 3 iterations x 2 students
    EXPECT_GT(event.communication().bytes(), 0);
  }
  EXPECT_EQ(epochs, 2);
}

TEST(Launcher, ClassificationJobsOnTwoRanks) {
  // Self-Ensemble and MCC on two ranks train what one rank trains; AFN runs
  // (its dropout masks are drawn per share, so it matches in distribution).
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) {
    GTEST_SKIP() << "dataset-fashion-mnist is not installed (scripts/setup installs it)";
  }
  const fs::path dir = scratch_path("launcher-classification");
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const std::string kind : {"self_ensemble", "mcc", "afn"}) {
    SCOPED_TRACE(kind);
    for (const std::string world : {"1", "2"}) {
      const fs::path spec = dir / (kind + "-" + world + ".yaml");
      write_file(spec,
                 "kind: " + kind + "\noutput_dir: " + (dir / (kind + "-" + world)).string() +
                     "\nsource: {kind: fashion_mnist_source, images: 200}\n"
                     "target: {kind: fashion_mnist_target, images: 200, test_images: 100}\n"
                     "epochs: 2\niters: 4\nbatch_size: 16\nbackbone_width: 4\n"
                     "bottleneck_dim: 16\nunsupervised_warmup_iterations: 2\nbn_group_size: 4\n");
      std::vector<std::string> args = {"train", spec.string(), "--quiet"};
      if (world == "2") args.insert(args.end(), {"--nproc", "2", "--max-restarts", "0"});
      auto run = run_tandem(args, "launcher-" + kind + "-" + world);
      ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
      ASSERT_TRUE(fs::exists(dir / (kind + "-" + world) / "metrics.json"));
    }
    const double error =
        max_relative_error(dir / (kind + "-2") / "model.pt", dir / (kind + "-1") / "model.pt");
    if (kind != "afn") {
      EXPECT_LT(error, 1e-4);
    }
  }
}

TEST(Launcher, KilledRankRestartsTheGroupFromTheLastCheckpoint) {
  const fs::path dir = scratch_path("launcher-kill");
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path spec = mmt_spec(dir, "job", 4, "eval_every: 0\n");
  auto child = spawn_tandem({"train", spec.string(), "--nproc", "2", "--max-restarts", "2"},
                            "launcher-kill");
  const fs::path out = dir / "job";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(out / "checkpoint.pt") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(fs::exists(out / "checkpoint.pt"));
  const int rank_0 = std::stoi(read_file((out / "ranks" / "rank-0.pid").string()));
  const int rank_1 = std::stoi(read_file((out / "ranks" / "rank-1.pid").string()));
  ASSERT_EQ(::kill(rank_1, SIGKILL), 0);
  auto finished = wait_for(child);
  ASSERT_EQ(finished.exit_code, 0) << finished.out << finished.err;
  EXPECT_NE(finished.err.find("rank 1 was killed by signal 9"), std::string::npos) << finished.err;
  EXPECT_NE(finished.err.find("restarting all 2 ranks from the last checkpoint (restart 1 of 2)"),
            std::string::npos)
      << finished.err;
  EXPECT_NE(finished.out.find("resuming from"), std::string::npos) << finished.out;
  EXPECT_NE(finished.out.find("epoch 4/4"), std::string::npos) << finished.out;
  // Every epoch exactly once in the events of the finished job's last run.
  EXPECT_TRUE(fs::exists(out / "teacher_1.pt"));
  // No process is left behind: the killed rank, its peer and the restarted
  // ranks are gone, and the launcher removed the pid files.
  EXPECT_FALSE(process_alive(rank_0));
  EXPECT_FALSE(process_alive(rank_1));
  EXPECT_FALSE(fs::exists(out / "ranks" / "rank-0.pid"));
}

TEST(TorchrunStyleRanks, PeerOfAKilledRankExitsWithAClearErrorInsteadOfHanging) {
  // Two `tandem train` processes started as torchrun would (no launcher):
  // rank 1 is killed mid-job; rank 0 must fail with a message naming the
  // cause well within its --timeout, not wait forever.
  const fs::path dir = scratch_path("torchrun-style");
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path spec = mmt_spec(dir, "job", 200, "eval_every: 0\n");
  int port = 0;
  {
    c10d::TCPStoreOptions probe;
    probe.port = 0;
    probe.isServer = true;
    probe.waitWorkers = false;
    port = c10d::TCPStore("127.0.0.1", probe).getPort();
  }
  std::vector<cli::testing::Child> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    ::setenv("MASTER_ADDR", "127.0.0.1", 1);
    ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
    ::setenv("WORLD_SIZE", "2", 1);
    ::setenv("RANK", std::to_string(rank).c_str(), 1);
    ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
    ranks.push_back(spawn_tandem({"train", spec.string(), "--timeout", "30", "--quiet"},
                                 "torchrun-rank-" + std::to_string(rank)));
  }
  for (const char* name : {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK"}) {
    ::unsetenv(name);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(dir / "job" / "checkpoint.pt") &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(fs::exists(dir / "job" / "checkpoint.pt"));
  ASSERT_EQ(::kill(ranks[1].pid, SIGKILL), 0);
  wait_for(ranks[1]);
  const auto start = std::chrono::steady_clock::now();
  auto survivor = wait_for(ranks[0], std::chrono::seconds(90));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(survivor.exit_code, 1) << "rank 0 should fail, not finish or hang:\n"
                                   << survivor.out << survivor.err;
  EXPECT_LT(seconds, 45) << "rank 0 took longer than its timeout to notice";
  EXPECT_NE(survivor.err.find("data parallel:"), std::string::npos) << survivor.err;
}

TEST(Launcher, FailingRanksGiveUpAfterMaxRestartsWithTheRanksError) {
  // A global batch of 4 x 4 cannot be split into groups of 4 over 3 ranks.
  const fs::path dir = scratch_path("launcher-bad");
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto bad =
      run_tandem({"train", mmt_spec(dir, "job", 1).string(), "--nproc", "3", "--max-restarts", "1"},
                 "launcher-bad");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("must be a multiple of the world size 3"), std::string::npos)
      << bad.out << bad.err;
  EXPECT_NE(bad.err.find("restart 1 of 1"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("giving up after 1 restart"), std::string::npos) << bad.err;

  auto zero =
      run_tandem({"train", mmt_spec(dir, "job", 1).string(), "--nproc", "0"}, "launcher-zero");
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_NE(zero.err.find("--nproc"), std::string::npos) << zero.err;
}

}  // namespace
}  // namespace tandem::jobs
