// The client subcommands (submit, status, watch, cancel, delete, rank), run as the
// real `tandem` binary against CannedTandemService: a test double of the
// server's replies (canned jobs, events and rankings, and a record of what
// it was sent). It tests the client only; the real service has its own
// end-to-end tests.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <tandem/v1/tandem.grpc.pb.h>

#include "support/run_tandem.h"
#include "tandem/server/grpc_server.h"
#include "tandem/spec/job_spec.h"

namespace tandem::client {
namespace {

namespace testing = ::tandem::cli::testing;

using cli::testing::run_tandem;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Test double of the tandem.v1.Tandem service's replies. Jobs: job-ok (an
/// MMT job of two epochs that succeeds), job-fail (fails in epoch 1),
/// job-slow (answers GetJob after 3 s), job-locked (GetJob: UNAUTHENTICATED
/// without a token, PERMISSION_DENIED with one); anything else is NOT_FOUND.
/// ListJobs records the authorization metadata it was sent.
class CannedTandemService final : public v1::Tandem::Service {
 public:
  grpc::Status SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest* request,
                         v1::Job* reply) override {
    std::lock_guard<std::mutex> lock(mutex_);
    submitted_.push_back(*request);
    *reply = job("job-ok", v1::QUEUED);
    *reply->mutable_spec() = request->spec();
    return grpc::Status::OK;
  }

  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::Job* reply) override {
    if (request->id() == "job-slow") std::this_thread::sleep_for(std::chrono::seconds(3));
    if (request->id() == "job-locked") {
      if (authorization_of(*context).empty()) {
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no bearer token");
      }
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          "role worker may not call GetJob (needs read)");
    }
    if (request->id() == "job-ok") {
      *reply = job("job-ok", v1::RUNNING);
      reply->set_owner("alice");
    } else if (request->id() == "job-fail")
      *reply = job("job-fail", v1::RUNNING);
    else if (request->id() == "job-slow")
      *reply = job("job-slow", v1::RUNNING);
    else
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job '" + request->id() + "' not found");
    return grpc::Status::OK;
  }

  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* reply) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      listed_.push_back(*request);
      authorizations_.push_back(authorization_of(*context));
    }
    v1::Job running = job("job-run", v1::RUNNING);
    running.set_phase(v1::CLUSTER);
    running.set_epoch(3);
    add_metrics(running, 2, 45.6);
    *reply->add_jobs() = running;
    v1::Job done = job("job-pre", v1::SUCCEEDED);
    done.mutable_spec()->set_kind("pretrain");
    done.mutable_spec()->set_epochs(80);
    add_metrics(done, 79, 30.2);
    *reply->add_jobs() = done;
    return grpc::Status::OK;
  }

  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest* request,
                         v1::Job* reply) override {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_.push_back(request->id());
    if (request->id() != "job-ok") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "job " + request->id() + " already ended");
    }
    *reply = job("job-ok", v1::CANCELLED);
    return grpc::Status::OK;
  }

  grpc::Status DeleteJob(grpc::ServerContext*, const v1::DeleteJobRequest* request,
                         v1::DeleteJobResponse* reply) override {
    std::lock_guard<std::mutex> lock(mutex_);
    deleted_.push_back(request->id());
    if (request->id() == "job-ok") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "job job-ok is RUNNING; cancel it first");
    }
    if (request->id() != "job-done" && request->id() != "job-bare") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job '" + request->id() + "' not found");
    }
    reply->set_id(request->id());
    if (request->id() == "job-done") reply->set_removed_output_dir("/srv/jobs/job-done");
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext*, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override {
    for (const auto& event : events_of(request->id())) writer->Write(event);
    return grpc::Status::OK;
  }

  grpc::Status Rank(grpc::ServerContext*, const v1::RankRequest* request,
                    v1::RankResponse* reply) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ranked_.push_back(*request);
    }
    const int64_t ids[] = {7, 9, 7};
    for (int i = 0; i < 3; ++i) {
      auto* entry = reply->add_entries();
      entry->set_gallery_path("bounding_box_test/" + std::to_string(ids[i]) + "_c" +
                              std::to_string(i + 2) + ".jpg");
      entry->set_person_id(ids[i]);
      entry->set_camera_id(i + 2);
      entry->set_distance(0.5 + 0.1 * i);
    }
    if (request->query_case() == v1::RankRequest::kQueryIndex) {
      reply->set_query_person_id(7);
      reply->set_query_camera_id(1);
    }
    return grpc::Status::OK;
  }

  /// The events WatchJob streams for `id`.
  static std::vector<v1::JobEvent> events_of(const std::string& id) {
    std::vector<v1::JobEvent> events;
    const auto add_job = [&](v1::JobState state, v1::JobPhase phase, int64_t epoch) {
      v1::JobEvent event;
      *event.mutable_job() = job(id, state);
      event.mutable_job()->set_phase(phase);
      event.mutable_job()->set_epoch(epoch);
      events.push_back(event);
      return events.back().mutable_job();
    };
    const auto add_iteration = [&](int64_t epoch, int64_t i) {
      v1::JobEvent event;
      auto* it = event.mutable_iteration();
      it->set_epoch(epoch);
      it->set_iteration(i);
      it->set_iterations(4);
      it->set_images_per_second(256);
      it->set_eta_seconds(4 - i);
      (*it->mutable_losses())["ce"] = 1.5 / i;
      (*it->mutable_losses())["soft_tri"] = 0.25;
      events.push_back(event);
    };
    if (id == "job-ok") {
      add_job(v1::QUEUED, v1::JOB_PHASE_UNSPECIFIED, 0);
      for (int64_t epoch = 0; epoch < 2; ++epoch) {
        add_job(v1::RUNNING, v1::TRAIN, epoch);
        for (int64_t i = 1; i <= 4; ++i) add_iteration(epoch, i);
        v1::JobEvent summary;
        summary.mutable_epoch()->set_epoch(epoch);
        (*summary.mutable_epoch()->mutable_values())["clusters"] = 700 + epoch;
        auto* m = summary.mutable_epoch()->mutable_metrics();
        m->set_epoch(epoch);
        m->set_map(30.5 + 10 * epoch);
        m->set_rank1(60 + epoch);
        events.push_back(summary);
      }
      auto* done = add_job(v1::SUCCEEDED, v1::JOB_PHASE_UNSPECIFIED, 1);
      add_metrics(*done, 0, 30.5);
      add_metrics(*done, 1, 40.5);
    } else if (id == "job-fail") {
      add_job(v1::RUNNING, v1::TRAIN, 0);
      add_iteration(0, 1);
      v1::JobEvent error;
      error.set_error("rank 1: CUDA out of memory");
      events.push_back(error);
      add_job(v1::FAILED, v1::TRAIN, 0)->set_error("rank 1 died: CUDA out of memory");
    }
    return events;
  }

  static v1::Job job(const std::string& id, v1::JobState state) {
    v1::Job job;
    job.set_id(id);
    job.mutable_spec()->set_kind("mmt");
    job.mutable_spec()->set_epochs(id == "job-run" ? 40 : 2);
    job.set_state(state);
    static const int64_t created_ms = now_ms() - 90 * 1000;
    job.set_created_ms(created_ms);
    return job;
  }

  static void add_metrics(v1::Job& job, int64_t epoch, double map) {
    auto* m = job.add_metrics();
    m->set_epoch(epoch);
    m->set_map(map);
    m->set_rank1(map + 20);
  }

  std::vector<v1::SubmitJobRequest> submitted() {
    std::lock_guard<std::mutex> lock(mutex_);
    return submitted_;
  }
  std::vector<v1::ListJobsRequest> listed() {
    std::lock_guard<std::mutex> lock(mutex_);
    return listed_;
  }
  std::vector<std::string> cancelled() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cancelled_;
  }
  std::vector<v1::RankRequest> ranked() {
    std::lock_guard<std::mutex> lock(mutex_);
    return ranked_;
  }
  std::vector<std::string> deleted() {
    std::lock_guard<std::mutex> lock(mutex_);
    return deleted_;
  }
  /// The `authorization` metadata of each ListJobs call ("" when absent).
  std::vector<std::string> authorizations() {
    std::lock_guard<std::mutex> lock(mutex_);
    return authorizations_;
  }

 private:
  static std::string authorization_of(const grpc::ServerContext& context) {
    const auto& metadata = context.client_metadata();
    const auto it = metadata.find("authorization");
    return it == metadata.end() ? "" : std::string(it->second.data(), it->second.size());
  }

  std::mutex mutex_;
  std::vector<v1::SubmitJobRequest> submitted_;
  std::vector<v1::ListJobsRequest> listed_;
  std::vector<std::string> cancelled_;
  std::vector<v1::RankRequest> ranked_;
  std::vector<std::string> deleted_;
  std::vector<std::string> authorizations_;
};

class ClientCommands : public ::testing::Test {
 protected:
  void SetUp() override {
    server::GrpcOptions options;
    options.address = "127.0.0.1:0";
    auto created = server::GrpcServer::Create(options, {&service_});
    ASSERT_TRUE(created.ok()) << created.status();
    server_ = std::move(*created);
    target_ = server_->target();
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::milliseconds(500));
  }

  /// `tandem args... --server TARGET`.
  testing::Finished tandem(std::vector<std::string> args, const std::string& tag) {
    args.push_back("--server");
    args.push_back(target_);
    return run_tandem(args, "client-" + tag);
  }

  CannedTandemService service_;
  std::unique_ptr<server::GrpcServer> server_;
  std::string target_;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

const char* const kSpec = R"(kind: mmt
output_dir: runs/duke-mmt
target: {kind: dukemtmc, root: /data/duke}
init_1: runs/pre-1/model.pt
init_2: runs/pre-2/model.pt
identities: 16
lr: 3.5e-4
milestones: [10, 20]
camera_standardise: true
)";

TEST_F(ClientCommands, SubmitSendsTheSpecFieldsAndPrintsTheId) {
  const std::string spec = testing::scratch_path("submit.yaml");
  testing::write_file(spec, kSpec);
  const auto result = tandem({"submit", spec, "--world-size", "2"}, "submit");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "job-ok\n");
  const auto submitted = service_.submitted();
  ASSERT_EQ(submitted.size(), 1u);
  v1::JobSpec expected = tandem::spec::read_job_spec_file(spec);
  expected.set_world_size(2);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(submitted[0].spec(), expected))
      << submitted[0].spec().ShortDebugString();
  EXPECT_EQ(submitted[0].spec().target().root(), "/data/duke");
  EXPECT_EQ(submitted[0].spec().milestones_size(), 2);
  EXPECT_FALSE(submitted[0].spec().has_epochs());  // absent stays absent
  std::filesystem::remove(spec);
}

TEST_F(ClientCommands, SubmitRefusesABadSpecNamingTheField) {
  const std::string spec = testing::scratch_path("submit-bad.yaml");
  testing::write_file(spec, "kind: mmt\nidentites: 16\n");
  const auto result = tandem({"submit", spec}, "submit-bad");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(contains(result.err, "tandem submit: " + spec + ":2: spec.identites is not a field"))
      << result.err;
  EXPECT_TRUE(service_.submitted().empty());
  std::filesystem::remove(spec);
}

TEST_F(ClientCommands, SubmitWithWatchFollowsTheJobAsJson) {
  const std::string spec = testing::scratch_path("submit-watch.yaml");
  testing::write_file(spec, kSpec);
  const auto result = tandem({"submit", spec, "--watch", "--json"}, "submit-watch");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  const auto lines = lines_of(result.out);
  ASSERT_EQ(lines.size(), 1 + CannedTandemService::events_of("job-ok").size()) << result.out;
  v1::Job job;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[0], &job).ok()) << lines[0];
  EXPECT_EQ(job.id(), "job-ok");
  EXPECT_EQ(job.state(), v1::QUEUED);
  std::filesystem::remove(spec);
}

TEST_F(ClientCommands, StatusJsonParses) {
  auto result =
      tandem({"status", "--json", "--state", "running,failed", "--state", "QUEUED", "--limit", "5"},
             "status-json");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  ASSERT_EQ(lines_of(result.out).size(), 1u) << result.out;
  v1::ListJobsResponse response;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(result.out, &response).ok())
      << result.out;
  ASSERT_EQ(response.jobs_size(), 2);
  EXPECT_EQ(response.jobs(0).id(), "job-run");
  EXPECT_EQ(response.jobs(0).phase(), v1::CLUSTER);
  const auto listed = service_.listed();
  ASSERT_EQ(listed.size(), 1u);
  ASSERT_EQ(listed[0].states_size(), 3);
  EXPECT_EQ(listed[0].states(0), v1::RUNNING);
  EXPECT_EQ(listed[0].states(1), v1::FAILED);
  EXPECT_EQ(listed[0].states(2), v1::QUEUED);
  EXPECT_EQ(listed[0].limit(), 5);

  result = tandem({"status", "job-ok", "--json"}, "status-job-json");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  v1::Job job;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(result.out, &job).ok()) << result.out;
  EXPECT_EQ(job.id(), "job-ok");
  EXPECT_EQ(job.state(), v1::RUNNING);
}

TEST_F(ClientCommands, StatusPrintsATableOfTheJobs) {
  const auto result = tandem({"status"}, "status-table");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  const auto lines = lines_of(result.out);
  ASSERT_EQ(lines.size(), 3u) << result.out;
  std::istringstream header(lines[0]);
  std::vector<std::string> columns;
  for (std::string c; header >> c;) columns.push_back(c);
  EXPECT_EQ(columns,
            (std::vector<std::string>{"ID", "KIND", "STATE", "PHASE", "EPOCH", "mAP", "AGE"}));
  std::istringstream running(lines[1]);
  std::vector<std::string> cells;
  for (std::string c; running >> c;) cells.push_back(c);
  ASSERT_EQ(cells.size(), 7u) << lines[1];
  EXPECT_EQ(std::vector<std::string>(cells.begin(), cells.end() - 1),
            (std::vector<std::string>{"job-run", "mmt", "RUNNING", "cluster", "4/40", "45.6"}))
      << lines[1];
  EXPECT_TRUE(std::regex_match(cells.back(), std::regex("[0-9]+(s|m)"))) << lines[1];
  EXPECT_TRUE(contains(lines[2], "job-pre")) << lines[2];
  EXPECT_TRUE(contains(lines[2], "80/80")) << lines[2];
}

TEST_F(ClientCommands, StatusOfOneJobAndUnknownJob) {
  auto result = tandem({"status", "job-ok"}, "status-one");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(contains(result.out, "state:")) << result.out;
  EXPECT_TRUE(contains(result.out, "RUNNING")) << result.out;
  EXPECT_TRUE(std::regex_search(result.out, std::regex("owner: +alice\n"))) << result.out;
  result = tandem({"status", "job-nope"}, "status-nope");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, "tandem status: NOT_FOUND: job 'job-nope' not found\n");
  result = tandem({"status", "--state", "sleeping"}, "status-bad-state");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(contains(result.err, "tandem status: --state sleeping: not a job state"))
      << result.err;
}

TEST_F(ClientCommands, WatchExitsZeroWhenTheJobSucceeded) {
  const auto result = tandem({"watch", "job-ok"}, "watch-ok");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  // Not a terminal: plain lines, the epochs' summaries and the mAP history.
  EXPECT_EQ(result.out.find('\r'), std::string::npos);
  EXPECT_TRUE(contains(result.out, "epoch 1/2  4/4  ce 0.375  soft_tri 0.250  256 img/s"))
      << result.out;
  EXPECT_TRUE(contains(result.out, "epoch 1/2  clusters 700  |  mAP 30.5  rank-1 60.0"))
      << result.out;
  EXPECT_TRUE(contains(result.out, "mAP by epoch: 1:30.5 2:40.5  (best 40.5 at epoch 2)"))
      << result.out;
  EXPECT_TRUE(contains(result.out, "job job-ok SUCCEEDED: mAP 40.5  rank-1 60.5\n")) << result.out;
}

TEST_F(ClientCommands, WatchExitsOneWithTheErrorWhenTheJobFailed) {
  const auto result = tandem({"watch", "job-fail"}, "watch-fail");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(contains(result.err, "error: rank 1: CUDA out of memory")) << result.err;
  EXPECT_TRUE(
      contains(result.err, "tandem watch: job job-fail FAILED: rank 1 died: CUDA out of memory"))
      << result.err;
}

TEST_F(ClientCommands, WatchJsonPrintsOneEventPerLine) {
  const auto result = tandem({"watch", "job-fail", "--json"}, "watch-json");
  EXPECT_EQ(result.exit_code, 1);
  const auto lines = lines_of(result.out);
  const auto events = CannedTandemService::events_of("job-fail");
  ASSERT_EQ(lines.size(), events.size()) << result.out;
  for (size_t i = 0; i < lines.size(); ++i) {
    v1::JobEvent event;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[i], &event).ok()) << lines[i];
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(event, events[i])) << lines[i];
  }
}

TEST_F(ClientCommands, WatchOfAnUnknownJobIsNotFound) {
  const auto result = tandem({"watch", "job-nope"}, "watch-nope");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, "tandem watch: NOT_FOUND: job 'job-nope' not found\n");
}

TEST_F(ClientCommands, CancelSendsTheId) {
  auto result = tandem({"cancel", "job-ok"}, "cancel");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "job job-ok: CANCELLED\n");
  result = tandem({"cancel", "job-done"}, "cancel-done");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, "tandem cancel: FAILED_PRECONDITION: job job-done already ended\n");
  EXPECT_EQ(service_.cancelled(), (std::vector<std::string>{"job-ok", "job-done"}));
}

TEST_F(ClientCommands, DeleteSendsTheIdAndPrintsTheRemovedFolder) {
  auto result = tandem({"delete", "job-done"}, "delete");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "deleted job job-done (removed /srv/jobs/job-done)\n");
  result = tandem({"delete", "job-bare"}, "delete-bare");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "deleted job job-bare\n");
  result = tandem({"delete", "job-done", "--json"}, "delete-json");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  v1::DeleteJobResponse response;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(result.out, &response).ok())
      << result.out;
  EXPECT_EQ(response.id(), "job-done");
  EXPECT_EQ(response.removed_output_dir(), "/srv/jobs/job-done");
  result = tandem({"delete", "job-ok"}, "delete-running");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err,
            "tandem delete: FAILED_PRECONDITION: job job-ok is RUNNING; cancel it first\n");
  EXPECT_EQ(service_.deleted(),
            (std::vector<std::string>{"job-done", "job-bare", "job-done", "job-ok"}));
}

TEST_F(ClientCommands, TokenFlagAndEnvironmentArriveAsBearerMetadata) {
  auto result = tandem({"status", "--json"}, "no-token");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  result = tandem({"status", "--json", "--token", "flag-token-0123456789"}, "token-flag");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  ::setenv("TANDEM_TOKEN", "env-token-0123456789", 1);
  result = tandem({"status", "--json"}, "token-env");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  // The flag wins over the environment.
  result = tandem({"status", "--json", "--token", "flag-token-0123456789"}, "token-both");
  ::unsetenv("TANDEM_TOKEN");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(service_.authorizations(), (std::vector<std::string>{"", "Bearer flag-token-0123456789",
                                                                 "Bearer env-token-0123456789",
                                                                 "Bearer flag-token-0123456789"}));
}

TEST_F(ClientCommands, UnauthenticatedAndPermissionDeniedSayWhy) {
  auto result = tandem({"status", "job-locked"}, "unauthenticated");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err, "tandem status: UNAUTHENTICATED: the server at " + target_ +
                            " refused the call: no bearer token. Give a token with --token or "
                            "TANDEM_TOKEN\n");
  result = tandem({"status", "job-locked", "--token", "worker-token-0123456789"}, "denied");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err,
            "tandem status: PERMISSION_DENIED: role worker may not call GetJob (needs read)\n");
}

TEST_F(ClientCommands, AnUnreadableTlsFileFailsNamingTheFlag) {
  const std::string missing = testing::scratch_path("no-such-ca.pem");
  std::filesystem::remove(missing);
  auto result = tandem({"status", "--tls-ca", missing}, "tls-ca-missing");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(contains(result.err, "tandem status: --tls-ca")) << result.err;
  EXPECT_TRUE(contains(result.err, missing)) << result.err;
  // From the environment too, for every command, before any call.
  ::setenv("TANDEM_TLS_CA", missing.c_str(), 1);
  result = tandem({"delete", "job-done"}, "tls-ca-env");
  ::unsetenv("TANDEM_TLS_CA");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(contains(result.err, "tandem delete: --tls-ca")) << result.err;
  const std::string cert = testing::scratch_path("client-cert.pem");
  testing::write_file(cert, "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n");
  result = tandem({"status", "--tls-cert", cert}, "tls-cert-without-key");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(contains(result.err, "--tls-key")) << result.err;
  std::filesystem::remove(cert);
  EXPECT_TRUE(service_.listed().empty());
  EXPECT_TRUE(service_.deleted().empty());
}

TEST_F(ClientCommands, RankMarksEntriesRightOrWrong) {
  const auto result = tandem({"rank", "job-ok", "--query", "3", "--top", "3"}, "rank");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  const auto lines = lines_of(result.out);
  ASSERT_EQ(lines.size(), 6u) << result.out;
  EXPECT_EQ(lines[0], "query 3: person 7, camera 1");
  EXPECT_TRUE(contains(lines[1], "RANK") && contains(lines[1], "DISTANCE") &&
              contains(lines[1], "PERSON") && contains(lines[1], "CAMERA") &&
              contains(lines[1], "PATH") && contains(lines[1], "MATCH"))
      << lines[1];
  EXPECT_TRUE(contains(lines[2], "0.5000") && contains(lines[2], "bounding_box_test/7_c2.jpg") &&
              contains(lines[2], "right"))
      << lines[2];
  EXPECT_TRUE(contains(lines[3], "wrong")) << lines[3];
  EXPECT_TRUE(contains(lines[4], "right")) << lines[4];
  EXPECT_EQ(lines[5], "2 of 3 right (rank-1 right)");
  const auto ranked = service_.ranked();
  ASSERT_EQ(ranked.size(), 1u);
  EXPECT_EQ(ranked[0].job_id(), "job-ok");
  EXPECT_EQ(ranked[0].query_index(), 3);
  EXPECT_EQ(ranked[0].top_k(), 3);
}

TEST_F(ClientCommands, RankSendsTheImageBytes) {
  const std::string image = testing::scratch_path("query.jpg");
  const std::string bytes("\xff\xd8\xff\xe0 not really a jpeg \0 with a nul", 33);
  {
    std::ofstream out(image, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  const auto result = tandem({"rank", "job-ok", "--image", image}, "rank-image");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_FALSE(contains(result.out, "right")) << result.out;
  const auto ranked = service_.ranked();
  ASSERT_EQ(ranked.size(), 1u);
  EXPECT_EQ(ranked[0].image(), bytes);
  EXPECT_EQ(ranked[0].top_k(), 10);
  std::filesystem::remove(image);

  const auto neither = tandem({"rank", "job-ok"}, "rank-neither");
  EXPECT_EQ(neither.exit_code, 1);
  EXPECT_TRUE(contains(neither.err, "--query N")) << neither.err;
  const auto both = tandem({"rank", "job-ok", "--query", "1", "--image", image}, "rank-both");
  EXPECT_EQ(both.exit_code, 2) << both.err;  // a usage error
}

TEST_F(ClientCommands, ServerAddressFromTheEnvironment) {
  ::setenv("TANDEM_SERVER", target_.c_str(), 1);
  const auto result = run_tandem({"status", "--json"}, "client-env");
  ::unsetenv("TANDEM_SERVER");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(service_.listed().size(), 1u);
}

TEST_F(ClientCommands, TimeoutBoundsAUnaryCall) {
  const auto start = std::chrono::steady_clock::now();
  const auto result = tandem({"status", "job-slow", "--timeout", "0.3"}, "timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(contains(result.err, "tandem status: DEADLINE_EXCEEDED: no answer from the server"))
      << result.err;
}

TEST(ClientUnreachable, EveryCommandSaysTheServerIsNotReachableQuickly) {
  const std::string spec = testing::scratch_path("unreachable.yaml");
  testing::write_file(spec, kSpec);
  const std::vector<std::vector<std::string>> commands = {
      {"submit", spec},     {"status"},           {"watch", "job-ok"},
      {"cancel", "job-ok"}, {"delete", "job-ok"}, {"rank", "job-ok", "--query", "1"}};
  for (auto args : commands) {
    const std::string name = args[0];
    args.insert(args.end(), {"--server", "127.0.0.1:1"});
    const auto start = std::chrono::steady_clock::now();
    const auto result = run_tandem(args, "client-unreachable");
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10)) << name;
    EXPECT_EQ(result.exit_code, 1) << name;
    EXPECT_TRUE(contains(result.err, "tandem " + name +
                                         ": UNAVAILABLE: the server at 127.0.0.1:1 is not "
                                         "reachable"))
        << result.err;
    EXPECT_TRUE(contains(result.err, "tandem server --listen 127.0.0.1:1")) << result.err;
  }
  std::filesystem::remove(spec);
}

}  // namespace
}  // namespace tandem::client
