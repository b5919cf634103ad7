// `tandem worker --server ADDR`: a host of ranks. Registers with the server
// over the WorkerControl stream, offering slots (one per GPU with --device
// cuda, else --slots, default one), heartbeats, and runs each rank it is
// assigned as a `tandem train` child process with torchrun's variables (the
// rendezvous store is the server's; LOCAL_RANK is the slot, so a GPU
// worker's slot i trains on cuda:i). Rank 0 forwards its job's events
// (OUTPUT_DIR/events.jsonl) as they are written; every rank reports its
// exit. When the stream breaks (server gone or restarted) the ranks are
// stopped and the worker reconnects; SIGINT/SIGTERM stop both. With
// --tls-ca (and --tls-cert/--tls-key for mutual TLS) it dials over TLS and
// hands those files to its ranks (TANDEM_TLS_*), whose clustering client
// dials the clustering service with them; --token is the worker's own.
#include <absl/strings/str_cat.h>
#include <signal.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "tandem/cli/app.h"
#include "tandem/jobs/worker_agent.h"
#include "tandem/rpc/channel.h"
#include "tandem/rpc/log.h"
#include "tandem/rpc/tls.h"
#include "tandem/server/grpc_server.h"
#include "tandem/worker/device.h"

namespace tandem::cli {
namespace {

namespace fs = std::filesystem;

std::atomic<int> g_stop_signal{0};
extern "C" void on_worker_signal(int signal) {
  g_stop_signal.store(signal);
}

/// The agent's options and the worker process's own: its health listener.
struct WorkerFlags {
  jobs::WorkerAgentOptions agent;
  /// Where this worker serves grpc.health.v1.Health (port 0: any).
  std::string health_listen = "127.0.0.1:0";
  /// TLS of that health listener (both or neither; plaintext by default).
  std::string health_tls_cert, health_tls_key;
};

int run_worker(WorkerFlags flags) {
  if (const std::string error =
          jobs::resolve_worker_offer(flags.agent, worker::DeviceProbe::current());
      !error.empty()) {
    std::cerr << "tandem worker: " << error << std::endl;
    return kExitUsage;
  }
  flags.agent.security.with_environment();
  // Absolute, as the ranks get them (they may run elsewhere than this
  // folder one day); and checked now, not on the first connection.
  for (std::string* file : {&flags.agent.security.tls_ca_file, &flags.agent.security.tls_cert_file,
                            &flags.agent.security.tls_key_file}) {
    if (!file->empty()) *file = fs::absolute(*file).lexically_normal().string();
  }
  if (auto checked = rpc::make_channel(flags.agent.server, flags.agent.security); !checked.ok()) {
    std::cerr << "tandem worker: " << checked.status().message() << std::endl;
    return kExitUsage;
  }
  rpc::init_logging("tandem worker");
  struct sigaction action {};
  action.sa_handler = on_worker_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  // Every Tandem process answers the standard health check.
  server::GrpcOptions health;
  health.address = flags.health_listen;
  rpc::ServerTls health_tls;
  health_tls.cert_file = flags.health_tls_cert;
  health_tls.key_file = flags.health_tls_key;
  health_tls.flag_prefix = "--health-";
  auto health_credentials = rpc::server_credentials(health_tls);
  if (!health_credentials.ok()) {
    std::cerr << "tandem worker: " << health_credentials.status().message() << std::endl;
    return kExitUsage;
  }
  health.credentials = *health_credentials;
  if (!health_tls.enabled() && !rpc::is_loopback_address(flags.health_listen)) {
    rpc::log_info(absl::StrCat("the health service on ", flags.health_listen,
                               " is plaintext (it answers SERVING only; "
                               "--health-tls-cert/--health-tls-key serve it over TLS)"));
  }
  auto health_server = server::GrpcServer::Create(health, {});
  if (!health_server.ok()) {
    std::cerr << "tandem worker: " << health_server.status().message() << std::endl;
    return kExitFailure;
  }
  rpc::log_info(absl::StrCat(
      "health service on ", (*health_server)->target(), "; ", flags.agent.slots, " slot(s) on ",
      flags.agent.device,
      (flags.agent.device == "cuda" ? " (" + std::to_string(flags.agent.gpus) + " GPUs)" : "")));
  flags.agent.stop_signal = &g_stop_signal;
  jobs::WorkerAgent agent(flags.agent);
  const int code = agent.run();
  (*health_server)->Shutdown(std::chrono::seconds(1));
  return code;
}

}  // namespace

void add_worker_command(CLI::App& app, Action& action) {
  auto flags = std::make_shared<WorkerFlags>();
  auto* command = app.add_subcommand(
      "worker", "Run ranks of the server's jobs: register, heartbeat, train when assigned");
  command->add_option("--server", flags->agent.server, "host:port of `tandem server`")
      ->envname("TANDEM_SERVER")
      ->capture_default_str();
  command->add_option("--name", flags->agent.name, "name shown in job listings (default host:pid)");
  command->add_option("--token", flags->agent.security.token,
                      "bearer token of the `worker` role (default: $TANDEM_TOKEN)");
  command->add_option("--tls-ca", flags->agent.security.tls_ca_file,
                      "PEM CA bundle that signs the server's and the clustering service's "
                      "certificates; given: TLS, also for the ranks (default: $TANDEM_TLS_CA)");
  command->add_option("--tls-cert", flags->agent.security.tls_cert_file,
                      "PEM certificate of this worker and its ranks for mutual TLS "
                      "(default: $TANDEM_TLS_CERT)");
  command->add_option("--tls-key", flags->agent.security.tls_key_file,
                      "PEM private key of --tls-cert (default: $TANDEM_TLS_KEY)");
  command
      ->add_option("--health-listen", flags->health_listen,
                   "host:port of this worker's grpc.health.v1 service (port 0: any free one)")
      ->capture_default_str();
  command->add_option("--health-tls-cert", flags->health_tls_cert,
                      "PEM certificate chain: serve the health service over TLS");
  command->add_option("--health-tls-key", flags->health_tls_key,
                      "PEM private key of --health-tls-cert");
  command->add_option("--device", flags->agent.device, "device kind it offers")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  command
      ->add_option("--gpus", flags->agent.gpus,
                   "--device cuda: GPUs it uses, cuda:0 .. cuda:N-1 (default: every visible one)")
      ->check(CLI::Range(0, 64));
  command
      ->add_option("--slots", flags->agent.slots,
                   "ranks it runs at once, slot i as LOCAL_RANK i (default: one per GPU with "
                   "--device cuda, else 1)")
      ->check(CLI::Range(1, 256));
  command->add_option("--threads", flags->agent.threads, "intra-op threads per rank (0: default)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  command
      ->add_option("--grace", flags->agent.grace_seconds,
                   "seconds a stopped rank gets between SIGTERM and SIGKILL")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->callback([flags, &action] { action = [flags] { return run_worker(*flags); }; });
}

}  // namespace tandem::cli
