#include "tandem/jobs/worker_agent.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/run_tandem.h"
#include "tandem/jobs/launcher.h"
#include "tandem/jobs/rank_events.h"
#include "tandem/server/grpc_server.h"
#include "tandem/server/job_coordinator.h"
#include "tandem/server/job_store.h"
#include "tandem/server/tandem_service.h"
#include "tandem/worker/data/synth.h"
#include "tandem/worker/device.h"

namespace tandem::jobs {
namespace {
namespace fs = std::filesystem;
namespace v1 = tandem::v1;
using Clock = std::chrono::steady_clock;

/// Runs an agent on a thread; stops and joins it when destroyed.
class RunningAgent {
 public:
  explicit RunningAgent(WorkerAgentOptions options) : agent_(std::move(options)) {
    thread_ = std::thread([this] { exit_code_ = agent_.run(); });
  }
  ~RunningAgent() { stop(); }
  /// Stops the agent; the seconds run() took to return.
  double stop() {
    const auto start = Clock::now();
    agent_.stop();
    if (thread_.joinable()) thread_.join();
    return std::chrono::duration<double>(Clock::now() - start).count();
  }
  WorkerAgent& agent() { return agent_; }
  int exit_code() const { return exit_code_; }

 private:
  WorkerAgent agent_;
  int exit_code_ = -1;
  std::thread thread_;
};

WorkerAgentOptions cpu_agent(const std::string& server) {
  WorkerAgentOptions options;
  options.server = server;
  options.name = "agent-under-test";
  options.grace_seconds = 2;
  options.engine = TANDEM_CLI_PATH;  // `tandem train` runs each rank
  const std::string error = resolve_worker_offer(options, worker::DeviceProbe{});
  EXPECT_EQ(error, "");
  return options;
}

TEST(WorkerAgentOffer, ChecksTheDeviceFlagsAgainstTheHost) {
  WorkerAgentOptions cpu;
  EXPECT_EQ(resolve_worker_offer(cpu, worker::DeviceProbe{}), "");
  EXPECT_EQ(cpu.gpus, 0);
  EXPECT_EQ(cpu.slots, 1);
  WorkerAgentOptions cpu_with_gpus;
  cpu_with_gpus.gpus = 2;
  EXPECT_EQ(resolve_worker_offer(cpu_with_gpus, worker::DeviceProbe{}),
            "--gpus 2 needs --device cuda");
  WorkerAgentOptions cuda;
  cuda.device = "cuda";
  EXPECT_EQ(resolve_worker_offer(cuda, worker::DeviceProbe{}),
            "--device cuda, but this build has no CUDA");
  worker::DeviceProbe two_gpus;
  two_gpus.cuda_built = true;
  two_gpus.gpus = 2;
  EXPECT_EQ(resolve_worker_offer(cuda, two_gpus), "");
  EXPECT_EQ(cuda.gpus, 2);
  EXPECT_EQ(cuda.slots, 2);
  WorkerAgentOptions too_many;
  too_many.device = "cuda";
  too_many.gpus = 1;
  too_many.slots = 2;
  EXPECT_EQ(resolve_worker_offer(too_many, two_gpus),
            "--slots 2 exceeds --gpus 1 (one rank per GPU)");
}

TEST(WorkerAgent, StopReturnsPromptlyWhileNoServerAnswers) {
  RunningAgent running(cpu_agent("127.0.0.1:" + std::to_string(free_loopback_port())));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(running.agent().worker_id(), "");
  EXPECT_LT(running.stop(), 5.0);
  EXPECT_EQ(running.exit_code(), 0);
}

/// A real job service in this process (store, coordinator, WorkerControl
/// over a loopback socket) and a real agent whose rank is the real engine:
/// the agent registers, runs the assigned rank to the end, and the job's
/// epoch results reach the server through the forwarded rank events.
TEST(WorkerAgent, RegistersRunsItsRankAndForwardsTheRankEvents) {
  const fs::path dir = cli::testing::scratch_path("worker-agent");
  fs::remove_all(dir);
  fs::create_directories(dir);
  worker::SynthOptions synth;
  synth.ids = 16;
  synth.cameras = 2;
  synth.images_per_camera = 3;
  synth.height = 32;
  synth.width = 16;
  worker::render_market_dataset((dir / "market").string(), synth);

  auto store = server::JobStore::Open((dir / "tandem.db").string());
  ASSERT_TRUE(store.ok()) << store.status();
  server::CoordinatorOptions options;
  options.jobs_dir = (dir / "jobs").string();
  options.heartbeat_interval = std::chrono::milliseconds(200);
  options.heartbeat_timeout = std::chrono::seconds(5);
  options.rank_timeout_seconds = 60;
  server::JobCoordinator coordinator(**store, options);  // the product's spec validation
  ASSERT_TRUE(coordinator.start().ok());
  server::WorkerControlService control(coordinator);
  server::GrpcOptions grpc_options;
  grpc_options.address = "127.0.0.1:0";
  auto grpc_server =
      server::GrpcServer::Create(grpc_options, {&control}, {"tandem.v1.WorkerControl"});
  ASSERT_TRUE(grpc_server.ok()) << grpc_server.status();

  v1::JobSpec spec;
  spec.set_kind("pretrain");
  spec.set_output_dir("out");  // under the jobs folder
  spec.mutable_source()->set_kind("market1501");
  spec.mutable_source()->set_root((dir / "market").string());
  spec.set_backbone("small");
  spec.set_backbone_width(4);
  spec.set_height(32);
  spec.set_width(16);
  spec.set_identities(4);
  spec.set_instances(2);
  spec.set_epochs(1);
  spec.set_iters(2);
  spec.set_warmup_epochs(1);
  spec.set_loader_threads(1);
  spec.set_device("cpu");
  const auto submitted = coordinator.submit(spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status();

  RunningAgent running(cpu_agent((*grpc_server)->target()));
  v1::Job job;
  bool registered = false;
  const auto deadline = Clock::now() + std::chrono::minutes(3);
  while (Clock::now() < deadline) {
    if (!running.agent().worker_id().empty()) registered = true;
    const auto got = coordinator.get(submitted->id());
    ASSERT_TRUE(got.ok());
    job = *got;
    if (job.state() == v1::SUCCEEDED || job.state() == v1::FAILED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(registered) << "the agent never registered";
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.error();
  // The epoch event (with its evaluation) and its checkpoint came through
  // the agent: the server knows the job's metrics only from them.
  ASSERT_EQ(job.metrics_size(), 1);
  EXPECT_EQ(job.metrics(0).epoch(), 0);
  // The figures are the ones rank 0 wrote to its event log.
  const RankEvent* epoch_event = nullptr;
  const std::vector<RankEvent> events = read_rank_events(dir / "jobs" / "out" / "events.jsonl");
  for (const RankEvent& event : events) {
    if (event.event() == "epoch") epoch_event = &event;
  }
  ASSERT_NE(epoch_event, nullptr);
  ASSERT_EQ(epoch_event->map_size(), 1);
  EXPECT_EQ(job.metrics(0).map(), epoch_event->map(0));
  EXPECT_EQ(job.metrics(0).rank1(), epoch_event->rank1(0));
  EXPECT_EQ(job.checkpoint(), (dir / "jobs" / "out" / "checkpoint.pt").string());
  EXPECT_EQ(coordinator.live_workers(), 1);
  EXPECT_LT(running.stop(), 10.0);
  EXPECT_EQ(running.agent().worker_id(), "");
  (*grpc_server)->Shutdown(std::chrono::seconds(1));
  coordinator.stop();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tandem::jobs
