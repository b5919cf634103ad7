#include "tandem/server/job_store.h"

#include <sqlite3.h>

#include <array>
#include <chrono>
#include <utility>

#include "tandem/rpc/status.h"

namespace tandem::server {

using rpc::status_from_exceptions;
using rpc::to_grpc_status;
namespace {

constexpr std::array<std::pair<JobState, const char*>, 5> kStateNames = {{
    {JobState::kQueued, "QUEUED"},
    {JobState::kRunning, "RUNNING"},
    {JobState::kSucceeded, "SUCCEEDED"},
    {JobState::kFailed, "FAILED"},
    {JobState::kCancelled, "CANCELLED"},
}};

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::Status sqlite_error(sqlite3* db, const std::string& what) {
  return absl::InternalError(what + ": " + sqlite3_errmsg(db));
}

// A prepared statement, finalised on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    prepare_status_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status prepared() const {
    return prepare_status_ == SQLITE_OK ? absl::OkStatus()
                                        : sqlite_error(db_, "preparing a job-store query");
  }
  void bind(int index, int64_t value) { sqlite3_bind_int64(stmt_, index, value); }
  void bind(int index, const std::string& value) {
    sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  }
  /// SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return sqlite3_step(stmt_); }
  int64_t column_int(int i) const { return sqlite3_column_int64(stmt_, i); }
  std::string column_text(int i) const {
    const auto* text = sqlite3_column_text(stmt_, i);
    return text ? std::string(reinterpret_cast<const char*>(text),
                              static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i)))
                : std::string();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int prepare_status_;
};

absl::Status exec(sqlite3* db, const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message ? message : "unknown error";
    sqlite3_free(message);
    return absl::InternalError(std::string("job store: ") + text + " (in: " + sql + ")");
  }
  return absl::OkStatus();
}

constexpr const char* kJobColumns =
    "id, kind, spec_json, state, error, created_ms, updated_ms, progress_json, attempts, "
    "public_id, owner";

absl::StatusOr<JobRecord> read_job(const Statement& row) {
  JobRecord job;
  job.id = row.column_int(0);
  job.kind = row.column_text(1);
  job.spec_json = row.column_text(2);
  auto state = parse_job_state(row.column_text(3));
  if (!state.ok()) return state.status();
  job.state = *state;
  job.error = row.column_text(4);
  job.created_ms = row.column_int(5);
  job.updated_ms = row.column_int(6);
  job.progress_json = row.column_text(7);
  job.attempts = row.column_int(8);
  job.public_id = row.column_text(9);
  job.owner = row.column_text(10);
  return job;
}

}  // namespace

const char* to_string(JobState state) {
  for (const auto& [value, name] : kStateNames) {
    if (value == state) return name;
  }
  return "UNKNOWN";
}

absl::StatusOr<JobState> parse_job_state(const std::string& name) {
  for (const auto& [value, known] : kStateNames) {
    if (name == known) return value;
  }
  return absl::InvalidArgumentError("unknown job state '" + name + "'");
}

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("job store path is empty");
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError("cannot open job store '" + path + "': " + message);
  }
  std::unique_ptr<JobStore> store(new JobStore(db));
  sqlite3_busy_timeout(db, 5000);
  absl::Status status = store->migrate();
  if (!status.ok()) {
    return absl::Status(status.code(),
                        "job store '" + path + "': " + std::string(status.message()));
  }
  return store;
}

JobStore::JobStore(sqlite3* db) : db_(db) {}

JobStore::~JobStore() {
  sqlite3_close(db_);
}

absl::Status JobStore::migrate() {
  // WAL keeps readers (GetJob, WatchJob) off the writer's back; FULL syncs the
  // WAL on every commit so a job survives power loss once a call returned.
  TANDEM_RETURN_IF_ERROR(exec(db_, "PRAGMA journal_mode=WAL"));
  TANDEM_RETURN_IF_ERROR(exec(db_, "PRAGMA synchronous=FULL"));
  Statement version_query(db_, "PRAGMA user_version");
  TANDEM_RETURN_IF_ERROR(version_query.prepared());
  if (version_query.step() != SQLITE_ROW) return sqlite_error(db_, "reading the schema version");
  const int64_t version = version_query.column_int(0);
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError("schema version " + std::to_string(version) +
                                         " is newer than this Tandem's (" +
                                         std::to_string(kSchemaVersion) + ")");
  }
  if (version == kSchemaVersion) return absl::OkStatus();
  if (version < 1) {
    TANDEM_RETURN_IF_ERROR(exec(db_,
                                "BEGIN IMMEDIATE;"
                                "CREATE TABLE IF NOT EXISTS jobs ("
                                "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
                                "  kind TEXT NOT NULL,"
                                "  spec_json TEXT NOT NULL,"
                                "  state TEXT NOT NULL,"
                                "  error TEXT NOT NULL DEFAULT '',"
                                "  created_ms INTEGER NOT NULL,"
                                "  updated_ms INTEGER NOT NULL);"
                                "PRAGMA user_version=1;"
                                "COMMIT;"));
  }
  // 1 -> 2: the service's progress of each job.
  if (version < 2) {
    TANDEM_RETURN_IF_ERROR(
        exec(db_,
             "BEGIN IMMEDIATE;"
             "ALTER TABLE jobs ADD COLUMN progress_json TEXT NOT NULL DEFAULT '{}';"
             "ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;"
             "PRAGMA user_version=2;"
             "COMMIT;"));
  }
  // 2 -> 3: unguessable public ids (older jobs keep their number) and the
  // submitting principal.
  TANDEM_RETURN_IF_ERROR(exec(db_,
                              "BEGIN IMMEDIATE;"
                              "ALTER TABLE jobs ADD COLUMN public_id TEXT NOT NULL DEFAULT '';"
                              "ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';"
                              "UPDATE jobs SET public_id = CAST(id AS TEXT) WHERE public_id = '';"
                              "CREATE UNIQUE INDEX jobs_public_id ON jobs(public_id);"
                              "PRAGMA user_version=3;"
                              "COMMIT;"));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> JobStore::insert_job(const std::string& kind, const std::string& spec_json,
                                             const std::string& public_id,
                                             const std::string& owner) {
  if (kind.empty()) return absl::InvalidArgumentError("job kind is empty");
  // The row and its public id in one statement: "" takes the row id's text.
  Statement insert(db_,
                   "INSERT INTO jobs (kind, spec_json, state, created_ms, updated_ms, public_id, "
                   "owner) VALUES (?1, ?2, ?3, ?4, ?4, CASE WHEN ?5 = '' THEN "
                   "CAST((SELECT IFNULL(MAX(seq), 0) + 1 FROM sqlite_sequence WHERE name = "
                   "'jobs') AS TEXT) ELSE ?5 END, ?6)");
  TANDEM_RETURN_IF_ERROR(insert.prepared());
  insert.bind(1, kind);
  insert.bind(2, spec_json);
  insert.bind(3, std::string(to_string(JobState::kQueued)));
  insert.bind(4, now_ms());
  insert.bind(5, public_id);
  insert.bind(6, owner);
  const int rc = insert.step();
  if (rc == SQLITE_CONSTRAINT) {
    return absl::AlreadyExistsError("job store: public id '" + public_id + "' is taken");
  }
  if (rc != SQLITE_DONE) return sqlite_error(db_, "storing a new job");
  return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
}

absl::Status JobStore::delete_job(int64_t id) {
  Statement remove(db_, "DELETE FROM jobs WHERE id = ?1");
  TANDEM_RETURN_IF_ERROR(remove.prepared());
  remove.bind(1, id);
  if (remove.step() != SQLITE_DONE) {
    return sqlite_error(db_, "deleting job " + std::to_string(id));
  }
  if (sqlite3_changes(db_) == 0) return absl::NotFoundError("no job with id " + std::to_string(id));
  return absl::OkStatus();
}

absl::StatusOr<JobRecord> JobStore::get_job(int64_t id) {
  const std::string sql = std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = ?1";
  Statement query(db_, sql.c_str());
  TANDEM_RETURN_IF_ERROR(query.prepared());
  query.bind(1, id);
  const int rc = query.step();
  if (rc == SQLITE_DONE) return absl::NotFoundError("no job with id " + std::to_string(id));
  if (rc != SQLITE_ROW) return sqlite_error(db_, "reading job " + std::to_string(id));
  return read_job(query);
}

absl::Status JobStore::update_state(int64_t id, JobState state, const std::string& error) {
  Statement update(db_, "UPDATE jobs SET state = ?1, error = ?2, updated_ms = ?3 WHERE id = ?4");
  TANDEM_RETURN_IF_ERROR(update.prepared());
  update.bind(1, std::string(to_string(state)));
  update.bind(2, error);
  update.bind(3, now_ms());
  update.bind(4, id);
  if (update.step() != SQLITE_DONE) {
    return sqlite_error(db_, "updating job " + std::to_string(id));
  }
  if (sqlite3_changes(db_) == 0) return absl::NotFoundError("no job with id " + std::to_string(id));
  return absl::OkStatus();
}

absl::Status JobStore::update_job(const JobRecord& job) {
  Statement update(db_,
                   "UPDATE jobs SET spec_json = ?1, state = ?2, error = ?3, progress_json = ?4, "
                   "attempts = ?5, updated_ms = ?6 WHERE id = ?7");
  TANDEM_RETURN_IF_ERROR(update.prepared());
  update.bind(1, job.spec_json);
  update.bind(2, std::string(to_string(job.state)));
  update.bind(3, job.error);
  update.bind(4, job.progress_json);
  update.bind(5, job.attempts);
  update.bind(6, now_ms());
  update.bind(7, job.id);
  if (update.step() != SQLITE_DONE) {
    return sqlite_error(db_, "updating job " + std::to_string(job.id));
  }
  if (sqlite3_changes(db_) == 0) {
    return absl::NotFoundError("no job with id " + std::to_string(job.id));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<JobRecord>> JobStore::list_jobs() {
  const std::string sql = std::string("SELECT ") + kJobColumns + " FROM jobs ORDER BY id";
  Statement query(db_, sql.c_str());
  TANDEM_RETURN_IF_ERROR(query.prepared());
  std::vector<JobRecord> jobs;
  int rc;
  while ((rc = query.step()) == SQLITE_ROW) {
    auto job = read_job(query);
    if (!job.ok()) return job.status();
    jobs.push_back(std::move(*job));
  }
  if (rc != SQLITE_DONE) return sqlite_error(db_, "listing jobs");
  return jobs;
}

}  // namespace tandem::server
