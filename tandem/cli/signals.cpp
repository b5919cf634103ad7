#include "tandem/cli/signals.h"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <iostream>
#include <thread>

#include "tandem/cli/app.h"
#include "tandem/server/grpc_server.h"

namespace tandem::cli {
namespace {

// SIGINT/SIGTERM write one byte to this pipe; a waiter thread reads it and
// shuts the server down (a signal handler may do nothing more than write).
int stop_pipe[2] = {-1, -1};

void on_stop_signal(int signal_number) {
  const char byte = static_cast<char>(signal_number);
  [[maybe_unused]] auto written = ::write(stop_pipe[1], &byte, 1);
}

}  // namespace

int serve_until_stopped(server::GrpcServer& server, const char* name) {
  if (stop_pipe[0] < 0 && ::pipe(stop_pipe) != 0) {
    std::cerr << name << ": cannot create the stop pipe\n";
    return kExitFailure;
  }
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::thread waiter([&] {
    char byte = 0;
    while (::read(stop_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
    if (byte != 0) {
      std::cout << name << ": signal " << static_cast<int>(byte) << ", shutting down" << std::endl;
    }
    server.Shutdown();
  });
  server.Wait();
  // Wake the waiter if the server stopped for another reason.
  const char zero = 0;
  [[maybe_unused]] auto written = ::write(stop_pipe[1], &zero, 1);
  waiter.join();
  return kExitOk;
}

}  // namespace tandem::cli
