// The control plane's core: jobs, the worker registry and the scheduler.
//
// Jobs are durable in the JobStore before any call that changed them
// returns. Workers register over their control stream (WorkerChannel), each
// offering slots (one rank each: one per CPU worker unless it says more, one
// per GPU of a `--device cuda` worker, the slot index being the rank's
// LOCAL_RANK); the scheduler starts queued jobs oldest first on idle slots
// (GPU slots for `device: cuda`), letting younger jobs that fit run beside
// an older one that does not (backfill) until that one has waited
// `reserve_after` (then the free slots are held for it),
// and fails a job whose world size is above every capacity the deployment
// has had for `unplaceable_timeout` (see schedule_locked). It serves the
// job's rendezvous TCPStore, assigns the ranks and then follows
// each epoch through rank 0's events (extract → cluster → train → evaluate →
// checkpoint), recording phase, progress, metrics and the checkpoint as they
// happen and publishing them to WatchJob subscribers. A rank that fails, or a
// worker that is lost (stream closed or heartbeats missing), stops the group;
// the job goes back to the queue and resumes from its last checkpoint, up to
// max_restarts times. On start, jobs the store says were RUNNING (the server
// died) are queued again.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "tandem/jobs/spec_validation.h"
#include "tandem/server/job_store.h"
#include "tandem/v1/rank_event.pb.h"
#include "tandem/v1/tandem.pb.h"
#include "tandem/v1/worker.pb.h"

namespace tandem::server {

class Rendezvous;

struct CoordinatorOptions {
  /// Parent of the output folders of jobs whose spec names none
  /// (JOBS_DIR/job-ID).
  std::string jobs_dir = "tandem-jobs";
  /// MASTER_ADDR given to the ranks: where this server's rendezvous stores
  /// can be reached.
  std::string advertise_host = "127.0.0.1";
  /// host:port of the clustering service for mmt's pseudo labels ("": the
  /// ranks cluster in process).
  std::string clustering_address;
  /// How often workers heartbeat, and after how long without one a worker
  /// is lost.
  std::chrono::milliseconds heartbeat_interval = std::chrono::seconds(1);
  std::chrono::milliseconds heartbeat_timeout = std::chrono::seconds(10);
  /// Group restarts after a failed rank or a lost worker.
  int max_restarts = 3;
  /// The ranks' collective and rendezvous timeout, and how long ranks wait
  /// for rank 0's clustering.
  double rank_timeout_seconds = 300;
  double share_timeout_seconds = 3600;
  /// Slots (ranks) the deployment will have (SubmitJob refuses a world size
  /// above max(this, the most slots registered at one time)); 0: only those
  /// count. GPU jobs count GPU slots only.
  int expected_workers = 0;
  /// Progress (epoch, iteration) is written to the store at most this often;
  /// phases, metrics, checkpoints and states at once.
  std::chrono::milliseconds progress_write_interval = std::chrono::seconds(1);
  /// A queued job that fits the registered slots but not the idle ones
  /// lets younger jobs that fit start on the idle ones (backfill) until it
  /// has waited this long; from then on the free slots are held for it
  /// (no younger job starts) so that it is not starved.
  std::chrono::milliseconds reserve_after = std::chrono::minutes(5);
  /// A queued job whose world size exceeds the most slots ever registered
  /// at one time (since this server started) for this long ends FAILED,
  /// naming both; 0: such a job waits for ever.
  std::chrono::milliseconds unplaceable_timeout = std::chrono::minutes(10);
  /// How often the scheduler looks at the queue and the heartbeats.
  std::chrono::milliseconds tick = std::chrono::milliseconds(100);

  // --- Confinement and limits (docs/security.md) ----------------------------
  /// Folders a job's data sets, lists and weight files must lie in
  /// (confinement.h; weight files may also lie under jobs_dir). nullopt: not
  /// confined (embedding, tests); `tandem server` always sets it, and an
  /// empty list refuses every data path.
  std::optional<std::vector<std::string>> data_roots;
  /// SubmitJob calls one principal may make per minute (a token bucket
  /// holding as many); 0: unlimited.
  double submits_per_minute = 0;
  /// Queued jobs one principal may have at a time; 0: unlimited.
  int max_queued_per_principal = 0;
  /// Ended jobs that finished longer ago than this are deleted with their
  /// output folders; 0: kept.
  std::chrono::milliseconds retention{0};
};

/// Checks a submitted spec the way a rank will read it; INVALID_ARGUMENT (or
/// FAILED_PRECONDITION for a data set that cannot be read) naming the field.
using SpecValidator = std::function<absl::Status(const tandem::v1::JobSpec& spec)>;

/// The server's end of one worker's control stream.
class WorkerChannel {
 public:
  virtual ~WorkerChannel() = default;
  /// False when the stream is gone.
  virtual bool send(const tandem::v1::WorkerCommand& command) = 0;
  /// Ends the stream (a lost worker).
  virtual void close() = 0;
};

class JobCoordinator {
 public:
  JobCoordinator(JobStore& store, CoordinatorOptions options,
                 SpecValidator validator = jobs::validate_submitted_spec);
  ~JobCoordinator();
  JobCoordinator(const JobCoordinator&) = delete;
  JobCoordinator& operator=(const JobCoordinator&) = delete;

  /// Loads the stored jobs (RUNNING ones back to QUEUED) and starts the
  /// scheduler.
  absl::Status start();
  /// Stops the scheduler and every job's ranks (their jobs stay RUNNING in
  /// the store, so the next server resumes them).
  void stop();

  // --- tandem.v1.Tandem -----------------------------------------------------
  /// Checks the spec (limits, confinement, the validator), then stores and
  /// queues it for `owner` (a principal's name). RESOURCE_EXHAUSTED when the
  /// owner is over its submit rate or queue cap.
  absl::StatusOr<tandem::v1::Job> submit(const tandem::v1::JobSpec& spec,
                                         const std::string& owner = "anonymous");
  absl::StatusOr<tandem::v1::Job> get(const std::string& id) const;
  std::vector<tandem::v1::Job> list(const std::vector<tandem::v1::JobState>& states,
                                    int limit) const;
  /// QUEUED: cancelled at once. RUNNING: the ranks are stopped and the call
  /// waits up to `wait` for them. FAILED_PRECONDITION for an ended job.
  absl::StatusOr<tandem::v1::Job> cancel(const std::string& id, std::chrono::milliseconds wait);
  /// Removes an ended job from the store, and its output folder when that
  /// lies under jobs_dir. FAILED_PRECONDITION for a queued or running job.
  absl::StatusOr<tandem::v1::DeleteJobResponse> remove(const std::string& id);
  /// Sends the job, then its events, until it ends, `send` returns false or
  /// `cancelled` returns true. Iteration events at most
  /// `max_iteration_events_per_second` (<= 0: 2).
  absl::Status watch(const std::string& id, double max_iteration_events_per_second,
                     const std::function<bool(const tandem::v1::JobEvent&)>& send,
                     const std::function<bool()>& cancelled);

  // --- tandem.v1.WorkerControl ----------------------------------------------
  /// A new worker; returns its id (sends Registered on the channel).
  std::string register_worker(const tandem::v1::RegisterWorker& info,
                              std::shared_ptr<WorkerChannel> channel);
  void on_worker_message(const std::string& worker_id, const tandem::v1::WorkerMessage& message);
  /// The worker's stream ended: it is lost, its rank counts as failed.
  void on_worker_disconnected(const std::string& worker_id);

  /// Live registered workers (for tests and status).
  int live_workers() const;

 private:
  struct Runtime;
  struct Worker;
  /// A free slot: worker and slot index (the rank's LOCAL_RANK there).
  struct IdleSlot {
    Worker* worker;
    int slot;
  };
  /// Slots of the registered workers: all, GPU workers', CPU workers'.
  struct SlotCounts {
    int all = 0, gpu = 0, cpu = 0;
  };
  SlotCounts slot_counts_locked() const;
  /// The most slots of a job's pool (server's SlotPool, as int) registered
  /// at one time: the most its world size can ever get.
  int capacity_locked(int pool) const;

  Runtime* find(const std::string& id) const;
  void scheduler_loop();
  void schedule_locked();
  void check_heartbeats_locked();
  /// Deletes ended jobs past options_.retention.
  void apply_retention_locked();
  /// Removes the job from memory, the store and (under jobs_dir) the disk;
  /// the removed folder, or "".
  absl::StatusOr<std::string> remove_locked(Runtime& job);
  /// Takes one submit from `owner`'s bucket; RESOURCE_EXHAUSTED when empty.
  absl::Status take_submit_locked(const std::string& owner);
  void start_attempt_locked(Runtime& job, std::vector<IdleSlot> slots);
  /// Sets the job's waiting_reason (published when it changes).
  void set_waiting_reason_locked(Runtime& job, const std::string& reason);
  /// Ends a queued job FAILED with `error`.
  void fail_queued_locked(Runtime& job, const std::string& error);
  void rank_ended_locked(Runtime& job, int rank, int exit_code, const std::string& error);
  /// StopRank to every rank of the attempt that is still running.
  void stop_ranks_locked(Runtime& job);
  void finish_attempt_locked(Runtime& job);
  void worker_lost_locked(Worker& worker, const std::string& why);
  void apply_event_locked(Runtime& job, const v1::RankEvent& event, bool replayed);
  void publish_locked(Runtime& job, tandem::v1::JobEvent event);
  void publish_job_locked(Runtime& job);
  absl::Status persist_locked(Runtime& job);
  void persist_or_log_locked(Runtime& job);

  JobStore& store_;
  CoordinatorOptions options_;
  SpecValidator validator_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<int64_t, std::unique_ptr<Runtime>> jobs_;
  /// Public job id -> the store's row id (the key of jobs_).
  std::map<std::string, int64_t> ids_;
  /// Per principal: submits left in its bucket and when it was refilled.
  struct SubmitBucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point refilled;
  };
  std::map<std::string, SubmitBucket> submit_buckets_;
  std::chrono::steady_clock::time_point last_retention_{};
  std::map<std::string, std::unique_ptr<Worker>> workers_;
  int64_t next_worker_ = 1;
  /// The most slots registered at one time, per kind (SubmitJob's and the
  /// scheduler's capacity).
  SlotCounts most_slots_;
  bool stopping_ = false;
  std::thread scheduler_;
};

}  // namespace tandem::server
