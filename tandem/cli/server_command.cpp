// `tandem server`: the control plane. Serves tandem.v1.Tandem (jobs,
// watch, rank), tandem.v1.WorkerControl (the workers' streams) and the
// health service over one gRPC port; owns the SQLite job store. Stops
// cleanly on SIGINT/SIGTERM; a restarted server (also after kill -9) queues
// the jobs that were running and resumes them from their checkpoints.
#include <absl/strings/str_cat.h>
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <memory>
#include <vector>

#include "tandem/cli/app.h"
#include "tandem/cli/signals.h"
#include "tandem/jobs/image_embedder.h"
#include "tandem/rpc/auth.h"
#include "tandem/rpc/log.h"
#include "tandem/rpc/tls.h"
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
  // Security (docs/security.md).
  std::string tls_cert, tls_key, client_ca, tokens;
  std::vector<std::string> data_roots;
  double submit_rate = 60;
  int max_queued = 100;
  int64_t max_image_bytes = 16 << 20;
  int64_t max_image_pixels = 4096LL * 4096;
  double retention_days = 0;
};

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

int run_server(const ServerFlags& flags) {
  rpc::init_logging("tandem server");
  if (!(flags.heartbeat_timeout_seconds > flags.heartbeat_seconds)) {
    std::cerr << "tandem server: --heartbeat-timeout must be longer than --heartbeat" << std::endl;
    return kExitUsage;
  }
  rpc::ServerTls tls{flags.tls_cert, flags.tls_key, flags.client_ca,
                     rpc::ClientCertificates::kVerifyIfPresented};
  auto credentials = rpc::server_credentials(tls);
  if (!credentials.ok()) {
    std::cerr << "tandem server: " << credentials.status().message() << "\n";
    return kExitUsage;
  }
  rpc::Authorizer authorizer;
  if (!flags.tokens.empty()) {
    auto tokens = rpc::TokenTable::Load(flags.tokens);
    if (!tokens.ok()) {
      std::cerr << "tandem server: " << tokens.status().message() << "\n";
      return kExitUsage;
    }
    authorizer = rpc::Authorizer(*std::move(tokens));
  }
  for (const auto& root : flags.data_roots) {
    if (!std::filesystem::is_directory(root)) {
      std::cerr << "tandem server: --data-root " << root << " is not a folder\n";
      return kExitUsage;
    }
  }
  if (!rpc::is_loopback_address(flags.listen)) {
    if (!tls.enabled()) {
      rpc::log_warn(absl::StrCat("serving ", flags.listen,
                                 " in plaintext: tokens, specs and results cross the network "
                                 "unencrypted (give --tls-cert and --tls-key)"));
    }
    if (!authorizer.enabled()) {
      rpc::log_warn(absl::StrCat(
          "serving ", flags.listen,
          " without --tokens: anyone who reaches it may submit jobs and register workers"));
    }
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
  options.data_roots = std::vector<std::string>();
  for (const auto& root : flags.data_roots) {
    options.data_roots->push_back(std::filesystem::absolute(root).string());
  }
  options.submits_per_minute = flags.submit_rate;
  options.max_queued_per_principal = flags.max_queued;
  options.retention = millis(flags.retention_days * 86400.0);
  server::JobCoordinator coordinator(**store, options);  // jobs::validate_submitted_spec
  if (const absl::Status started = coordinator.start(); !started.ok()) {
    std::cerr << "tandem server: " << started.message() << "\n";
    return kExitFailure;
  }
  server::UploadLimits upload_limits;
  upload_limits.max_image_bytes = flags.max_image_bytes;
  upload_limits.max_image_pixels = flags.max_image_pixels;
  server::TandemService job_service(coordinator, jobs::embed_image_bytes, authorizer,
                                    upload_limits);
  server::WorkerControlService workers(coordinator, authorizer, !flags.client_ca.empty());
  server::GrpcOptions grpc_options;
  grpc_options.address = flags.listen;
  grpc_options.credentials = *credentials;
  auto grpc_server = server::GrpcServer::Create(grpc_options, {&job_service, &workers},
                                                {"tandem.v1.Tandem", "tandem.v1.WorkerControl"});
  if (!grpc_server.ok()) {
    std::cerr << "tandem server: " << grpc_server.status().message() << "\n";
    return kExitFailure;
  }
  rpc::log_info(absl::StrCat(
      "Tandem ", version(), " listening on ", (*grpc_server)->target(), " (job store ", flags.db,
      ", job folders under ", options.jobs_dir, ", ",
      (flags.clustering.empty() ? "clustering in the ranks"
                                : "clustering service " + flags.clustering),
      ", ",
      (tls.enabled() ? (flags.client_ca.empty() ? "TLS" : "TLS with client certificates")
                     : "plaintext"),
      ", ", (authorizer.enabled() ? "tokens required" : "no tokens"), ")"));
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
  command->add_option("--tls-cert", flags->tls_cert, "PEM certificate chain: serve TLS");
  command->add_option("--tls-key", flags->tls_key, "PEM private key of --tls-cert");
  command->add_option("--client-ca", flags->client_ca,
                      "PEM CA that signs client certificates: workers must present one "
                      "(mutual TLS); users may connect with a token alone");
  command->add_option("--tokens", flags->tokens,
                      "file of `TOKEN ROLE [NAME]` lines (roles admin, submit, read, worker): "
                      "every call but health needs `authorization: Bearer TOKEN`");
  command->add_option("--data-root", flags->data_roots,
                      "a folder jobs may read data sets and weights from (repeatable; paths in "
                      "specs must resolve under one; none: specs may name no data path)");
  command
      ->add_option("--submit-rate", flags->submit_rate,
                   "SubmitJob calls per minute per token (0: unlimited)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command
      ->add_option("--max-queued", flags->max_queued,
                   "queued jobs one token may have at a time (0: unlimited)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  command->add_option("--max-image-bytes", flags->max_image_bytes, "largest Rank image upload")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  command
      ->add_option("--max-image-pixels", flags->max_image_pixels,
                   "largest width x height of a Rank image upload (read from its header)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 32))
      ->capture_default_str();
  command
      ->add_option("--retention-days", flags->retention_days,
                   "delete ended jobs and their folders this many days after they ended (0: keep)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->callback([flags, &action] { action = [flags] { return run_server(*flags); }; });
}

}  // namespace tandem::cli
