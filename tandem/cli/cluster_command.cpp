// `tandem cluster`: serves the ClusteringService (pseudo labels for the
// workers) with the gRPC health service; stops cleanly on SIGINT/SIGTERM.
// With --tls-cert, --tls-key and --client-ca it serves mutual TLS: only
// callers with a certificate the CA signed (the workers' ranks) connect.
#include <absl/strings/str_cat.h>
#include <malloc.h>
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>

#include "tandem/cli/app.h"
#include "tandem/cli/signals.h"
#include "tandem/clustering/clustering_service.h"
#include "tandem/rpc/log.h"
#include "tandem/rpc/tls.h"
#include "tandem/server/grpc_server.h"

namespace tandem::cli {
namespace {

struct ClusterFlags {
  std::string listen = "127.0.0.1:50052";
  int64_t max_rows = 2'000'000;
  double max_gib = 8.0;
  int jobs = 1;
  std::string tls_cert, tls_key, client_ca;
};

int run_cluster(const ClusterFlags& flags) {
  rpc::init_logging("tandem cluster");
  rpc::ServerTls tls;
  tls.cert_file = flags.tls_cert;
  tls.key_file = flags.tls_key;
  tls.client_ca_file = flags.client_ca;
  tls.client_certificates = rpc::ClientCertificates::kRequire;
  auto credentials = rpc::server_credentials(tls);
  if (!credentials.ok()) {
    std::cerr << "tandem cluster: " << credentials.status().message() << "\n";
    return kExitUsage;
  }
  if (!tls.enabled() && !rpc::is_loopback_address(flags.listen)) {
    rpc::log_warn(absl::StrCat("listening on ", flags.listen,
                               " without TLS: anyone who reaches it can send features and read the "
                               "clusterings; give --tls-cert, --tls-key and --client-ca"));
  } else if (tls.enabled() && flags.client_ca.empty()) {
    rpc::log_warn(absl::StrCat("TLS without --client-ca: any client that reaches ", flags.listen,
                               " can call the service"));
  }
  // Clustering allocates and frees blocks of tens of MB; glibc's dynamic mmap
  // threshold would keep them in the heap after the first free, so a fixed
  // threshold returns them to the system between jobs (and lowers the peak).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // Every core unless the user chose (this platform's OpenMP default can be 1).
  if (std::getenv("OMP_NUM_THREADS") == nullptr) {
    torch::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));
  }
  clustering::ClusteringServiceOptions options;
  options.max_rows = flags.max_rows;
  options.max_bytes = static_cast<int64_t>(flags.max_gib * double(int64_t{1} << 30));
  options.max_concurrent_jobs = flags.jobs;
  clustering::ClusteringServiceImpl service(options);
  server::GrpcOptions grpc_options;
  grpc_options.address = flags.listen;
  grpc_options.max_message_bytes = 64 << 20;
  grpc_options.credentials = *credentials;  // insecure without --tls-cert
  auto grpc_server =
      server::GrpcServer::Create(grpc_options, {&service}, {"tandem.v1.ClusteringService"});
  if (!grpc_server.ok()) {
    std::cerr << "tandem cluster: " << grpc_server.status().message() << "\n";
    return kExitFailure;
  }
  rpc::log_info(absl::StrCat(
      "Tandem ", version(), " listening on ", (*grpc_server)->target(),
      (tls.enabled() ? flags.client_ca.empty() ? " with TLS" : " with mutual TLS" : ""), " (max ",
      flags.max_rows, " rows, ", flags.max_gib, " GiB, ", flags.jobs, " job(s) at a time)"));
  return serve_until_stopped(**grpc_server, "tandem cluster");
}

}  // namespace

void add_cluster_command(CLI::App& app, Action& action) {
  auto flags = std::make_shared<ClusterFlags>();
  auto* command = app.add_subcommand("cluster", "Run the clustering service (pseudo labels)");
  command->add_option("--listen", flags->listen, "host:port to serve gRPC on")
      ->capture_default_str();
  command->add_option("--max-rows", flags->max_rows, "largest number of rows per request")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--max-gib", flags->max_gib, "largest feature payload per request (GiB)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--jobs", flags->jobs, "clusterings that run at the same time")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  command->add_option("--tls-cert", flags->tls_cert,
                      "PEM certificate chain to serve TLS with (with --tls-key)");
  command->add_option("--tls-key", flags->tls_key, "PEM private key of --tls-cert");
  command->add_option("--client-ca", flags->client_ca,
                      "PEM CA bundle that signs the ranks' client certificates; given: every "
                      "caller must present one (mutual TLS)");
  command->callback([flags, &action] { action = [flags] { return run_cluster(*flags); }; });
}

}  // namespace tandem::cli
