// `tandem train SPEC`: runs a job spec in this process (the runners are
// jobs/train_jobs.h), or with --nproc N as N local ranks (jobs/launcher.h),
// restarted from the last checkpoint when one fails.
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include "tandem/cli/app.h"
#include "tandem/jobs/launcher.h"
#include "tandem/jobs/train_jobs.h"
#include "tandem/spec/job_spec.h"
#include "tandem/worker/device.h"
#include "tandem/worker/distributed.h"

namespace tandem::cli {
namespace {
namespace fs = std::filesystem;

struct TrainFlags {
  std::string spec;
  bool quiet = false;
  /// host:port of `tandem cluster` for mmt's pseudo labels ("" = in process).
  std::string clustering_service;
  /// Local ranks to launch (0: run in this process, as one rank or as the
  /// rank the torchrun variables name).
  int nproc = 0;
  int max_restarts = 3;
  /// Rendezvous and collectives; rank 0's clustering, which the others wait for.
  double timeout_seconds = 300;
  double share_timeout_seconds = 3600;
};

using Parallel = std::shared_ptr<const worker::DataParallel>;

std::string seconds_text(double seconds) {
  std::ostringstream text;
  text << seconds;
  return text.str();
}

/// This process's rank when the torchrun variables say WORLD_SIZE > 1
/// (null otherwise): rendezvous at MASTER_ADDR:MASTER_PORT, two lanes
/// (MMT's pairs); NCCL when the job trains on a GPU, else Gloo.
Parallel join_ranks(const TrainFlags& flags, const c10::Device& device) {
  worker::DistributedOptions base;
  base.backend = device.is_cuda() ? worker::Backend::kNccl : worker::Backend::kGloo;
  base.timeout = std::chrono::milliseconds(static_cast<int64_t>(flags.timeout_seconds * 1000));
  const worker::DistributedOptions options = worker::distributed_options_from_process_env(base);
  if (options.world_size == 1) return nullptr;
  return worker::make_data_parallel(
      worker::init_process_group(options), 2,
      std::chrono::milliseconds(static_cast<int64_t>(flags.share_timeout_seconds * 1000)));
}

int run_train(const TrainFlags& flags) {
  const jobs::JobSpec spec = tandem::spec::load_job_spec(flags.spec);
  fs::create_directories(spec.output_dir());
  if (!(flags.timeout_seconds > 0) || !(flags.share_timeout_seconds > 0)) {
    std::cerr << "tandem train: --timeout and --share-timeout must be positive" << std::endl;
    return kExitUsage;
  }
  if (flags.nproc > 0) {
    try {  // every local rank's GPU exists (cuda: LOCAL_RANK 0 .. nproc - 1)
      worker::resolve_device(spec.device(), flags.nproc - 1);
    } catch (const c10::Error& error) {
      std::cerr << "tandem train: " << flags.spec << " with --nproc " << flags.nproc << ": "
                << error.what_without_backtrace() << std::endl;
      return kExitUsage;
    }
    if (std::getenv("RANK") != nullptr && std::getenv("WORLD_SIZE") != nullptr) {
      std::cerr << "tandem train: --nproc inside a launched rank (RANK is set): drop one of them"
                << std::endl;
      return kExitUsage;
    }
    jobs::LaunchOptions launch;
    launch.nproc = flags.nproc;
    launch.max_restarts = flags.max_restarts;
    launch.log_dir = fs::path(spec.output_dir()) / "ranks";
    launch.rank_args = {"train",           flags.spec,
                        "--timeout",       seconds_text(flags.timeout_seconds),
                        "--share-timeout", seconds_text(flags.share_timeout_seconds)};
    if (flags.quiet) launch.rank_args.push_back("--quiet");
    if (!flags.clustering_service.empty()) {
      launch.rank_args.push_back("--clustering-service");
      launch.rank_args.push_back(flags.clustering_service);
    }
    return jobs::launch_local_ranks(launch);
  }
  // The device before any work: a GPU the host lacks (device: cuda on a CPU
  // machine, cuda:3 on a two-GPU one) is an error here, not a CPU run.
  c10::Device device(c10::kCPU);
  try {
    device = jobs::prepare_job_device(spec);
  } catch (const c10::Error& error) {
    std::cerr << "tandem train: " << flags.spec << ": " << error.what_without_backtrace()
              << std::endl;
    return kExitUsage;
  }
  if (std::getenv("OMP_NUM_THREADS") == nullptr) {
    torch::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  }
  const Parallel parallel = join_ranks(flags, device);
  jobs::run_job(spec, flags.quiet, parallel, flags.clustering_service);
  return kExitOk;
}

}  // namespace

void add_train_command(CLI::App& app, Action& action) {
  auto flags = std::make_shared<TrainFlags>();
  auto* command =
      app.add_subcommand("train", "Run a job spec (pretrain, mmt, evaluate, ...) in process");
  command->add_option("spec", flags->spec, "the job spec (YAML or JSON)")->required();
  command->add_flag("--quiet", flags->quiet, "no per-epoch lines (events.jsonl still written)");
  command
      ->add_option("--nproc", flags->nproc,
                   "start N local ranks (Gloo over loopback) and restart them from the last "
                   "checkpoint when one dies")
      ->check(CLI::Range(1, 256));
  command
      ->add_option("--max-restarts", flags->max_restarts,
                   "with --nproc: how often the group is restarted after a failed rank")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  command
      ->add_option("--timeout", flags->timeout_seconds,
                   "seconds for the rendezvous and for every collective")
      ->capture_default_str();
  command
      ->add_option("--share-timeout", flags->share_timeout_seconds,
                   "seconds ranks wait for rank 0's clustering")
      ->capture_default_str();
  command->add_option("--clustering-service", flags->clustering_service,
                      "mmt: host:port of a `tandem cluster` service for the pseudo labels "
                      "(default: cluster in this process)");
  command->callback([flags, &action] { action = [flags] { return run_train(*flags); }; });
}

}  // namespace tandem::cli
