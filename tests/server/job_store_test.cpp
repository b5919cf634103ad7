#include "tandem/server/job_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>

namespace tandem::server {
namespace {

namespace fs = std::filesystem;

class JobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tandem-job-store-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string db() const { return (dir_ / "jobs.db").string(); }
  fs::path dir_;
};

TEST_F(JobStoreTest, RoundTripSurvivesReopening) {
  int64_t id = 0;
  {
    auto store = JobStore::Open(db());
    ASSERT_TRUE(store.ok()) << store.status();
    auto inserted = (*store)->insert_job("mmt", R"({"epochs": 40})");
    ASSERT_TRUE(inserted.ok()) << inserted.status();
    id = *inserted;
    ASSERT_TRUE((*store)->update_state(id, JobState::kFailed, "worker lost").ok());
  }
  auto store = JobStore::Open(db());
  ASSERT_TRUE(store.ok()) << store.status();
  auto job = (*store)->get_job(id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->kind, "mmt");
  EXPECT_EQ(job->spec_json, R"({"epochs": 40})");
  EXPECT_EQ(job->state, JobState::kFailed);
  EXPECT_EQ(job->error, "worker lost");
  EXPECT_GT(job->created_ms, 0);
  EXPECT_GE(job->updated_ms, job->created_ms);
}

TEST_F(JobStoreTest, UsesWriteAheadLogging) {
  auto store = JobStore::Open(db());
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->insert_job("pretrain", "{}").ok());
  EXPECT_TRUE(fs::exists(db() + "-wal"));
}

TEST_F(JobStoreTest, ListsJobsInSubmissionOrder) {
  auto store = JobStore::Open(db());
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->insert_job("pretrain", "{}").ok());
  ASSERT_TRUE((*store)->insert_job("mmt", "{}").ok());
  auto jobs = (*store)->list_jobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[0].kind, "pretrain");
  EXPECT_EQ((*jobs)[1].kind, "mmt");
  EXPECT_LT((*jobs)[0].id, (*jobs)[1].id);
}

TEST_F(JobStoreTest, UnknownJobIsNotFound) {
  auto store = JobStore::Open(db());
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->get_job(42).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->update_state(42, JobState::kRunning).code(), absl::StatusCode::kNotFound);
}

TEST_F(JobStoreTest, EmptyKindIsInvalid) {
  auto store = JobStore::Open(db());
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->insert_job("", "{}").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(JobStoreTest, UnopenablePathNamesThePath) {
  const std::string path = (dir_ / "no-such-dir" / "jobs.db").string();
  auto store = JobStore::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(std::string(store.status().message()).find(path), std::string::npos);
}

TEST_F(JobStoreTest, RefusesASchemaFromANewerTandem) {
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db().c_str(), &raw), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(raw, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(raw);
  }
  auto store = JobStore::Open(db());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(store.status().message()).find("schema version 99"), std::string::npos);
}

TEST_F(JobStoreTest, UpdateJobWritesProgressAndAttemptsDurably) {
  int64_t id = 0;
  {
    auto store = JobStore::Open(db());
    ASSERT_TRUE(store.ok());
    id = *(*store)->insert_job("mmt", "{}");
    auto job = (*store)->get_job(id);
    ASSERT_TRUE(job.ok());
    EXPECT_EQ(job->progress_json, "{}");
    EXPECT_EQ(job->attempts, 0);
    job->state = JobState::kRunning;
    job->spec_json = R"({"kind":"mmt","output_dir":"/jobs/1"})";
    job->progress_json = R"({"phase":"TRAIN","epoch":"3"})";
    job->attempts = 2;
    ASSERT_TRUE((*store)->update_job(*job).ok());
    job->id = 77;
    EXPECT_EQ((*store)->update_job(*job).code(), absl::StatusCode::kNotFound);
  }
  auto store = JobStore::Open(db());
  ASSERT_TRUE(store.ok());
  auto job = (*store)->get_job(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state, JobState::kRunning);
  EXPECT_EQ(job->spec_json, R"({"kind":"mmt","output_dir":"/jobs/1"})");
  EXPECT_EQ(job->progress_json, R"({"phase":"TRAIN","epoch":"3"})");
  EXPECT_EQ(job->attempts, 2);
}

TEST_F(JobStoreTest, MigratesAVersionOneStoreKeepingItsJobs) {
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db().c_str(), &raw), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(raw,
                     "CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT "
                     "NULL, spec_json TEXT NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL "
                     "DEFAULT '', created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"
                     "INSERT INTO jobs (kind, spec_json, state, created_ms, updated_ms) "
                     "VALUES ('pretrain', '{}', 'SUCCEEDED', 5, 6);"
                     "PRAGMA user_version=1;",
                     nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(raw);
  }
  auto store = JobStore::Open(db());
  ASSERT_TRUE(store.ok()) << store.status();
  auto jobs = (*store)->list_jobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].kind, "pretrain");
  EXPECT_EQ((*jobs)[0].state, JobState::kSucceeded);
  EXPECT_EQ((*jobs)[0].progress_json, "{}");
  EXPECT_EQ((*jobs)[0].created_ms, 5);
}

TEST_F(JobStoreTest, SchemaThreeKeepsOldJobsNumbersAsPublicIdsAndStoresNewOnesWithOwners) {
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db().c_str(), &raw), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(raw,
                     "CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT "
                     "NULL, spec_json TEXT NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL "
                     "DEFAULT '', created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, "
                     "progress_json TEXT NOT NULL DEFAULT '{}', attempts INTEGER NOT NULL "
                     "DEFAULT 0);"
                     "INSERT INTO jobs (kind, spec_json, state, created_ms, updated_ms) "
                     "VALUES ('pretrain', '{}', 'SUCCEEDED', 5, 6);"
                     "PRAGMA user_version=2;",
                     nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(raw);
  }
  auto store = JobStore::Open(db());
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string random_id = "0123456789abcdef0123456789abcdef";
  auto added = (*store)->insert_job("mmt", "{}", random_id, "alice");
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ((*store)->insert_job("mmt", "{}", random_id, "bob").status().code(),
            absl::StatusCode::kAlreadyExists)
      << "public ids are unique";
  auto numbered = (*store)->insert_job("mmt", "{}");
  ASSERT_TRUE(numbered.ok());
  auto jobs = (*store)->list_jobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 3u);
  EXPECT_EQ((*jobs)[0].public_id, "1") << "an old job keeps its number";
  EXPECT_EQ((*jobs)[0].owner, "");
  EXPECT_EQ((*jobs)[1].public_id, random_id);
  EXPECT_EQ((*jobs)[1].owner, "alice");
  EXPECT_EQ((*jobs)[2].public_id, std::to_string(*numbered));
  ASSERT_TRUE((*store)->delete_job(*added).ok());
  EXPECT_EQ((*store)->delete_job(*added).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->list_jobs()->size(), 2u);
}

TEST(JobStateNames, RoundTrip) {
  for (auto state : {JobState::kQueued, JobState::kRunning, JobState::kSucceeded, JobState::kFailed,
                     JobState::kCancelled}) {
    auto parsed = parse_job_state(to_string(state));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, state);
  }
  EXPECT_FALSE(parse_job_state("DONE").ok());
}

}  // namespace
}  // namespace tandem::server
