// `tandem server`: the control plane. Serves tandem.v1.Tandem (jobs,
// watch, rank), tandem.v1.WorkerControl (the workers' streams) and the
// health service over one gRPC port; owns the SQLite job store. Stops
// cleanly on SIGINT/SIGTERM; a restarted server (also after kill -9) queues
// the jobs that were running and resumes them from their checkpoints.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <memory>

#include "tandem/cli/app.h"
#include "tandem/cli/image_embedder.h"
#include "tandem/cli/signals.h"
#include "tandem/cli/spec_validation.h"
#include "tandem/server/grpc_server.h"
#include "tandem/server/job_coordinator.h"
#include "tandem/server/job_store.h"
#include "tandem/server/tandem_service.h"

namespace tandem::cli {
namespace {

struct ServerFlags {
  std::string listen = "127.0.0.1:50051";
  std::string db = "tandem.db";
  std::string jobs_dir = "tandem-jobs";
  std::string clustering;
  std::string advertise_host = "127.0.0.1";
  double heartbeat_timeout_seconds = 10;
  double heartbeat_seconds = 1;
  int max_restarts = 3;
  int expect_workers = 0;
  double rank_timeout_seconds = 300;
  double reserve_after_seconds = 300;
  double unplaceable_timeout_seconds = 600;
};

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

int run_server(const ServerFlags& flags) {
  if (!(flags.heartbeat_timeout_seconds > flags.heartbeat_seconds)) {
    std::cerr << "tandem server: --heartbeat-timeout must be longer than --heartbeat" << std::endl;
    return kExitUsage;
  }
  auto store = server::JobStore::Open(flags.db);
  if (!store.ok()) {
    std::cerr << "tandem server: " << store.status().message() << "\n";
    return kExitFailure;
  }
  server::CoordinatorOptions options;
  options.jobs_dir = std::filesystem::absolute(flags.jobs_dir).string();
  options.clustering_address = flags.clustering;
  options.advertise_host = flags.advertise_host;
  options.heartbeat_interval = millis(flags.heartbeat_seconds);
  options.heartbeat_timeout = millis(flags.heartbeat_timeout_seconds);
  options.max_restarts = flags.max_restarts;
  options.expected_workers = flags.expect_workers;
  options.rank_timeout_seconds = flags.rank_timeout_seconds;
  options.reserve_after = millis(flags.reserve_after_seconds);
  options.unplaceable_timeout = millis(flags.unplaceable_timeout_seconds);
  server::JobCoordinator coordinator(**store, options, validate_submitted_spec);
  if (const absl::Status started = coordinator.start(); !started.ok()) {
    std::cerr << "tandem server: " << started.message() << "\n";
    return kExitFailure;
  }
  server::TandemService jobs(coordinator, embed_image_bytes);
  server::WorkerControlService workers(coordinator);
  server::GrpcOptions grpc_options;
  grpc_options.address = flags.listen;
  auto grpc_server = server::GrpcServer::Create(grpc_options, {&jobs, &workers},
                                                {"tandem.v1.Tandem", "tandem.v1.WorkerControl"});
  if (!grpc_server.ok()) {
    std::cerr << "tandem server: " << grpc_server.status().message() << "\n";
    return kExitFailure;
  }
  std::cout << "tandem server " << version() << " listening on " << (*grpc_server)->target()
            << " (job store " << flags.db << ", job folders under " << options.jobs_dir
            << (flags.clustering.empty() ? ", clustering in the ranks"
                                         : ", clustering service " + flags.clustering)
            << ")" << std::endl;
  const int code = serve_until_stopped(**grpc_server, "tandem server");
  coordinator.stop();
  return code;
}

}  // namespace

void add_server_command(CLI::App& app, Action& action) {
  auto flags = std::make_shared<ServerFlags>();
  auto* command = app.add_subcommand(
      "server", "Run the control plane: the gRPC job service, worker registry and job store");
  command->add_option("--listen", flags->listen, "host:port to serve gRPC on")
      ->capture_default_str();
  command->add_option("--db", flags->db, "SQLite job store file (created if missing)")
      ->capture_default_str();
  command
      ->add_option("--jobs-dir", flags->jobs_dir,
                   "where jobs whose spec names no output_dir write (JOBS_DIR/job-ID)")
      ->capture_default_str();
  command->add_option("--clustering", flags->clustering,
                      "host:port of `tandem cluster` for mmt's pseudo labels (default: the "
                      "ranks cluster in process)");
  command
      ->add_option("--advertise-host", flags->advertise_host,
                   "the address workers reach this host at (the ranks' MASTER_ADDR)")
      ->capture_default_str();
  command->add_option("--heartbeat", flags->heartbeat_seconds, "seconds between heartbeats")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--heartbeat-timeout", flags->heartbeat_timeout_seconds,
                   "seconds without a heartbeat after which a worker is lost")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--max-restarts", flags->max_restarts,
                   "restarts of a job's group after a failed rank or a lost worker")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  command
      ->add_option("--expect-workers", flags->expect_workers,
                   "workers the deployment will have: SubmitJob refuses larger world sizes "
                   "(default: the most that have registered)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  command
      ->add_option("--rank-timeout", flags->rank_timeout_seconds,
                   "seconds for the ranks' rendezvous and collectives")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--reserve-after", flags->reserve_after_seconds,
                   "seconds a queued job that fits the workers but not the idle ones lets "
                   "younger, smaller jobs start before it (backfill); after that the free "
                   "workers are held for it")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command
      ->add_option("--unplaceable-timeout", flags->unplaceable_timeout_seconds,
                   "seconds a queued job whose world size exceeds the most workers ever "
                   "registered at one time waits before it fails (0: for ever)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->callback([flags, &action] { action = [flags] { return run_server(*flags); }; });
}

}  // namespace tandem::cli
