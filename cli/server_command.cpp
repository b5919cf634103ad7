// `tandem server`: the control plane. Serves the health service and owns
// the SQLite job store; stops cleanly on SIGINT/SIGTERM.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <iostream>
#include <memory>
#include <thread>

#include "tandem/cli/app.h"
#include "tandem/server/grpc_server.h"
#include "tandem/server/job_store.h"

namespace tandem::cli {
namespace {

struct ServerFlags {
  std::string listen = "127.0.0.1:50051";
  std::string db = "tandem.db";
};

// SIGINT/SIGTERM write one byte to this pipe; a waiter thread reads it and
// shuts the server down (a signal handler may do nothing more than write).
int stop_pipe[2] = {-1, -1};

void on_stop_signal(int signal_number) {
  const char byte = static_cast<char>(signal_number);
  [[maybe_unused]] auto written = ::write(stop_pipe[1], &byte, 1);
}

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
  if (::pipe(stop_pipe) != 0) {
    std::cerr << "tandem server: cannot create the stop pipe\n";
    return kExitFailure;
  }
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  std::cout << "tandem server " << version() << " listening on " << (*grpc_server)->target()
            << " (job store " << flags.db << ")" << std::endl;
  std::thread waiter([&] {
    char byte = 0;
    while (::read(stop_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
    std::cout << "tandem server: signal " << static_cast<int>(byte) << ", shutting down"
              << std::endl;
    (*grpc_server)->Shutdown();
  });
  (*grpc_server)->Wait();
  waiter.join();
  return kExitOk;
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
