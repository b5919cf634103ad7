// `tandem server`: the control plane. Serves the health service and owns
// the SQLite job store; stops cleanly on SIGINT/SIGTERM.
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "tandem/cli/app.h"
#include "tandem/cli/signals.h"
#include "tandem/server/grpc_server.h"
#include "tandem/server/job_store.h"

namespace tandem::cli {
namespace {

struct ServerFlags {
  std::string listen = "127.0.0.1:50051";
  std::string db = "tandem.db";
};

int run_server(const ServerFlags& flags) {
  auto store = server::JobStore::Open(flags.db);
  if (!store.ok()) {
    std::cerr << "tandem server: " << store.status().message() << "\n";
    return kExitFailure;
  }
  server::GrpcOptions grpc_options;
  grpc_options.address = flags.listen;
  auto grpc_server = server::GrpcServer::Create(grpc_options, {});
  if (!grpc_server.ok()) {
    std::cerr << "tandem server: " << grpc_server.status().message() << "\n";
    return kExitFailure;
  }
  std::cout << "tandem server " << version() << " listening on " << (*grpc_server)->target()
            << " (job store " << flags.db << ")" << std::endl;
  return serve_until_stopped(**grpc_server, "tandem server");
}

}  // namespace

void add_server_command(CLI::App& app, Action& action) {
  auto flags = std::make_shared<ServerFlags>();
  auto* command =
      app.add_subcommand("server", "Run the control plane: gRPC job service and job store");
  command->add_option("--listen", flags->listen, "host:port to serve gRPC on")
      ->capture_default_str();
  command->add_option("--db", flags->db, "SQLite job store file (created if missing)")
      ->capture_default_str();
  command->callback([flags, &action] { action = [flags] { return run_server(*flags); }; });
}

}  // namespace tandem::cli
