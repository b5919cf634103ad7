// The worker agent: a host of ranks for `tandem server`. It registers over
// the WorkerControl stream (proto/tandem/v1/worker.proto), offering slots
// (one per GPU with device cuda, else `slots`), heartbeats, and runs each
// rank it is assigned as an engine child process (`tandem train SPEC`) with
// torchrun's variables (the rendezvous store is the server's; LOCAL_RANK is
// the slot, so a GPU worker's slot i trains on cuda:i). Rank 0's events
// (OUTPUT_DIR/events.jsonl, jobs/rank_events.h) go to the server as they are
// written, iterations coalesced; every rank reports its exit. When the
// stream breaks (server gone or restarted) the ranks are stopped and the
// agent reconnects. `tandem worker` (cli/worker_command.cpp) is this class
// behind flags, signals and a health listener.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "tandem/rpc/channel.h"

namespace tandem::worker {
struct DeviceProbe;
}  // namespace tandem::worker

namespace tandem::jobs {

struct WorkerAgentOptions {
  /// host:port of `tandem server`.
  std::string server = "127.0.0.1:50051";
  /// Shown in job listings ("" = host:pid).
  std::string name;
  /// The device kind it offers: cpu or cuda.
  std::string device = "cpu";
  /// GPUs it uses (-1: every visible one; resolve_worker_offer sets it).
  int gpus = -1;
  /// Ranks at once (0: one per GPU for cuda, one for cpu; resolved likewise).
  int slots = 0;
  /// Intra-op threads of each rank (0: the rank's default).
  int threads = 0;
  /// Seconds a stopped rank gets between SIGTERM and SIGKILL.
  double grace_seconds = 10;
  /// The worker's token and TLS files; the TLS files (not the token) are
  /// handed to its ranks, whose clustering client dials with them.
  rpc::ClientSecurity security;
  /// The program whose `train` subcommand each rank runs ("" = this one).
  std::string engine;
  /// Also stop when this becomes non-zero (a signal handler's flag).
  const std::atomic<int>* stop_signal = nullptr;
};

/// `options` with device, gpus and slots checked against what the host has
/// (`probe`): "" with gpus and slots set to the counts it offers, or a
/// message naming the flag (--device, --gpus, --slots).
std::string resolve_worker_offer(WorkerAgentOptions& options, const worker::DeviceProbe& probe);

class WorkerAgent {
 public:
  /// `options` resolved (resolve_worker_offer): slots is the count it offers.
  explicit WorkerAgent(WorkerAgentOptions options);
  ~WorkerAgent();
  WorkerAgent(const WorkerAgent&) = delete;
  WorkerAgent& operator=(const WorkerAgent&) = delete;

  /// Serves until stop(): connects (retrying while there is no server),
  /// registers, runs the ranks it is assigned, reconnects when the stream
  /// breaks. On stop its ranks are stopped and their exits reported. Returns 0.
  int run();

  /// Asks run() to return; thread-safe.
  void stop();

  /// The id the server gave this agent while it is registered, else "".
  std::string worker_id() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::jobs
