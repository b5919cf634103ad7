// The coordinator's state machine in process: the real SQLite store (a
// file), and workers represented by their end of the control stream
// (RecordingChannel keeps the commands the server sent, the test sends the
// workers' messages). The processes themselves are tested end to end in
// tests/cli/server_command_test.cpp.
#include "tandem/server/job_coordinator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

#include "tandem/jobs/rank_events.h"

namespace tandem::server {
namespace {

namespace fs = std::filesystem;
namespace v1 = tandem::v1;

class RecordingChannel final : public WorkerChannel {
 public:
  bool send(const v1::WorkerCommand& command) override {
    std::lock_guard<std::mutex> lock(mutex_);
    commands_.push_back(command);
    return true;
  }
  void close() override { closed_ = true; }
  std::vector<v1::WorkerCommand> commands() {
    std::lock_guard<std::mutex> lock(mutex_);
    return commands_;
  }
  /// The last AssignRank, waiting up to 5 s for one.
  std::optional<v1::AssignRank> assignment(size_t nth = 0) {
    for (int i = 0; i < 500; ++i) {
      size_t seen = 0;
      for (const auto& c : commands()) {
        if (c.has_assign() && seen++ == nth) return c.assign();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }
  bool stopped() {
    for (const auto& c : commands()) {
      if (c.has_stop()) return true;
    }
    return false;
  }
  bool closed_ = false;

 private:
  std::mutex mutex_;
  std::vector<v1::WorkerCommand> commands_;
};

class JobCoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tandem-coordinator-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    options_.jobs_dir = (dir_ / "jobs").string();
    options_.tick = std::chrono::milliseconds(10);
    options_.max_restarts = 1;
    open();
  }
  void TearDown() override {
    coordinator_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }
  void open() {
    coordinator_.reset();
    store_.reset();
    store_ = *JobStore::Open((dir_ / "jobs.db").string());
    coordinator_ = std::make_unique<JobCoordinator>(*store_, options_, nullptr);
    ASSERT_TRUE(coordinator_->start().ok());
  }
  /// A worker offering `slots` slots (0: the default for its kind), GPU
  /// slots with `gpus` > 0 (`tandem worker --device cuda`).
  std::pair<std::string, std::shared_ptr<RecordingChannel>> add_worker(const std::string& name,
                                                                       int slots = 0,
                                                                       int gpus = 0) {
    auto channel = std::make_shared<RecordingChannel>();
    v1::RegisterWorker info;
    info.set_name(name);
    info.set_slots(slots);
    if (gpus > 0) {
      info.set_device_kind("cuda");
      info.set_gpus(gpus);
    }
    return {coordinator_->register_worker(info, channel), channel};
  }
  static v1::JobSpec spec(int world = 1, const std::string& device = "") {
    v1::JobSpec s;
    s.set_kind("mmt");
    s.set_world_size(world);
    if (!device.empty()) s.set_device(device);
    return s;
  }
  void exited(const std::string& worker, const v1::AssignRank& a, int code) {
    v1::WorkerMessage m;
    m.mutable_exited()->set_job_id(a.job_id());
    m.mutable_exited()->set_attempt(a.attempt());
    m.mutable_exited()->set_rank(a.rank());
    m.mutable_exited()->set_exit_code(code);
    m.mutable_exited()->set_error_tail(code ? "boom" : "");
    coordinator_->on_worker_message(worker, m);
  }
  /// Rank 0's event `json` (one events.jsonl line, jobs/rank_events.h).
  void event(const std::string& worker, const v1::AssignRank& a, const std::string& json) {
    v1::WorkerMessage m;
    m.mutable_event()->set_job_id(a.job_id());
    m.mutable_event()->set_attempt(a.attempt());
    *m.mutable_event()->mutable_event() = jobs::parse_rank_event(json);
    coordinator_->on_worker_message(worker, m);
  }
  v1::Job job(const std::string& id) { return *coordinator_->get(id); }
  /// Polls the job until `done` holds (up to 5 s); returns it as last seen.
  v1::Job wait_job(const std::string& id, const std::function<bool(const v1::Job&)>& done) {
    v1::Job seen = job(id);
    for (int i = 0; i < 500 && !done(seen); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      seen = job(id);
    }
    return seen;
  }
  v1::Job wait_reason(const std::string& id) {
    return wait_job(id, [](const v1::Job& j) { return !j.waiting_reason().empty(); });
  }

  fs::path dir_;
  CoordinatorOptions options_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<JobCoordinator> coordinator_;
};

TEST_F(JobCoordinatorTest, AssignsRanksServesTheRendezvousAndRecordsTheEpochs) {
  auto [w0, c0] = add_worker("a");
  auto [w1, c1] = add_worker("b");
  const auto submitted = coordinator_->submit(spec(2));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  EXPECT_EQ(submitted->spec().output_dir(),
            (fs::path(options_.jobs_dir) / ("job-" + submitted->id())).string());
  const auto a0 = c0->assignment(), a1 = c1->assignment();
  ASSERT_TRUE(a0 && a1);
  EXPECT_EQ(a0->rank() + a1->rank(), 1);
  EXPECT_EQ(a0->world_size(), 2);
  EXPECT_GT(a0->master_port(), 0);
  EXPECT_EQ(a0->master_port(), a1->master_port());
  EXPECT_EQ(a0->spec_json().find("world_size"), std::string::npos) << "the service's field";
  const auto& rank0 = a0->rank() == 0 ? *a0 : *a1;
  const std::string& rank0_worker = a0->rank() == 0 ? w0 : w1;
  event(rank0_worker, rank0, R"({"event":"phase","phase":"cluster","epoch":0})");
  EXPECT_EQ(job(submitted->id()).phase(), v1::CLUSTER);
  event(rank0_worker, rank0,
        R"({"event":"epoch","kind":"mmt","epoch":0,"clusters":7,"mAP":[40.5,42.0],)"
        R"("rank1":[50,55],"rank5":[60,66],"checkpoint":"/x/checkpoint.pt"})");
  v1::Job running = job(submitted->id());
  EXPECT_EQ(running.state(), v1::RUNNING);
  ASSERT_EQ(running.metrics_size(), 1);
  EXPECT_DOUBLE_EQ(running.metrics(0).map(), 42.0) << "the better teacher";
  EXPECT_DOUBLE_EQ(running.metrics(0).rank1(), 55.0);
  EXPECT_DOUBLE_EQ(running.metrics(0).rank5(), 66.0);
  EXPECT_EQ(running.checkpoint(), "/x/checkpoint.pt");
  exited(w0, *a0, 0);
  EXPECT_EQ(job(submitted->id()).state(), v1::RUNNING) << "one rank still runs";
  exited(w1, *a1, 0);
  const v1::Job done = job(submitted->id());
  EXPECT_EQ(done.state(), v1::SUCCEEDED);
  EXPECT_GT(done.finished_ms(), 0);
  // Durable: a new coordinator on the same store reads it all back.
  open();
  const v1::Job reread = job(submitted->id());
  EXPECT_EQ(reread.state(), v1::SUCCEEDED);
  ASSERT_EQ(reread.metrics_size(), 1);
  EXPECT_EQ(reread.checkpoint(), "/x/checkpoint.pt");
}

TEST_F(JobCoordinatorTest, AWorkerWithSeveralSlotsRunsSeveralRanksEachWithItsLocalRank) {
  auto [w0, c0] = add_worker("multi", /*slots=*/3);
  const auto pair = coordinator_->submit(spec(2));
  ASSERT_TRUE(pair.ok()) << pair.status();
  const auto a0 = c0->assignment(0), a1 = c0->assignment(1);
  ASSERT_TRUE(a0 && a1) << "both ranks on the one worker";
  EXPECT_EQ(a0->job_id(), pair->id());
  EXPECT_EQ(a1->job_id(), pair->id());
  EXPECT_EQ(a0->rank(), 0);
  EXPECT_EQ(a1->rank(), 1);
  EXPECT_EQ(a0->local_rank(), 0);
  EXPECT_EQ(a1->local_rank(), 1);
  EXPECT_EQ(a0->world_size(), 2);
  const v1::Job running = job(pair->id());
  ASSERT_EQ(running.workers_size(), 2);
  EXPECT_EQ(running.workers(0), "multi#0");
  EXPECT_EQ(running.workers(1), "multi#1");
  // The third slot takes a one-rank job beside it, as LOCAL_RANK 2.
  const auto one = coordinator_->submit(spec(1));
  ASSERT_TRUE(one.ok());
  const auto a2 = c0->assignment(2);
  ASSERT_TRUE(a2);
  EXPECT_EQ(a2->job_id(), one->id());
  EXPECT_EQ(a2->local_rank(), 2);
  // A fourth rank does not fit until a slot frees; the rank that exits
  // frees exactly its own slot.
  const auto next = coordinator_->submit(spec(1));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(wait_reason(next->id()).waiting_reason(),
            "waiting for 1 slot, 0 of 3 free; younger jobs that fit may start meanwhile");
  exited(w0, *a2, 0);
  const auto a3 = c0->assignment(3);
  ASSERT_TRUE(a3);
  EXPECT_EQ(a3->job_id(), next->id());
  EXPECT_EQ(a3->local_rank(), 2);
  // One StopRank per worker stops both ranks of the pair (the worker stops
  // every rank of that attempt); a lost worker ends every rank it ran.
  coordinator_->on_worker_disconnected(w0);
  const v1::Job requeued =
      wait_job(pair->id(), [](const v1::Job& j) { return j.state() == v1::QUEUED; });
  EXPECT_EQ(requeued.state(), v1::QUEUED) << "restarted from its checkpoint when slots come back";
}

TEST_F(JobCoordinatorTest, GpuJobsTakeGpuSlotsOnlyAndAutoJobsNeverMixKinds) {
  options_.unplaceable_timeout = std::chrono::milliseconds(500);
  open();
  auto [cpu, cpu_channel] = add_worker("cpu-host");
  // device: cuda with no GPU worker: it waits, saying so, then fails.
  const auto gpu_job = coordinator_->submit(spec(1, "cuda"));
  ASSERT_TRUE(gpu_job.ok()) << gpu_job.status();
  EXPECT_EQ(wait_reason(gpu_job->id()).waiting_reason(),
            "waiting for 1 GPU slot, 0 registered (no worker offers GPUs: `tandem worker "
            "--device cuda`)");
  const v1::Job failed =
      wait_job(gpu_job->id(), [](const v1::Job& j) { return j.state() == v1::FAILED; });
  ASSERT_EQ(failed.state(), v1::FAILED);
  EXPECT_NE(failed.error().find("at most 0 GPU slot(s) registered"), std::string::npos)
      << failed.error();
  EXPECT_NE(failed.error().find("tandem worker --device cuda"), std::string::npos);
  EXPECT_EQ(cpu_channel->commands().size(), 1u) << "only Registered: nothing assigned";

  // A GPU worker with two GPUs: two slots by default, cuda:0 and cuda:1.
  auto [gpu, gpu_channel] = add_worker("gpu-host", 0, /*gpus=*/2);
  const auto pair = coordinator_->submit(spec(2, "cuda"));
  ASSERT_TRUE(pair.ok()) << pair.status();
  const auto g0 = gpu_channel->assignment(0), g1 = gpu_channel->assignment(1);
  ASSERT_TRUE(g0 && g1);
  EXPECT_EQ(g0->local_rank() + g1->local_rank(), 1);
  // device: auto (the default) for two ranks: the GPU slots are busy and
  // one CPU slot is not enough; the job waits rather than mixing kinds.
  const auto auto_pair = coordinator_->submit(spec(2));
  ASSERT_TRUE(auto_pair.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(job(auto_pair->id()).state(), v1::QUEUED);
  EXPECT_EQ(cpu_channel->commands().size(), 1u) << "only Registered: no rank on the CPU worker";
  exited(gpu, *g0, 0);
  exited(gpu, *g1, 0);
  const auto a0 = gpu_channel->assignment(2);
  ASSERT_TRUE(a0);
  EXPECT_EQ(a0->job_id(), auto_pair->id()) << "auto: both GPU slots, once free";
  // device: cpu may take any slot, here the CPU worker's.
  const auto cpu_job = coordinator_->submit(spec(1, "cpu"));
  ASSERT_TRUE(cpu_job.ok());
  const auto c0 = cpu_channel->assignment(0);
  ASSERT_TRUE(c0);
  EXPECT_EQ(c0->job_id(), cpu_job->id());
  // SubmitJob refuses GPU world sizes above the GPU slots ever seen.
  const auto too_big = coordinator_->submit(spec(3, "cuda"));
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(too_big.status().message().find("at most 2 GPU slots have registered"),
            std::string::npos)
      << too_big.status();
}

TEST_F(JobCoordinatorTest, ReplayedEpochResultsAreRecordedOncePerEpoch) {
  auto [w0, c0] = add_worker("a");
  const auto submitted = coordinator_->submit(spec(1));
  const auto a = c0->assignment();
  ASSERT_TRUE(a);
  const auto epoch = [](int e, double map) {
    return R"({"event":"epoch","epoch":)" + std::to_string(e) + R"(,"mAP":[)" +
           std::to_string(map) + "]}";
  };
  event(w0, *a, epoch(0, 10));
  event(w0, *a, epoch(0, 11));  // epoch 0 trained again after a restart
  v1::WorkerMessage replay;
  replay.mutable_event()->set_job_id(a->job_id());
  replay.mutable_event()->set_attempt(a->attempt());
  replay.mutable_event()->set_replayed(true);
  for (const auto& json : {epoch(0, 11), epoch(1, 20),
                           std::string(R"({"event":"iteration","epoch":5,"iteration":3})")}) {
    *replay.mutable_event()->mutable_event() = jobs::parse_rank_event(json);
    coordinator_->on_worker_message(w0, replay);
  }
  const v1::Job running = job(submitted->id());
  ASSERT_EQ(running.metrics_size(), 2);
  EXPECT_DOUBLE_EQ(running.metrics(0).map(), 11);
  EXPECT_EQ(running.metrics(1).epoch(), 1);
  EXPECT_EQ(running.epoch(), 0) << "replayed iterations are ignored";
}

TEST_F(JobCoordinatorTest, AFailedRankStopsTheGroupAndRestartsItThenGivesUp) {
  auto [w0, c0] = add_worker("a");
  auto [w1, c1] = add_worker("b");
  const auto submitted = coordinator_->submit(spec(2));
  ASSERT_TRUE(submitted.ok());
  auto a0 = c0->assignment(), a1 = c1->assignment();
  ASSERT_TRUE(a0 && a1);
  exited(w1, *a1, 3);
  EXPECT_TRUE(c0->stopped()) << "the healthy rank is stopped";
  exited(w0, *a0, 143);
  // Restart 1 of 1: a second attempt on the same two workers.
  a0 = c0->assignment(1);
  a1 = c1->assignment(1);
  ASSERT_TRUE(a0 && a1);
  EXPECT_EQ(a0->attempt(), 2);
  // A late message of the first attempt changes nothing.
  exited(w0, *c0->assignment(0), 1);
  EXPECT_EQ(job(submitted->id()).state(), v1::RUNNING);
  exited(w0, *a0, 1);
  exited(w1, *a1, 143);
  const v1::Job failed = job(submitted->id());
  EXPECT_EQ(failed.state(), v1::FAILED);
  EXPECT_NE(failed.error().find("exited with code 1"), std::string::npos) << failed.error();
  EXPECT_NE(failed.error().find("boom"), std::string::npos) << failed.error();
}

TEST_F(JobCoordinatorTest, ALostWorkerRequeuesItsJobForTheOthers) {
  auto [w0, c0] = add_worker("a");
  const auto submitted = coordinator_->submit(spec(1));
  ASSERT_TRUE(submitted.ok());
  ASSERT_TRUE(c0->assignment());
  coordinator_->on_worker_disconnected(w0);
  EXPECT_EQ(job(submitted->id()).state(), v1::QUEUED);
  auto [w1, c1] = add_worker("b");
  const auto again = c1->assignment();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->attempt(), 2);
  EXPECT_EQ(job(submitted->id()).workers(0), "b");
}

TEST_F(JobCoordinatorTest, MissedHeartbeatsMarkAWorkerLost) {
  options_.heartbeat_timeout = std::chrono::milliseconds(200);
  open();
  auto [w0, c0] = add_worker("a");
  const auto submitted = coordinator_->submit(spec(1));
  ASSERT_TRUE(c0->assignment());
  for (int i = 0; i < 200 && job(submitted->id()).state() != v1::QUEUED; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(job(submitted->id()).state(), v1::QUEUED);
  EXPECT_TRUE(c0->closed_);
  EXPECT_EQ(coordinator_->live_workers(), 0);
}

TEST_F(JobCoordinatorTest, FifoQueueAndWorldSizeAboveTheWorkersIsRefused) {
  auto [w0, c0] = add_worker("a");
  const auto big = coordinator_->submit(spec(2));
  EXPECT_EQ(big.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(big.status().message().find("world_size"), std::string::npos);
  EXPECT_EQ(coordinator_->submit(spec(0)).status().code(), absl::StatusCode::kInvalidArgument);
  const auto first = coordinator_->submit(spec(1));
  const auto second = coordinator_->submit(spec(1));
  ASSERT_TRUE(first.ok() && second.ok());
  const auto a = c0->assignment();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->job_id(), first->id());
  EXPECT_EQ(job(second->id()).state(), v1::QUEUED);
  exited(w0, *a, 0);
  const auto b = c0->assignment(1);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->job_id(), second->id());
}

TEST_F(JobCoordinatorTest, AJobThatDoesNotFitTheIdleWorkersLetsYoungerJobsThatFitStart) {
  auto [w0, c0] = add_worker("a");
  auto [w1, c1] = add_worker("b");
  const auto first = coordinator_->submit(spec(1));
  ASSERT_TRUE(first.ok());
  const auto a = c0->assignment();
  ASSERT_TRUE(a);
  const auto pair = coordinator_->submit(spec(2));
  const auto third = coordinator_->submit(spec(1));
  ASSERT_TRUE(pair.ok() && third.ok());
  // The 2-rank job cannot start on the one idle worker; the younger 1-rank
  // job backfills it.
  const auto b = c1->assignment();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->job_id(), third->id());
  const std::string expected =
      "waiting for 2 slots, 0 of 2 free; younger jobs that fit may start meanwhile";
  const v1::Job waiting =
      wait_job(pair->id(), [&](const v1::Job& j) { return j.waiting_reason() == expected; });
  EXPECT_EQ(waiting.state(), v1::QUEUED);
  EXPECT_EQ(waiting.waiting_reason(), expected);
  exited(w0, *a, 0);
  exited(w1, *b, 0);
  const auto a2 = c0->assignment(1), b2 = c1->assignment(1);
  ASSERT_TRUE(a2 && b2);
  EXPECT_EQ(a2->job_id(), pair->id());
  EXPECT_EQ(b2->job_id(), pair->id());
  EXPECT_EQ(job(pair->id()).waiting_reason(), "") << "a running job does not wait";
}

TEST_F(JobCoordinatorTest, AJobQueuedLongerThanReserveAfterHoldsTheFreeWorkersForItself) {
  options_.reserve_after = std::chrono::milliseconds(0);
  open();
  auto [w0, c0] = add_worker("a");
  auto [w1, c1] = add_worker("b");
  const auto first = coordinator_->submit(spec(1));
  ASSERT_TRUE(first.ok());
  const auto a = c0->assignment();
  ASSERT_TRUE(a);
  const auto pair = coordinator_->submit(spec(2));
  const auto third = coordinator_->submit(spec(1));
  ASSERT_TRUE(pair.ok() && third.ok());
  const v1::Job held = wait_reason(third->id());
  EXPECT_EQ(held.state(), v1::QUEUED) << "the idle worker is held for the older 2-rank job";
  EXPECT_EQ(held.waiting_reason(), "waiting for 1 slot, 1 of 2 free; behind job " + pair->id() +
                                       ", which holds the free slots");
  EXPECT_EQ(job(pair->id()).waiting_reason(),
            "waiting for 2 slots, 1 of 2 free; holding them (younger jobs wait)");
  exited(w0, *a, 0);
  const auto a2 = c0->assignment(1), b = c1->assignment(0);
  ASSERT_TRUE(a2 && b);
  EXPECT_EQ(a2->job_id(), pair->id());
  EXPECT_EQ(b->job_id(), pair->id());
  EXPECT_EQ(job(third->id()).state(), v1::QUEUED);
  exited(w0, *a2, 0);
  exited(w1, *b, 0);
  const auto next = c0->assignment(2);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->job_id(), third->id());
}

TEST_F(JobCoordinatorTest, AWorldSizeAboveEveryCapacityHoldsNothingAndFailsAfterTheGrace) {
  options_.unplaceable_timeout = std::chrono::milliseconds(1000);
  open();
  // Submitted before any worker registered: SubmitJob cannot refuse it.
  const auto big = coordinator_->submit(spec(64));
  ASSERT_TRUE(big.ok()) << big.status();
  auto [w0, c0] = add_worker("a");
  auto [w1, c1] = add_worker("b");
  const auto one = coordinator_->submit(spec(1));
  const auto two = coordinator_->submit(spec(1));
  ASSERT_TRUE(one.ok() && two.ok());
  const auto a = c0->assignment(), b = c1->assignment();
  ASSERT_TRUE(a && b) << "the 1-rank jobs start beside the unplaceable one";
  EXPECT_EQ(a->job_id(), one->id());
  EXPECT_EQ(b->job_id(), two->id());
  const v1::Job waiting = job(big->id());
  EXPECT_EQ(waiting.state(), v1::QUEUED);
  EXPECT_EQ(waiting.waiting_reason(), "waiting for 64 slots, 2 registered");
  const v1::Job failed =
      wait_job(big->id(), [](const v1::Job& j) { return j.state() == v1::FAILED; });
  ASSERT_EQ(failed.state(), v1::FAILED);
  EXPECT_NE(
      failed.error().find("world_size 64 exceeds the deployment's capacity: at most 2 slot(s)"),
      std::string::npos)
      << failed.error();
  EXPECT_NE(failed.error().find("--unplaceable-timeout"), std::string::npos) << failed.error();
  EXPECT_EQ(failed.waiting_reason(), "");
  EXPECT_GT(failed.finished_ms(), 0);
  // Stored: a restarted server reads it FAILED with the error.
  exited(w0, *a, 0);
  exited(w1, *b, 0);
  open();
  EXPECT_EQ(job(big->id()).state(), v1::FAILED);
  EXPECT_EQ(job(big->id()).error(), failed.error());
}

TEST_F(JobCoordinatorTest, WaitingForLostWorkersToComeBackIsNotUnplaceable) {
  options_.unplaceable_timeout = std::chrono::milliseconds(100);
  open();
  auto [w0, c0] = add_worker("a");
  const auto submitted = coordinator_->submit(spec(1));
  ASSERT_TRUE(submitted.ok());
  ASSERT_TRUE(c0->assignment());
  coordinator_->on_worker_disconnected(w0);
  const v1::Job waiting = wait_reason(submitted->id());
  EXPECT_EQ(waiting.waiting_reason(), "waiting for 1 slot, 0 registered");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(job(submitted->id()).state(), v1::QUEUED)
      << "the deployment had one worker: the job waits for it, past the unplaceable grace";
  auto [w1, c1] = add_worker("b");
  ASSERT_TRUE(c1->assignment());
}

TEST_F(JobCoordinatorTest, UnplaceableTimeoutZeroWaitsForEver) {
  options_.unplaceable_timeout = std::chrono::milliseconds(0);
  options_.expected_workers = 8;  // SubmitJob takes world sizes up to 8
  open();
  auto [w0, c0] = add_worker("a");
  const auto big = coordinator_->submit(spec(8));
  ASSERT_TRUE(big.ok()) << big.status();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const v1::Job waiting = job(big->id());
  EXPECT_EQ(waiting.state(), v1::QUEUED);
  EXPECT_EQ(waiting.waiting_reason(), "waiting for 8 slots, 1 registered");
}

TEST_F(JobCoordinatorTest, CancelQueuedAtOnceRunningAfterTheRanksStop) {
  const auto queued = coordinator_->submit(spec(1));
  ASSERT_TRUE(queued.ok());
  const auto cancelled = coordinator_->cancel(queued->id(), std::chrono::seconds(1));
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), v1::CANCELLED);
  EXPECT_EQ(coordinator_->cancel(queued->id(), std::chrono::seconds(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(coordinator_->cancel("42", std::chrono::seconds(1)).status().code(),
            absl::StatusCode::kNotFound);

  auto [w0, c0] = add_worker("a");
  const auto running = coordinator_->submit(spec(1));
  const auto a = c0->assignment();
  ASSERT_TRUE(a);
  std::thread rank([&] {
    for (int i = 0; i < 500 && !c0->stopped(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    exited(w0, *a, 143);  // SIGTERM
  });
  const auto stopped = coordinator_->cancel(running->id(), std::chrono::seconds(5));
  rank.join();
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->state(), v1::CANCELLED);
}

TEST_F(JobCoordinatorTest, ARestartedServerQueuesTheJobsThatWereRunning) {
  auto [w0, c0] = add_worker("a");
  const auto submitted = coordinator_->submit(spec(1));
  ASSERT_TRUE(c0->assignment());
  EXPECT_EQ(job(submitted->id()).state(), v1::RUNNING);
  open();  // the server died and came back; no worker yet
  EXPECT_EQ(job(submitted->id()).state(), v1::QUEUED);
  auto [w1, c1] = add_worker("a-again");
  const auto resumed = c1->assignment();
  ASSERT_TRUE(resumed);
  EXPECT_EQ(resumed->attempt(), 2) << "attempts are durable";
}

TEST_F(JobCoordinatorTest, ACancelPendingWhenTheServerDiedEndsCancelledNotResumed) {
  auto [w0, c0] = add_worker("a");
  const auto submitted = coordinator_->submit(spec(1));
  ASSERT_TRUE(c0->assignment());
  // The rank does not stop within the wait: the cancel is pending.
  const auto pending = coordinator_->cancel(submitted->id(), std::chrono::milliseconds(10));
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->state(), v1::RUNNING);
  EXPECT_TRUE(pending->cancel_requested());
  EXPECT_TRUE(c0->stopped());
  open();  // the server died before the rank's exit; it comes back
  const v1::Job after = job(submitted->id());
  EXPECT_EQ(after.state(), v1::CANCELLED);
  EXPECT_GT(after.finished_ms(), 0);
  auto [w1, c1] = add_worker("a-again");
  EXPECT_FALSE(c1->assignment()) << "a cancelled job must not run again";
}

TEST_F(JobCoordinatorTest, WatchSendsTheJobThenItsEventsUntilItEnds) {
  auto [w0, c0] = add_worker("a");
  const auto submitted = coordinator_->submit(spec(1));
  const auto a = c0->assignment();
  ASSERT_TRUE(a);
  std::vector<v1::JobEvent> seen;
  std::thread watcher([&] {
    ASSERT_TRUE(coordinator_
                    ->watch(
                        submitted->id(), 1e9,
                        [&](const v1::JobEvent& e) {
                          seen.push_back(e);
                          return true;
                        },
                        nullptr)
                    .ok());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (int i = 1; i <= 3; ++i) {
    event(w0, *a,
          R"({"event":"iteration","epoch":0,"iteration":)" + std::to_string(i) +
              R"(,"iterations":3,"losses":{"ce":1.5},"images_per_second":10})");
  }
  exited(w0, *a, 0);
  watcher.join();
  ASSERT_GE(seen.size(), 5u);
  EXPECT_TRUE(seen.front().has_job());
  int iterations = 0;
  for (const auto& e : seen) {
    if (!e.has_iteration()) continue;
    ++iterations;
    EXPECT_DOUBLE_EQ(e.iteration().losses().at("ce"), 1.5);
  }
  EXPECT_EQ(iterations, 3);
  EXPECT_EQ(seen.back().job().state(), v1::SUCCEEDED);
  EXPECT_EQ(coordinator_
                ->watch(
                    "nope", 1, [](const v1::JobEvent&) { return true; }, nullptr)
                .code(),
            absl::StatusCode::kNotFound);
}

// --- Security (issue 19, docs/security.md) -----------------------------------

TEST_F(JobCoordinatorTest, JobIdsAre128RandomBitsAndOwnersAreStored) {
  const auto a = coordinator_->submit(spec(), "alice");
  const auto b = coordinator_->submit(spec(), "bob");
  ASSERT_TRUE(a.ok() && b.ok());
  for (const auto& id : {a->id(), b->id()}) {
    EXPECT_EQ(id.size(), 32u) << id;
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
  }
  EXPECT_NE(a->id(), b->id());
  EXPECT_EQ(a->owner(), "alice");
  EXPECT_EQ(coordinator_->get("1").status().code(), absl::StatusCode::kNotFound)
      << "row numbers are not ids";
  open();
  EXPECT_EQ(job(a->id()).owner(), "alice") << "durable";
  EXPECT_EQ(job(b->id()).owner(), "bob");
}

TEST_F(JobCoordinatorTest, OnlyTheAssignedWorkerReportsItsRanksEventsAndExits) {
  auto [w0, c0] = add_worker("a");
  const auto submitted = coordinator_->submit(spec(1));
  ASSERT_TRUE(submitted.ok());
  const auto assigned = c0->assignment();
  ASSERT_TRUE(assigned);
  auto [intruder, ci] = add_worker("intruder");
  // Another worker claims the rank ended and sends its results: ignored.
  event(intruder, *assigned, R"({"event":"phase","phase":"cluster","epoch":0})");
  event(intruder, *assigned,
        R"({"event":"epoch","kind":"mmt","epoch":0,"mAP":[99],"rank1":[99],"rank5":[99]})");
  exited(intruder, *assigned, 0);
  v1::Job still = job(submitted->id());
  EXPECT_EQ(still.state(), v1::RUNNING);
  EXPECT_EQ(still.phase(), v1::JOB_PHASE_UNSPECIFIED);
  EXPECT_EQ(still.metrics_size(), 0);
  // A rank the worker does not run, or an old attempt: ignored too.
  v1::AssignRank other_rank = *assigned;
  other_rank.set_rank(1);
  exited(w0, other_rank, 1);
  v1::AssignRank old_attempt = *assigned;
  old_attempt.set_attempt(assigned->attempt() - 1);
  exited(w0, old_attempt, 1);
  EXPECT_EQ(job(submitted->id()).state(), v1::RUNNING);
  // The assigned worker: accepted.
  event(w0, *assigned, R"({"event":"phase","phase":"cluster","epoch":0})");
  EXPECT_EQ(job(submitted->id()).phase(), v1::CLUSTER);
  exited(w0, *assigned, 0);
  EXPECT_EQ(job(submitted->id()).state(), v1::SUCCEEDED);
}

TEST_F(JobCoordinatorTest, OutputFoldersStayUnderTheJobsDir) {
  v1::JobSpec relative = spec();
  relative.set_output_dir("team/run-1");
  const auto inside = coordinator_->submit(relative);
  ASSERT_TRUE(inside.ok()) << inside.status();
  EXPECT_EQ(inside->spec().output_dir(),
            (fs::weakly_canonical(options_.jobs_dir) / "team" / "run-1").string());
  for (const std::string outside : {"/etc/tandem", "../escape", "team/../../escape"}) {
    v1::JobSpec s = spec();
    s.set_output_dir(outside);
    const auto refused = coordinator_->submit(s);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << outside;
    EXPECT_NE(refused.status().message().find("spec.output_dir"), std::string::npos);
    EXPECT_NE(refused.status().message().find("--jobs-dir"), std::string::npos);
  }
  EXPECT_EQ(coordinator_->list({}, 0).size(), 1u) << "nothing stored for refused specs";
}

TEST_F(JobCoordinatorTest, NoJobWritesIntoAnotherJobsFolder) {
  v1::JobSpec first = spec();
  first.set_output_dir("team/run");
  const auto taken = coordinator_->submit(first);
  ASSERT_TRUE(taken.ok()) << taken.status();
  // The same folder, one inside it, one around it, and the default folder
  // of an existing job: refused, naming the job.
  for (const std::string& overlapping :
       {std::string("team/run"), std::string("team/run/inner"), std::string("team"),
        (fs::path(options_.jobs_dir) / "team" / "run" / ".." / "run").string()}) {
    v1::JobSpec s = spec();
    s.set_output_dir(overlapping);
    const auto refused = coordinator_->submit(s);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << overlapping;
    EXPECT_NE(refused.status().message().find(taken->id()), std::string::npos) << refused.status();
  }
  const auto defaulted = coordinator_->submit(spec());
  ASSERT_TRUE(defaulted.ok());
  v1::JobSpec squatter = spec();
  squatter.set_output_dir("job-" + defaulted->id());
  EXPECT_EQ(coordinator_->submit(squatter).status().code(), absl::StatusCode::kFailedPrecondition);
  // A sibling whose name shares a prefix is another folder.
  v1::JobSpec sibling = spec();
  sibling.set_output_dir("team/run-2");
  EXPECT_TRUE(coordinator_->submit(sibling).ok());
  // Once the job is deleted its folder is free again.
  ASSERT_TRUE(coordinator_->cancel(taken->id(), std::chrono::seconds(1)).ok());
  ASSERT_TRUE(coordinator_->remove(taken->id()).ok());
  EXPECT_TRUE(coordinator_->submit(first).ok());
}

TEST_F(JobCoordinatorTest, DataPathsMustLieUnderTheDataRootsWithoutRevealingWhatExists) {
  fs::create_directories(dir_ / "data" / "market");
  fs::create_directories(options_.jobs_dir);
  std::ofstream(fs::path(options_.jobs_dir) / "model.pt") << "weights";
  options_.data_roots = std::vector<std::string>{(dir_ / "data").string()};
  open();
  v1::JobSpec ok = spec();
  ok.mutable_target()->set_kind("market1501");
  ok.mutable_target()->set_root((dir_ / "data" / "market").string());
  ok.set_init_1((fs::path(options_.jobs_dir) / "model.pt").string());
  const auto accepted = coordinator_->submit(ok);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->spec().target().root(),
            fs::weakly_canonical(dir_ / "data" / "market").string());
  // Outside: the same answer for a file that exists and one that does not.
  std::string messages[2];
  int i = 0;
  for (const std::string path : {"/etc/hostname", "/etc/no-such-file-tandem"}) {
    v1::JobSpec s = spec();
    s.set_init_1(path);
    const auto refused = coordinator_->submit(s);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
    std::string message(refused.status().message());
    EXPECT_NE(message.find("spec.init_1"), std::string::npos) << message;
    EXPECT_NE(message.find("--data-root"), std::string::npos) << message;
    message.replace(message.find(path), path.size(), "PATH");
    messages[i++] = message;
  }
  EXPECT_EQ(messages[0], messages[1]);
  // A symlink inside the data root that points outside.
  fs::create_symlink("/etc", dir_ / "data" / "etc-link");
  v1::JobSpec linked = spec();
  linked.mutable_source()->set_kind("market1501");
  linked.mutable_source()->set_root((dir_ / "data" / "etc-link").string());
  EXPECT_EQ(coordinator_->submit(linked).status().code(), absl::StatusCode::kInvalidArgument);
  // Data sets are not read from the jobs folder (only weights are).
  v1::JobSpec jobs_data = spec();
  jobs_data.mutable_target()->set_kind("market1501");
  jobs_data.mutable_target()->set_root(options_.jobs_dir);
  EXPECT_EQ(coordinator_->submit(jobs_data).status().code(), absl::StatusCode::kInvalidArgument);
  // No data roots at all: every data path is refused, saying how to allow one.
  options_.data_roots = std::vector<std::string>{};
  open();
  const auto none = coordinator_->submit(ok);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("--data-root"), std::string::npos) << none.status();
}

TEST_F(JobCoordinatorTest, SizeFieldsAboveTheLimitsAreRefused) {
  v1::JobSpec big = spec();
  big.set_height(1000000);
  const auto refused = coordinator_->submit(big);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("spec.height"), std::string::npos) << refused.status();
}

TEST_F(JobCoordinatorTest, SubmitRateAndQueueCapArePerPrincipal) {
  options_.submits_per_minute = 3;
  options_.max_queued_per_principal = 2;
  open();
  // No workers: jobs stay queued. Two fit alice's queue cap, the third not.
  ASSERT_TRUE(coordinator_->submit(spec(), "alice").ok());
  ASSERT_TRUE(coordinator_->submit(spec(), "alice").ok());
  const auto capped = coordinator_->submit(spec(), "alice");
  EXPECT_EQ(capped.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(capped.status().message().find("--max-queued"), std::string::npos) << capped.status();
  // Her rate (3 per minute) is spent; even a refused spec costs.
  const auto limited = coordinator_->submit(spec(), "alice");
  EXPECT_EQ(limited.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(limited.status().message().find("--submit-rate"), std::string::npos)
      << limited.status();
  // Bob has his own bucket and queue.
  EXPECT_TRUE(coordinator_->submit(spec(), "bob").ok());
  // A cancelled job frees a queue place (the rate still binds alice).
  const auto alices = coordinator_->list({v1::QUEUED}, 0);
  for (const auto& j : alices) {
    if (j.owner() == "alice") {
      ASSERT_TRUE(coordinator_->cancel(j.id(), std::chrono::seconds(1)).ok());
      break;
    }
  }
  EXPECT_EQ(coordinator_->submit(spec(), "alice").status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(JobCoordinatorTest, DeleteRemovesAnEndedJobAndItsFolderOnly) {
  const auto queued = coordinator_->submit(spec());
  ASSERT_TRUE(queued.ok());
  fs::create_directories(queued->spec().output_dir());
  std::ofstream(fs::path(queued->spec().output_dir()) / "model.pt") << "w";
  EXPECT_EQ(coordinator_->remove(queued->id()).status().code(),
            absl::StatusCode::kFailedPrecondition)
      << "queued: cancel first";
  ASSERT_TRUE(coordinator_->cancel(queued->id(), std::chrono::seconds(1)).ok());
  const auto removed = coordinator_->remove(queued->id());
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->removed_output_dir(), queued->spec().output_dir());
  EXPECT_FALSE(fs::exists(queued->spec().output_dir()));
  EXPECT_TRUE(fs::exists(options_.jobs_dir)) << "the jobs folder itself stays";
  EXPECT_EQ(coordinator_->get(queued->id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(coordinator_->remove(queued->id()).status().code(), absl::StatusCode::kNotFound);
  open();
  EXPECT_EQ(coordinator_->get(queued->id()).status().code(), absl::StatusCode::kNotFound)
      << "gone from the store too";
}

TEST_F(JobCoordinatorTest, RetentionDeletesJobsThatEndedLongerAgo) {
  const auto old_job = coordinator_->submit(spec());
  const auto live = coordinator_->submit(spec());
  ASSERT_TRUE(old_job.ok() && live.ok());
  fs::create_directories(old_job->spec().output_dir());
  ASSERT_TRUE(coordinator_->cancel(old_job->id(), std::chrono::seconds(1)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  options_.retention = std::chrono::milliseconds(20);
  open();
  const auto gone = [&] {
    for (int i = 0; i < 500; ++i) {
      if (!coordinator_->get(old_job->id()).ok()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  EXPECT_TRUE(gone()) << "the ended job is deleted";
  EXPECT_FALSE(fs::exists(old_job->spec().output_dir()));
  EXPECT_EQ(job(live->id()).state(), v1::QUEUED) << "a queued job is never deleted";
}

}  // namespace
}  // namespace tandem::server
