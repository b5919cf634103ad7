// Durable job store on SQLite (WAL journal, synchronous=FULL): a job is on
// disk before any call that created or changed it returns OK.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

struct sqlite3;

namespace tandem::server {

/// Lifecycle of a job; the names are stored as text.
enum class JobState { kQueued, kRunning, kSucceeded, kFailed, kCancelled };

/// "QUEUED", "RUNNING", ... (the names of the wire contract).
const char* to_string(JobState state);
/// Inverse of to_string; INVALID_ARGUMENT for an unknown name.
absl::StatusOr<JobState> parse_job_state(const std::string& name);

/// One stored job.
struct JobRecord {
  int64_t id = 0;
  /// Job kind, e.g. "mmt".
  std::string kind;
  /// The job specification as JSON text.
  std::string spec_json;
  JobState state = JobState::kQueued;
  /// Why the job failed; empty otherwise.
  std::string error;
  /// Unix time in milliseconds.
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  /// What the service knows of the job's run as JSON text (phase, epoch,
  /// iteration, metrics history, workers, checkpoint, start and end times):
  /// tandem.v1.Job's progress fields, written as they change.
  std::string progress_json = "{}";
  /// How often the job's group was started (first start and restarts).
  int64_t attempts = 0;
  /// The id clients see: 32 random hex digits (jobs stored before schema 3
  /// keep their number as text).
  std::string public_id;
  /// The submitting principal's name (rpc::Principal).
  std::string owner;
};

class JobStore {
 public:
  /// Opens (creating if needed) the store at `path`; ":memory:" gives a
  /// private in-memory store. Fails with a status naming the path when the
  /// file cannot be opened or its schema is from a newer Tandem.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(const std::string& path);

  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  /// Stores a new QUEUED job and returns its row id. `public_id` "" stores
  /// the row id as text; a public id already taken is ALREADY_EXISTS.
  absl::StatusOr<int64_t> insert_job(const std::string& kind, const std::string& spec_json,
                                     const std::string& public_id = "",
                                     const std::string& owner = "");
  /// NOT_FOUND for an unknown id.
  absl::StatusOr<JobRecord> get_job(int64_t id);
  /// Changes state (and error text); NOT_FOUND for an unknown id.
  absl::Status update_state(int64_t id, JobState state, const std::string& error = "");
  /// Writes every mutable field of `job` (spec, state, error, progress,
  /// attempts) in one transaction; NOT_FOUND for an unknown id.
  absl::Status update_job(const JobRecord& job);
  /// Removes a job; NOT_FOUND for an unknown id.
  absl::Status delete_job(int64_t id);
  /// Every job, oldest first.
  absl::StatusOr<std::vector<JobRecord>> list_jobs();

  /// Schema version this build writes (PRAGMA user_version).
  /// 1: id, kind, spec, state, error, times; 2: + progress_json, attempts;
  /// 3: + public_id (unique), owner.
  static constexpr int kSchemaVersion = 3;

 private:
  explicit JobStore(sqlite3* db);
  absl::Status migrate();

  sqlite3* db_;
};

}  // namespace tandem::server
