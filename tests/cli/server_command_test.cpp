#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "support/deployment.h"
#include "support/run_tandem.h"
#include "tandem/client/health_client.h"

namespace tandem::cli {
namespace {

namespace fs = std::filesystem;

using testing::run_tandem;
using testing::scratch_path;
using testing::spawn_tandem;
using testing::wait_for;

TEST(ServerCommand, ServesHealthAndStopsCleanlyOnSigterm) {
  const std::string db = scratch_path("server.db");
  const std::string target = "127.0.0.1:" + std::to_string(jobs::free_loopback_port());
  auto child = spawn_tandem({"server", "--listen", target, "--db", db}, "server");
  ASSERT_GT(child.pid, 0);
  const auto ready = client::wait_until_serving(target, std::chrono::seconds(30));
  EXPECT_TRUE(ready.ok()) << ready;
  ::kill(child.pid, SIGTERM);
  auto result = wait_for(child, std::chrono::seconds(30));
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("listening on " + target), std::string::npos) << result.out;
  EXPECT_TRUE(std::filesystem::exists(db));
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
}

TEST(ServerCommand, UnopenableJobStoreFailsNamingThePath) {
  const std::string db = "/nonexistent-dir/tandem/jobs.db";
  auto result = run_tandem({"server", "--listen", "127.0.0.1:0", "--db", db}, "server-bad-db");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find(db), std::string::npos) << result.err;
}

// ---------------------------------------------------------------------------
// The job service end to end: real server, worker and clustering processes
// on loopback (tests/support/deployment.h).

using testing::Deployment;
using testing::tiny_spec;
namespace v1 = tandem::v1;

bool ended(const v1::Job& job) {
  return job.state() == v1::SUCCEEDED || job.state() == v1::FAILED || job.state() == v1::CANCELLED;
}

/// Every event of WatchJob until the stream ends.
std::vector<v1::JobEvent> watch_all(v1::Tandem::Stub& stub, const std::string& id,
                                    double iteration_rate = 1e9) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
  v1::WatchJobRequest request;
  request.set_id(id);
  request.set_max_iteration_events_per_second(iteration_rate);
  auto reader = stub.WatchJob(&context, request);
  std::vector<v1::JobEvent> events;
  v1::JobEvent event;
  while (reader->Read(&event)) events.push_back(event);
  EXPECT_TRUE(reader->Finish().ok());
  return events;
}

TEST(JobService, SubmitWatchAndRankThroughTheCliWithTwoRanksAndTheClusteringService) {
  Deployment deployment("e2e", {/*workers=*/2, /*clustering_service=*/true});
  // pretrain on the source, then mmt on two ranks (data parallel over the
  // server's rendezvous) with pseudo labels from the clustering service.
  v1::Job pretrain;
  ASSERT_TRUE(deployment.submit(tiny_spec("pretrain", 2, 3), &pretrain).ok());
  const v1::Job pretrained = deployment.wait_until(pretrain.id(), ended);
  ASSERT_EQ(pretrained.state(), v1::SUCCEEDED) << pretrained.error();
  ASSERT_EQ(pretrained.metrics_size(), 2);
  EXPECT_GT(pretrained.metrics(1).map(), 0);
  EXPECT_FALSE(pretrained.checkpoint().empty());
  const std::string model = pretrained.spec().output_dir() + "/model.pt";
  ASSERT_TRUE(fs::exists(model));

  const fs::path spec = deployment.dir() / "mmt.yaml";
  testing::write_file(
      spec,
      "kind: mmt\ntarget: {kind: market1501, root: " + (testing::tiny_domains() / "duke").string() +
          "}\ninit_1: " + model + "\ninit_2: " + model +
          "\nbackbone: small\nbackbone_width: 4\nheight: 32\nwidth: 16\nidentities: 4\n"
          "instances: 4\niters: 3\nepochs: 2\nloader_threads: 1\nlr: 0.001\n"
          "clustering: kmeans\nk: 8\nbn_group_size: 4\nworld_size: 2\n");
  auto submitted =
      run_tandem({"submit", spec.string(), "--watch", "--server", deployment.address()}, "submit");
  ASSERT_EQ(submitted.exit_code, 0) << submitted.out << submitted.err << deployment.server_log();
  EXPECT_NE(submitted.out.find("SUCCEEDED"), std::string::npos) << submitted.out;

  auto listed = run_tandem({"status", "--json", "--server", deployment.address()}, "status");
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  // `tandem submit` prints the new job's id first (ids are random).
  const std::string mmt_id = submitted.out.substr(0, submitted.out.find('\n'));
  EXPECT_EQ(mmt_id.size(), 32u) << submitted.out;
  const v1::Job mmt = deployment.get(mmt_id);
  ASSERT_EQ(mmt.state(), v1::SUCCEEDED) << mmt.error();
  EXPECT_EQ(mmt.workers_size(), 2);
  ASSERT_EQ(mmt.metrics_size(), 2);
  // Both ranks ran; rank 0 sent its features to the clustering service.
  EXPECT_TRUE(fs::exists(mmt.spec().output_dir() + "/ranks/rank-1.log"));
  EXPECT_NE(deployment.server_log().find("attempt 1 on 2 slot(s)"), std::string::npos);

  auto ranked = run_tandem(
      {"rank", mmt_id, "--query", "0", "--top", "5", "--json", "--server", deployment.address()},
      "rank");
  ASSERT_EQ(ranked.exit_code, 0) << ranked.out << ranked.err;
  const auto reply = nlohmann::json::parse(ranked.out.substr(0, ranked.out.find('\n')));
  ASSERT_EQ(reply["entries"].size(), 5u) << ranked.out;
  double previous = -1;
  for (const auto& entry : reply["entries"]) {
    EXPECT_GE(entry.value("distance", 0.0), previous);
    previous = entry.value("distance", 0.0);
    EXPECT_FALSE(entry.value("gallery_path", std::string()).empty());
  }
  // An uploaded image: a gallery image's own bytes rank it first. Gallery
  // paths are relative to the data set (never the server's absolute paths).
  const std::string image = reply["entries"][1]["gallery_path"];
  ASSERT_FALSE(fs::path(image).is_absolute()) << image;
  const std::string image_file = (testing::tiny_domains() / "duke" / image).string();
  auto by_image = run_tandem({"rank", mmt_id, "--image", image_file, "--top", "3", "--json",
                              "--server", deployment.address()},
                             "rank-image");
  ASSERT_EQ(by_image.exit_code, 0) << by_image.out << by_image.err;
  const auto image_reply = nlohmann::json::parse(by_image.out.substr(0, by_image.out.find('\n')));
  ASSERT_EQ(image_reply["entries"].size(), 3u) << by_image.out;
  EXPECT_EQ(image_reply["entries"][0]["gallery_path"], image);
  EXPECT_LT(image_reply["entries"][0].value("distance", 1.0), 1e-3);
}

TEST(JobService, WatchShowsEveryPhaseOfAnMmtEpochAndTheMetrics) {
  Deployment deployment("phases", {/*workers=*/1});
  v1::Job job;
  ASSERT_TRUE(deployment.submit(tiny_spec("mmt", 2, 3), &job).ok());
  const auto events = watch_all(deployment.stub(), job.id());
  std::vector<v1::JobPhase> phases;
  int iterations = 0, epoch_ends = 0, epochs = 0;
  for (const auto& event : events) {
    if (event.has_job() && event.job().state() == v1::RUNNING &&
        (phases.empty() || phases.back() != event.job().phase()) &&
        event.job().phase() != v1::JOB_PHASE_UNSPECIFIED)
      phases.push_back(event.job().phase());
    iterations += event.has_iteration();
    epoch_ends +=
        event.has_iteration() && event.iteration().iteration() == event.iteration().iterations();
    if (event.has_epoch()) {
      ++epochs;
      EXPECT_GT(event.epoch().metrics().map(), 0);
      EXPECT_EQ(event.epoch().values().count("clusters"), 1u);
    }
  }
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().job().state(), v1::SUCCEEDED) << deployment.server_log();
  const std::vector<v1::JobPhase> one_epoch = {v1::EXTRACT, v1::CLUSTER, v1::TRAIN, v1::EVALUATE,
                                               v1::CHECKPOINT};
  std::vector<v1::JobPhase> expected = one_epoch;
  expected.insert(expected.end(), one_epoch.begin(), one_epoch.end());
  EXPECT_EQ(phases, expected);
  // The worker coalesces the iterations it reads at once, but never an
  // epoch's last (jobs::coalesce_iterations, jobs/rank_events.h).
  EXPECT_EQ(epoch_ends, 2);
  EXPECT_GE(iterations, 2);
  EXPECT_LE(iterations, 6);
  EXPECT_EQ(epochs, 2);
}

TEST(JobService, RefusesBadRequestsWithTheRightCodeAndTheField) {
  Deployment deployment("validation", {/*workers=*/1});
  struct Case {
    std::string name;
    std::function<void(v1::JobSpec&)> change;
    grpc::StatusCode code;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"empty root", [](v1::JobSpec& s) { s.mutable_target()->set_root(""); },
       grpc::INVALID_ARGUMENT, "target.root"},
      {"missing root",
       [](v1::JobSpec& s) { s.mutable_target()->set_root("/nonexistent/tandem-data"); },
       grpc::INVALID_ARGUMENT, "target.root"},
      {"negative lr", [](v1::JobSpec& s) { s.set_lr(-0.1); }, grpc::INVALID_ARGUMENT, "lr"},
      {"K above the data set", [](v1::JobSpec& s) { s.set_k(100000); }, grpc::INVALID_ARGUMENT,
       "spec.k"},
      {"unknown kind", [](v1::JobSpec& s) { s.set_kind("finetune"); }, grpc::INVALID_ARGUMENT,
       "kind"},
      {"missing init",
       [](v1::JobSpec& s) {
         s.set_init_1("/nonexistent/model.pt");
         s.set_init_2("/nonexistent/model.pt");
       },
       grpc::INVALID_ARGUMENT, "init_1"},
      {"world size above the workers", [](v1::JobSpec& s) { s.set_world_size(3); },
       grpc::FAILED_PRECONDITION, "world_size"},
      {"world size zero", [](v1::JobSpec& s) { s.set_world_size(0); }, grpc::INVALID_ARGUMENT,
       "world_size"},
  };
  for (const Case& c : cases) {
    v1::JobSpec spec = tiny_spec("mmt", 1, 1);
    c.change(spec);
    v1::Job job;
    const grpc::Status status = deployment.submit(spec, &job);
    EXPECT_EQ(status.error_code(), c.code) << c.name << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(c.field), std::string::npos)
        << c.name << ": " << status.error_message();
  }
  // Nothing was stored.
  grpc::ClientContext list_context;
  v1::ListJobsResponse listed;
  ASSERT_TRUE(deployment.stub().ListJobs(&list_context, v1::ListJobsRequest(), &listed).ok());
  EXPECT_EQ(listed.jobs_size(), 0);

  const auto code_of = [&](auto call) { return call().error_code(); };
  EXPECT_EQ(code_of([&] {
              grpc::ClientContext context;
              v1::GetJobRequest request;
              request.set_id("999");
              v1::Job job;
              return deployment.stub().GetJob(&context, request, &job);
            }),
            grpc::NOT_FOUND);
  EXPECT_EQ(code_of([&] {
              grpc::ClientContext context;
              v1::CancelJobRequest request;
              request.set_id("abc");
              v1::Job job;
              return deployment.stub().CancelJob(&context, request, &job);
            }),
            grpc::NOT_FOUND);
  // A job that has not exported a ranking yet, and an ended job's cancel.
  v1::Job job;
  ASSERT_TRUE(deployment.submit(tiny_spec("pretrain", 1, 1), &job).ok());
  const auto rank_code = code_of([&] {
    grpc::ClientContext context;
    v1::RankRequest request;
    request.set_job_id(job.id());
    request.set_query_index(0);
    v1::RankResponse reply;
    return deployment.stub().Rank(&context, request, &reply);
  });
  EXPECT_EQ(rank_code, grpc::FAILED_PRECONDITION);
  ASSERT_EQ(deployment.wait_until(job.id(), ended).state(), v1::SUCCEEDED);
  EXPECT_EQ(code_of([&] {
              grpc::ClientContext context;
              v1::CancelJobRequest request;
              request.set_id(job.id());
              v1::Job reply;
              return deployment.stub().CancelJob(&context, request, &reply);
            }),
            grpc::FAILED_PRECONDITION);
  EXPECT_EQ(code_of([&] {
              grpc::ClientContext context;
              v1::RankRequest request;
              request.set_job_id(job.id());
              request.set_query_index(1 << 30);
              v1::RankResponse reply;
              return deployment.stub().Rank(&context, request, &reply);
            }),
            grpc::OUT_OF_RANGE);
}

TEST(JobService, CancelStopsTheRanksWithinSecondsAndKeepsTheLastCheckpoint) {
  Deployment deployment("cancel", {/*workers=*/1});
  v1::Job job;
  ASSERT_TRUE(deployment.submit(tiny_spec("mmt", 200, 3), &job).ok());
  const v1::Job running = deployment.wait_until(job.id(), [](const v1::Job& j) {
    return j.state() == v1::RUNNING && !j.checkpoint().empty() && j.phase() == v1::TRAIN;
  });
  ASSERT_FALSE(running.checkpoint().empty());
  const auto start = std::chrono::steady_clock::now();
  auto cancelled = run_tandem({"cancel", job.id(), "--server", deployment.address()}, "cancel");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(cancelled.exit_code, 0) << cancelled.out << cancelled.err;
  const v1::Job after = deployment.get(job.id());
  EXPECT_EQ(after.state(), v1::CANCELLED);
  EXPECT_LT(seconds, 10.0);
  EXPECT_TRUE(fs::exists(after.checkpoint()));
  EXPECT_LT(after.epoch(), 199);
}

/// Long enough (a fraction of a second per epoch) to be caught mid-job.
constexpr int kEpochs = 16;

/// Past its first checkpoint and far from its end, or ended (too soon).
bool mid_job(const v1::Job& j) {
  return ended(j) || (j.state() == v1::RUNNING && !j.checkpoint().empty() && j.epoch() >= 1 &&
                      j.epoch() < kEpochs / 2);
}

TEST(JobService, ServerKilledMidJobLosesNothingAndTheJobFinishesAfterARestart) {
  Deployment deployment("server-kill", {/*workers=*/1});
  v1::Job job;
  ASSERT_TRUE(deployment.submit(tiny_spec("mmt", kEpochs, 3), &job).ok());
  const v1::Job running = deployment.wait_until(job.id(), mid_job);
  ASSERT_EQ(running.state(), v1::RUNNING) << "the job ended before the kill";
  // A watcher follows the job across the restart (it reconnects).
  const auto watcher = testing::spawn_tandem(
      {"watch", job.id(), "--json", "--server", deployment.address()}, "server-kill-watch");
  for (int i = 0; i < 300 && fs::file_size(watcher.stdout_path) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GT(fs::file_size(watcher.stdout_path), 0u) << "the watcher never got the job";
  deployment.kill_server();
  deployment.start_server();
  const v1::Job finished = deployment.wait_until(job.id(), ended);
  EXPECT_EQ(finished.state(), v1::SUCCEEDED) << finished.error() << deployment.server_log();
  EXPECT_EQ(finished.metrics_size(), kEpochs) << "every epoch's metrics, kept across the restart";
  const auto watched = testing::wait_for(watcher, std::chrono::seconds(60));
  EXPECT_EQ(watched.exit_code, 0) << watched.err;
  EXPECT_NE(watched.err.find("lost the server"), std::string::npos) << watched.err;
  EXPECT_NE(watched.err.find("reconnected"), std::string::npos) << watched.err;
  EXPECT_NE(watched.out.find("\"SUCCEEDED\""), std::string::npos) << watched.out;
  EXPECT_NE(deployment.server_log().find("queued again"), std::string::npos);
  const std::string rank_log =
      testing::read_file(finished.spec().output_dir() + "/ranks/rank-0.log");
  EXPECT_NE(rank_log.find("resuming from"), std::string::npos) << rank_log;
}

TEST(JobService, AWorkerKilledMidEpochRestartsTheJobOnTheOtherWorker) {
  Deployment deployment("worker-kill", {/*workers=*/2});
  v1::Job job;
  // 8 iterations: each epoch's train phase outlasts the 100 ms poll (with 3,
  // a quiet machine finished the job between polls of a train phase).
  ASSERT_TRUE(deployment.submit(tiny_spec("mmt", kEpochs, 8), &job).ok());
  const v1::Job running = deployment.wait_until(job.id(), [](const v1::Job& j) {
    return ended(j) || (mid_job(j) && j.phase() == v1::TRAIN);
  });
  ASSERT_EQ(running.state(), v1::RUNNING) << "the job ended before the kill";
  ASSERT_EQ(running.workers_size(), 1);
  const size_t index = running.workers(0) == "w0" ? 0 : 1;
  deployment.kill_worker(index);
  const v1::Job finished = deployment.wait_until(job.id(), ended);
  EXPECT_EQ(finished.state(), v1::SUCCEEDED) << finished.error() << deployment.server_log();
  ASSERT_EQ(finished.workers_size(), 1);
  EXPECT_NE(finished.workers(0), running.workers(0));
  EXPECT_NE(deployment.server_log().find("lost"), std::string::npos);
  const std::string rank_log =
      testing::read_file(finished.spec().output_dir() + "/ranks/rank-0.log");
  EXPECT_NE(rank_log.find("resuming from"), std::string::npos) << rank_log;
}

TEST(JobService, AJobThatCanNeverBePlacedDoesNotHoldTheQueueAndFailsAfterTheGrace) {
  // Issue 20's report: a 64-rank job submitted before any worker registered
  // (SubmitJob cannot refuse it yet), then two workers and two 1-rank jobs.
  Deployment::Options options;
  options.workers = 0;
  options.server_args = {"--unplaceable-timeout", "15"};
  Deployment deployment("unplaceable", options);
  v1::JobSpec big_spec = tiny_spec("pretrain", 1, 2);
  big_spec.set_world_size(64);
  v1::Job big;
  const grpc::Status accepted = deployment.submit(big_spec, &big);
  ASSERT_TRUE(accepted.ok()) << accepted.error_message();
  deployment.start_worker();
  deployment.start_worker();
  deployment.wait_for_workers(2);
  v1::Job small[2];
  for (auto& job : small) ASSERT_TRUE(deployment.submit(tiny_spec("pretrain", 1, 2), &job).ok());

  // `tandem status` says why the big job waits, in the list and for the job.
  const v1::Job waiting = deployment.wait_until(big.id(), [](const v1::Job& j) {
    return ended(j) || j.waiting_reason() == "waiting for 64 slots, 2 registered";
  });
  ASSERT_EQ(waiting.state(), v1::QUEUED) << waiting.error();
  auto listed = run_tandem({"status", "--server", deployment.address()}, "status-list");
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_NE(listed.out.find("WAITING"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("waiting for 64 slots, 2 registered"), std::string::npos) << listed.out;
  auto shown = run_tandem({"status", big.id(), "--server", deployment.address()}, "status-job");
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find("waiting:"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("waiting for 64 slots, 2 registered"), std::string::npos) << shown.out;

  for (const auto& job : small) {
    const v1::Job finished = deployment.wait_until(job.id(), ended);
    EXPECT_EQ(finished.state(), v1::SUCCEEDED) << finished.error();
  }
  const v1::Job failed = deployment.wait_until(big.id(), ended);
  ASSERT_EQ(failed.state(), v1::FAILED);
  EXPECT_NE(
      failed.error().find("world_size 64 exceeds the deployment's capacity: at most 2 slot(s)"),
      std::string::npos)
      << failed.error();
  EXPECT_GE(failed.finished_ms() - failed.created_ms(), 15000) << "failed before the grace";
  EXPECT_EQ(failed.started_ms(), 0) << "it never ran";
}

TEST(JobService, AWorkerWithTwoSlotsRunsBothRanksOfAJobWithLocalRanks) {
  Deployment::Options options;
  options.workers = 1;
  options.worker_args = {"--slots", "2"};
  Deployment deployment("slots", options);
  EXPECT_NE(deployment.server_log().find("0 GPUs, 2 slots)"), std::string::npos)
      << deployment.server_log();
  v1::JobSpec spec = tiny_spec("pretrain", 1, 2);
  spec.set_world_size(2);
  spec.set_device("cpu");
  v1::Job job;
  ASSERT_TRUE(deployment.submit(spec, &job).ok());
  const v1::Job done = deployment.wait_until(job.id(), ended);
  ASSERT_EQ(done.state(), v1::SUCCEEDED) << done.error() << deployment.server_log();
  ASSERT_EQ(done.workers_size(), 2);
  EXPECT_EQ(done.workers(0), "w0#0");
  EXPECT_EQ(done.workers(1), "w0#1");
  const std::string worker_log = deployment.worker_log(0);
  EXPECT_NE(worker_log.find("rank 0 of 2 started in slot 0"), std::string::npos) << worker_log;
  EXPECT_NE(worker_log.find("rank 1 of 2 started in slot 1"), std::string::npos) << worker_log;
  EXPECT_TRUE(fs::exists(done.spec().output_dir() + "/ranks/rank-1.log"));
}

TEST(WorkerCommand, DeviceCudaWithoutAGpuIsAUsageErrorNamingWhatIsMissing) {
  const auto cuda =
      run_tandem({"worker", "--device", "cuda", "--server", "127.0.0.1:1"}, "worker-cuda");
  EXPECT_EQ(cuda.exit_code, 2) << cuda.out << cuda.err;
  EXPECT_NE(cuda.err.find("tandem worker: --device cuda, but "), std::string::npos) << cuda.err;
  const auto gpus = run_tandem({"worker", "--gpus", "2", "--server", "127.0.0.1:1"}, "worker-gpus");
  EXPECT_EQ(gpus.exit_code, 2);
  EXPECT_NE(gpus.err.find("--gpus 2 needs --device cuda"), std::string::npos) << gpus.err;
}

TEST(JobService, ThirtyTwoConcurrentWatchersAndPollersWhileAJobTrains) {
  Deployment deployment("clients", {/*workers=*/1});
  v1::Job job;
  ASSERT_TRUE(deployment.submit(tiny_spec("mmt", 2, 6), &job).ok());
  std::atomic<int> finished_watchers{0}, good_polls{0}, bad_polls{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 32; ++i) {
    clients.emplace_back([&, i] {
      auto channel = grpc::CreateChannel(deployment.address(), grpc::InsecureChannelCredentials());
      auto stub = v1::Tandem::NewStub(channel);
      if (i % 2 == 0) {
        const auto events = watch_all(*stub, job.id(), 2);
        if (!events.empty() && events.back().has_job() &&
            events.back().job().state() == v1::SUCCEEDED)
          ++finished_watchers;
        return;
      }
      while (true) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        v1::GetJobRequest request;
        request.set_id(job.id());
        v1::Job reply;
        if (!stub->GetJob(&context, request, &reply).ok()) {
          ++bad_polls;
          return;
        }
        ++good_polls;
        if (ended(reply)) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_EQ(finished_watchers.load(), 16);
  EXPECT_EQ(bad_polls.load(), 0);
  EXPECT_GT(good_polls.load(), 16);
  EXPECT_EQ(deployment.get(job.id()).state(), v1::SUCCEEDED);
}

}  // namespace
}  // namespace tandem::cli
