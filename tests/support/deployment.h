// Test support: a real Tandem deployment on loopback, as separate processes
// of the `tandem` binary (server, workers, optionally a clustering service),
// with a gRPC stub of tandem.v1.Tandem to drive and observe it.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/run_tandem.h"
#include "tandem/client/health_client.h"
#include "tandem/jobs/launcher.h"
#include "tandem/v1/tandem.grpc.pb.h"

namespace tandem::cli::testing {

namespace v1 = tandem::v1;

/// Two tiny synthetic domains (market-style source, duke-style target),
/// rendered once per test binary: 16 ids, 3 cameras, 32 × 16 images.
inline std::filesystem::path tiny_domains() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path d = scratch_path("service-data");
    std::filesystem::remove_all(d);
    for (const auto& [domain, seed] :
         {std::pair<std::string, std::string>{"market", "3"}, {"duke", "4"}}) {
      auto synth = run_tandem({"synth", "--out", (d / domain).string(), "--domain", domain, "--ids",
                               "16", "--cameras", "3", "--seed", seed, "--images-per-camera", "3",
                               "--height", "32", "--width", "16", "--quiet"},
                              "service-synth-" + domain);
      EXPECT_EQ(synth.exit_code, 0) << synth.err;
    }
    return d;
  }();
  return dir;
}

/// Server + workers (+ clustering service) as child processes.
class Deployment {
 public:
  struct Options {
    int workers = 1;
    bool clustering_service = false;
    double heartbeat_timeout = 3;
    int max_restarts = 3;
    /// More `tandem server` flags.
    std::vector<std::string> server_args = {};
    /// More `tandem worker` flags (every worker).
    std::vector<std::string> worker_args = {};
  };

  Deployment(const std::string& name, Options options) : name_(name), options_(options) {
    dir_ = scratch_path("deploy-" + name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    address_ = "127.0.0.1:" + std::to_string(jobs::free_loopback_port());
    if (options_.clustering_service) {
      clustering_address_ = "127.0.0.1:" + std::to_string(jobs::free_loopback_port());
      clustering_ = spawn_tandem({"cluster", "--listen", clustering_address_}, name + "-cluster");
      EXPECT_TRUE(client::wait_until_serving(clustering_address_, std::chrono::seconds(30)).ok());
    }
    start_server();
    for (int i = 0; i < options_.workers; ++i) start_worker();
    wait_for_workers(options_.workers);
  }

  ~Deployment() {
    for (auto& worker : workers_) stop(worker);
    stop(server_);
    stop(clustering_);
    std::filesystem::remove_all(dir_);
  }

  void start_server() {
    std::vector<std::string> args = {
        "server", "--listen", address_, "--db", (dir_ / "tandem.db").string(), "--jobs-dir",
        (dir_ / "jobs").string(), "--heartbeat", "0.2", "--heartbeat-timeout",
        std::to_string(options_.heartbeat_timeout), "--max-restarts",
        std::to_string(options_.max_restarts), "--rank-timeout", "30",
        // The data sets and the scratch folder
        // (weights a test wrote) may be read.
        "--data-root", tiny_domains().string(), "--data-root", dir_.string()};
    args.insert(args.end(), options_.server_args.begin(), options_.server_args.end());
    if (!clustering_address_.empty()) {
      args.push_back("--clustering");
      args.push_back(clustering_address_);
    }
    server_ = spawn_tandem(args, name_ + "-server-" + std::to_string(server_starts_++));
    const auto ready = client::wait_until_serving(address_, std::chrono::seconds(30));
    EXPECT_TRUE(ready.ok()) << ready;
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    stub_ = v1::Tandem::NewStub(channel_);
  }

  /// Starts one more worker; returns its index.
  size_t start_worker() {
    const size_t index = workers_.size();
    std::vector<std::string> args = {
        "worker",    "--server", address_,  "--name", "w" + std::to_string(index),
        "--threads", "1",        "--grace", "5"};
    args.insert(args.end(), options_.worker_args.begin(), options_.worker_args.end());
    workers_.push_back(spawn_tandem(args, name_ + "-worker-" + std::to_string(index)));
    return index;
  }

  /// kill -9 of the server; returns once it is gone.
  void kill_server() { kill9(server_); }
  void kill_worker(size_t index) { kill9(workers_[index]); }

  /// Waits until the server's log says `count` workers registered since it started.
  void wait_for_workers(int count, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (registered_workers() >= count) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "only " << registered_workers() << " of " << count << " workers registered:\n"
                  << read_file(server_.stdout_path);
  }

  /// What worker `index` printed so far.
  std::string worker_log(size_t index) const { return read_file(workers_.at(index).stdout_path); }

  int registered_workers() const {
    const std::string log = read_file(server_.stdout_path);
    int count = 0;
    for (size_t at = log.find(" registered ("); at != std::string::npos;
         at = log.find(" registered (", at + 1))
      ++count;
    return count;
  }

  v1::Tandem::Stub& stub() { return *stub_; }
  const std::string& address() const { return address_; }
  const std::filesystem::path& dir() const { return dir_; }
  std::string server_log() const { return read_file(server_.stdout_path); }

  /// Submits `spec`; the call's status and the job.
  grpc::Status submit(const v1::JobSpec& spec, v1::Job* job) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    return stub_->SubmitJob(&context, request, job);
  }

  v1::Job get(const std::string& id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::GetJobRequest request;
    request.set_id(id);
    v1::Job job;
    const grpc::Status status = stub_->GetJob(&context, request, &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }

  /// Polls GetJob until `done(job)` or the timeout; returns the last job.
  v1::Job wait_until(const std::string& id, const std::function<bool(const v1::Job&)>& done,
                     std::chrono::seconds timeout = std::chrono::seconds(240)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    v1::Job job;
    while (std::chrono::steady_clock::now() < deadline) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      v1::GetJobRequest request;
      request.set_id(id);
      if (stub_->GetJob(&context, request, &job).ok() && done(job)) return job;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "job " << id << " timed out in state " << v1::JobState_Name(job.state())
                  << "\nserver:\n"
                  << server_log();
    return job;
  }

 private:
  static void kill9(Child& child) {
    if (child.pid <= 0) return;
    ::kill(child.pid, SIGKILL);
    wait_for(child, std::chrono::seconds(10));
    child.pid = -1;
  }
  static void stop(Child& child) {
    if (child.pid <= 0) return;
    ::kill(child.pid, SIGTERM);
    wait_for(child, std::chrono::seconds(30));
    child.pid = -1;
  }

  std::string name_;
  Options options_;
  std::filesystem::path dir_;
  std::string address_;
  std::string clustering_address_;
  int server_starts_ = 0;
  Child server_;
  Child clustering_;
  std::vector<Child> workers_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Tandem::Stub> stub_;
};

/// A tiny re-ID job spec on tiny_domains(): pretrain on the market-style
/// source evaluated on the duke-style target, or mmt on the target.
inline v1::JobSpec tiny_spec(const std::string& kind, int64_t epochs, int64_t iters) {
  v1::JobSpec spec;
  spec.set_kind(kind);
  spec.set_seed(1);
  if (kind == "pretrain") {
    spec.mutable_source()->set_kind("market1501");
    spec.mutable_source()->set_root((tiny_domains() / "market").string());
    spec.set_warmup_epochs(0);
  }
  spec.mutable_target()->set_kind("market1501");
  spec.mutable_target()->set_root((tiny_domains() / "duke").string());
  spec.set_backbone("small");
  spec.set_backbone_width(4);
  spec.set_height(32);
  spec.set_width(16);
  spec.set_identities(4);
  spec.set_instances(4);
  spec.set_epochs(epochs);
  spec.set_iters(iters);
  spec.set_loader_threads(1);
  spec.set_lr(0.001);
  if (kind == "mmt") {
    spec.set_clustering("kmeans");
    spec.set_k(8);
    spec.set_bn_group_size(4);
  }
  return spec;
}

}  // namespace tandem::cli::testing
