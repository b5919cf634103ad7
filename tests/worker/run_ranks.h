// Test support: W ranks as W threads of the test process, over a TCPStore
// that rank 0 serves on a free loopback port (real Gloo groups, real
// sockets).
#pragma once

#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <memory>

#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tandem/worker/data_parallel.h"

namespace tandem::worker::testing {

/// Runs body(rank, store) on `world_size` threads and returns each rank's
/// error message ("" when it finished), so that one rank's failure is
/// reported instead of terminating the test binary.
[[nodiscard]] inline std::vector<std::string> run_ranks_over_tcp_store(
    int world_size, const std::function<void(int, const c10::intrusive_ptr<c10d::Store>&)>& body) {
  c10d::TCPStoreOptions server_options;
  server_options.port = 0;
  server_options.isServer = true;
  server_options.numWorkers = static_cast<std::size_t>(world_size);
  server_options.waitWorkers = false;
  auto server = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", server_options);
  c10d::TCPStoreOptions client_options;
  client_options.port = static_cast<std::uint16_t>(server->getPort());
  std::vector<std::string> errors(static_cast<size_t>(world_size));
  const auto guarded = [&](int rank, const c10::intrusive_ptr<c10d::Store>& store) {
    try {
      body(rank, store);
    } catch (const c10::Error& e) {
      errors[static_cast<size_t>(rank)] = e.what_without_backtrace();
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(rank)] = e.what();
    }
  };
  std::vector<std::thread> threads;
  for (int rank = 1; rank < world_size; ++rank) {
    threads.emplace_back([&, rank] {
      guarded(rank, c10::make_intrusive<c10d::TCPStore>("127.0.0.1", client_options));
    });
  }
  guarded(0, server);
  for (auto& thread : threads) thread.join();
  return errors;
}

/// body(rank, parallel) as one rank (world 1: parallel is null, this
/// thread) or as `world` ranks with `lanes` lanes each (threads over loopback
/// Gloo, 60 s timeouts); a rank's error fails the test.
inline void run_data_parallel(
    int world, int lanes,
    const std::function<void(int, const std::shared_ptr<DataParallel>&)>& body) {
  if (world == 1) {
    body(0, nullptr);
    return;
  }
  const auto errors =
      run_ranks_over_tcp_store(world, [&](int rank, const c10::intrusive_ptr<c10d::Store>& store) {
        DistributedOptions options;
        options.world_size = world;
        options.rank = rank;
        options.timeout = std::chrono::seconds(60);
        body(rank, make_data_parallel(init_process_group(store, options), lanes));
      });
  EXPECT_EQ(errors, std::vector<std::string>(static_cast<size_t>(world)));
}

}  // namespace tandem::worker::testing
