// `tandem bench adapt`: the proof that adaptation works, in one command.
// Renders two synthetic pedestrian domains with the given seed (by default
// a market-style source and a duke-style target), then, on the target's
// query/gallery:
//   direct_transfer  a model pre-trained on the source, applied as is;
//   mmt_kmeans       MMT from two source models (seeds S and S+1), k-means
//                    with k = the number of target train identities;
//   mmt_dbscan       the same with Jaccard + DBSCAN and MMT's adaptive eps
//                    (rho scaled to the target's size);
//   oracle           supervised training on the target's own labels.
// With --json it prints exactly one JSON object (percent):
//   {"direct_transfer": {"mAP": x, "rank1": x}, "mmt_kmeans": {...},
//    "mmt_dbscan": {...}, "oracle": {...}}
// and everything else goes to stderr. CPU-sized: the small backbone at
// 64 x 32, depth 2, 30 MMT epochs. Both MMT jobs cluster the teacher
// features standardised per target camera (spec.camera_standardise;
// --raw-clustering: MMT's input as is): the target's camera style otherwise
// decides the neighbours (docs/training.md, the study, for the settings and
// the figures).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>

#include "tandem/cli/app.h"
#include "tandem/jobs/train_jobs.h"
#include "tandem/spec/job_spec.h"
#include "tandem/worker/data/reid_dataset.h"
#include "tandem/worker/data/synth.h"

namespace tandem::cli {
namespace {
namespace fs = std::filesystem;
using jobs::JobResult;
using jobs::JobSpec;
using jobs::mmt_job;
using jobs::pretrain_job;

struct AdaptFlags {
  uint64_t seed = 1;
  int64_t ids = 300;
  bool json = false;
  std::string workdir;
  int64_t pretrain_epochs = 40;
  int64_t mmt_epochs = 30;  // each clustering still gains after 10 and 20
  int64_t iters = 30;
  int64_t mmt_iters = 0;  // 0: --iters
  double pretrain_lr = 3e-3;
  double mmt_lr = 3.5e-4;
  int64_t backbone_width = 16;
  int64_t backbone_depth = 2;  // 8 conv layers: see docs/training.md, the study
  int64_t height = 64;
  int64_t width = 32;
  std::string source_domain = "market";
  std::string target_domain = "duke";
  bool raw_clustering = false;  // true: MMT's clustering input, no per-camera step
};

/// Sends std::cout to std::cerr while alive (so --json prints one object).
class StdoutToStderr {
 public:
  explicit StdoutToStderr(bool on) : saved_(on ? std::cout.rdbuf(std::cerr.rdbuf()) : nullptr) {}
  ~StdoutToStderr() {
    if (saved_ != nullptr) std::cout.rdbuf(saved_);
  }
  StdoutToStderr(const StdoutToStderr&) = delete;
  StdoutToStderr& operator=(const StdoutToStderr&) = delete;

 private:
  std::streambuf* saved_;
};

JobSpec base_spec(const AdaptFlags& flags, const fs::path& dir, const std::string& name) {
  JobSpec spec;
  spec.set_output_dir((dir / name).string());
  spec.set_seed(flags.seed);
  spec.set_backbone("small");
  spec.set_backbone_width(flags.backbone_width);
  spec.set_backbone_depth(flags.backbone_depth);
  spec.set_height(flags.height);
  spec.set_width(flags.width);
  spec.set_identities(8);
  spec.set_instances(4);
  spec.set_iters(flags.iters);
  spec.set_loader_threads(2);
  return spec;
}

JobSpec pretrain_spec(const AdaptFlags& flags, const fs::path& dir, const std::string& name,
                      const fs::path& train_on, const fs::path& target, uint64_t seed) {
  JobSpec spec = base_spec(flags, dir, name);
  spec.set_kind("pretrain");
  spec.set_seed(seed);
  spec.mutable_source()->set_kind("market1501");
  spec.mutable_source()->set_root(train_on.string());
  spec.mutable_target()->set_kind("market1501");
  spec.mutable_target()->set_root(target.string());
  spec.set_lr(flags.pretrain_lr);  // from scratch (no ImageNet weights here)
  spec.set_epochs(flags.pretrain_epochs);
  spec.set_warmup_epochs(std::max<int64_t>(1, flags.pretrain_epochs / 20));
  spec.add_milestones(flags.pretrain_epochs * 3 / 4);
  spec.set_eval_every(0);  // the last epoch only
  return tandem::spec::resolve_job_spec(spec, "tandem bench adapt");
}

JobSpec mmt_spec(const AdaptFlags& flags, const fs::path& dir, const std::string& name,
                 const fs::path& target, const std::string& clustering, int64_t k) {
  JobSpec spec = base_spec(flags, dir, name);
  spec.set_kind("mmt");
  spec.mutable_target()->set_kind("market1501");
  spec.mutable_target()->set_root(target.string());
  spec.set_init_1((dir / "source-1" / "model.pt").string());
  spec.set_init_2((dir / "source-2" / "model.pt").string());
  spec.set_epochs(flags.mmt_epochs);
  spec.set_lr(flags.mmt_lr);
  if (flags.mmt_iters > 0) spec.set_iters(flags.mmt_iters);
  spec.set_clustering(clustering);
  if (clustering == "kmeans") spec.set_k(k);  // dbscan reads no k
  spec.set_camera_standardise(!flags.raw_clustering);
  spec.set_eval_every(2);
  return tandem::spec::resolve_job_spec(spec, "tandem bench adapt");
}

int run_adapt(const AdaptFlags& flags) {
  if (flags.source_domain == flags.target_domain) {
    std::cerr << "tandem bench adapt: --target-domain must differ from --source-domain (both '"
              << flags.source_domain << "')" << std::endl;
    return kExitUsage;
  }
  const auto start = std::chrono::steady_clock::now();
  const fs::path dir =
      flags.workdir.empty()
          ? fs::temp_directory_path() / ("tandem-bench-adapt-" + std::to_string(flags.seed))
          : fs::path(flags.workdir);
  nlohmann::ordered_json out;
  {
    StdoutToStderr redirect(flags.json);
    // Fresh job folders: a benchmark never resumes an earlier run.
    for (const char* job : {"source-1", "source-2", "mmt-kmeans", "mmt-dbscan", "oracle"}) {
      fs::remove_all(dir / job);
    }
    for (const std::string& domain : {flags.source_domain, flags.target_domain}) {
      worker::SynthOptions synth;
      synth.domain = domain;
      synth.ids = flags.ids;
      synth.seed = flags.seed;
      synth.height = flags.height;
      synth.width = flags.width;
      worker::render_market_dataset((dir / domain).string(), synth);
      std::cout << "tandem bench adapt: rendered " << domain << " (" << flags.ids
                << " identities) in " << dir / domain << std::endl;
    }
    const fs::path source = dir / flags.source_domain, target = dir / flags.target_domain;
    const auto target_data =
        worker::load_reid_dataset(worker::ReidDatasetKind::kMarket1501, target.string());
    const int64_t target_ids = target_data.num_train_ids;
    const auto target_images = static_cast<double>(target_data.train.size());
    const JobResult direct =
        pretrain_job(pretrain_spec(flags, dir, "source-1", source, target, flags.seed), true);
    pretrain_job(pretrain_spec(flags, dir, "source-2", source, target, flags.seed + 1), true);
    const JobResult kmeans =
        mmt_job(mmt_spec(flags, dir, "mmt-kmeans", target, "kmeans", target_ids), true);
    JobSpec dbscan_spec = mmt_spec(flags, dir, "mmt-dbscan", target, "dbscan", 0);
    // MMT's adaptive eps is the mean of the smallest rho * n(n-1)/2 pair
    // distances: rho = 1.6e-3 on Market-1501's 12,936 images is about 10
    // neighbours per image. rho is a share of all pairs, so the same 10
    // neighbours need rho * n = 1.6e-3 * 12,936 at any n (docs/training.md).
    dbscan_spec.set_rho(jobs::rho_for_target(static_cast<int64_t>(target_images)));
    const JobResult dbscan = mmt_job(dbscan_spec, true);
    const JobResult oracle =
        pretrain_job(pretrain_spec(flags, dir, "oracle", target, target, flags.seed), true);
    const auto entry = [](const JobResult& r) {
      return nlohmann::ordered_json{{"mAP", r.map}, {"rank1", r.rank1}};
    };
    out = {{"direct_transfer", entry(direct)},
           {"mmt_kmeans", entry(kmeans)},
           {"mmt_dbscan", entry(dbscan)},
           {"oracle", entry(oracle)}};
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (flags.json) {
    std::cout << out.dump() << std::endl;
    return kExitOk;
  }
  std::cout << "\nseed " << flags.seed << ", " << flags.ids << " identities per domain, "
            << std::fixed << std::setprecision(0) << seconds << " s\n";
  std::cout << std::left << std::setw(18) << "model" << std::right << std::setw(8) << "mAP"
            << std::setw(9) << "rank-1"
            << "\n";
  for (const auto& [name, metrics] : out.items()) {
    std::cout << std::left << std::setw(18) << name << std::right << std::setprecision(1)
              << std::setw(8) << metrics["mAP"].get<double>() << std::setw(9)
              << metrics["rank1"].get<double>() << "\n";
  }
  return kExitOk;
}

}  // namespace

void add_bench_command(CLI::App& app, Action& action) {
  auto flags = std::make_shared<AdaptFlags>();
  auto* command = app.add_subcommand("bench", "Benchmarks that need the whole product");
  command->require_subcommand(1);
  auto* adapt = command->add_subcommand(
      "adapt", "Direct transfer, MMT (k-means, DBSCAN) and an oracle on two synthetic domains");
  adapt->add_option("--seed", flags->seed, "seed of the domains and the training")
      ->capture_default_str();
  adapt->add_option("--ids", flags->ids, "identities per domain (half train, half test)")
      ->check(CLI::Range(8, 20000))
      ->capture_default_str();
  adapt->add_flag("--json", flags->json, "print exactly one JSON object");
  adapt->add_option("--workdir", flags->workdir,
                    "where data and models go (default: a temp folder)");
  adapt->add_option("--pretrain-epochs", flags->pretrain_epochs, "epochs of source training")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  adapt->add_option("--mmt-epochs", flags->mmt_epochs, "epochs of MMT")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  adapt->add_option("--iters", flags->iters, "iterations per epoch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  adapt->add_option("--mmt-iters", flags->mmt_iters, "iterations per MMT epoch (0: --iters)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  adapt->add_option("--pretrain-lr", flags->pretrain_lr, "learning rate of source training")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  adapt->add_option("--mmt-lr", flags->mmt_lr, "learning rate of MMT")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  adapt->add_option("--backbone-width", flags->backbone_width, "channels of the small backbone")
      ->check(CLI::Range(4, 256))
      ->capture_default_str();
  adapt
      ->add_option("--backbone-depth", flags->backbone_depth,
                   "conv layers per stage of the small backbone")
      ->check(CLI::Range(1, 8))
      ->capture_default_str();
  adapt
      ->add_option("--source-domain", flags->source_domain,
                   "style of the source (market, duke, msmt, or any name: a hashed style)")
      ->capture_default_str();
  adapt->add_option("--target-domain", flags->target_domain, "style of the target")
      ->capture_default_str();
  adapt->add_flag("--raw-clustering", flags->raw_clustering,
                  "cluster the teacher features as MMT does, without standardising them per "
                  "target camera");
  adapt->add_option("--height", flags->height, "image height")
      ->check(CLI::Range(32, 512))
      ->capture_default_str();
  adapt->add_option("--width", flags->width, "image width")
      ->check(CLI::Range(16, 256))
      ->capture_default_str();
  adapt->callback([flags, &action] { action = [flags] { return run_adapt(*flags); }; });
}

}  // namespace tandem::cli
