// What every job runner writes while it runs (jobs/job_progress.h): the
// event log, one RankEvent per line, and the iteration events of JobProgress.
#include "tandem/jobs/job_progress.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/run_tandem.h"
#include "tandem/spec/job_spec.h"
#include "tandem/worker/train/progress.h"

namespace tandem::jobs {
namespace {

namespace fs = std::filesystem;
using cli::testing::read_file;
using cli::testing::scratch_path;
using google::protobuf::util::MessageDifferencer;

std::vector<std::string> lines_of(const fs::path& path) {
  std::istringstream in(read_file(path.string()));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(EventLog, WritesOneRankEventPerLineAndAppends) {
  const fs::path path = scratch_path("event-log.jsonl");
  fs::remove(path);
  RankEvent epoch;
  epoch.set_event("epoch");
  epoch.set_kind("pretrain");
  epoch.set_epoch(2);
  epoch.set_ce(1.5);
  epoch.add_map(12.5);
  epoch.add_rank1(25);
  epoch.add_rank5(37.5);
  {
    EventLog log(path);
    log.write(epoch);
    log.phase("checkpoint", 2);
    // Written as they come (a worker reads the log while the job runs).
    EXPECT_EQ(lines_of(path).size(), 2u);
  }
  const auto lines = lines_of(path);
  ASSERT_EQ(lines.size(), 2u);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_NO_THROW(parse_rank_event(lines[i])) << lines[i];
  }
  EXPECT_EQ(lines[0], rank_event_json(epoch));
  auto events = read_rank_events(path);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_TRUE(MessageDifferencer::Equals(events[0], epoch)) << lines[0];
  EXPECT_TRUE(MessageDifferencer::Equals(events[1], phase_event("checkpoint", 2))) << lines[1];
  // A resumed job appends to the same log.
  {
    EventLog again(path);
    again.phase("train", 3);
  }
  events = read_rank_events(path);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].phase(), "train");
  EXPECT_EQ(events[2].epoch(), 3);
  fs::remove(path);
}

TEST(EventLog, ADefaultLogWritesNothingAndABadPathIsNamed) {
  // Ranks other than 0: a log that takes every event and writes none.
  EventLog none;
  RankEvent event;
  event.set_event("epoch");
  EXPECT_NO_THROW(none.write(event));
  EXPECT_NO_THROW(none.phase("train", 0));
  const fs::path missing = fs::path(scratch_path("no-such-folder")) / "events.jsonl";
  try {
    EventLog log(missing);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(missing));
}

TEST(JobProgress, EveryIterationIsAnIterationEvent) {
  const tandem::v1::JobSpec spec = tandem::spec::parse_job_spec(
      "kind: pretrain\noutput_dir: out\nsource: {kind: market1501, root: /data}\n", "job.yaml");
  const fs::path path = scratch_path("progress.jsonl");
  fs::remove(path);
  {
    EventLog log(path);
    JobProgress progress(spec, log, /*quiet=*/true);
    ::testing::internal::CaptureStdout();
    // Iteration 3 of 10 of epoch 1: 96 images in 2 s.
    progress(worker::make_iteration_progress(1, 3, 10, 96, 2.0, {{"ce", 1.5}, {"tri", 0.25}}));
    progress(worker::make_iteration_progress(1, 4, 10, 128, 2.5, {{"ce", 1.25}, {"tri", 0.5}}));
    EXPECT_EQ(::testing::internal::GetCapturedStdout(), "") << "quiet: events only";
  }
  const auto events = read_rank_events(path);
  ASSERT_EQ(events.size(), 2u);
  const RankEvent& e = events[0];
  EXPECT_EQ(e.event(), "iteration");
  EXPECT_EQ(e.kind(), "pretrain");
  ASSERT_TRUE(e.has_epoch());
  EXPECT_EQ(e.epoch(), 1);
  EXPECT_EQ(e.iteration(), 3);
  EXPECT_EQ(e.iterations(), 10);
  ASSERT_EQ(e.losses().size(), 2u);
  EXPECT_EQ(e.losses().at("ce"), 1.5);
  EXPECT_EQ(e.losses().at("tri"), 0.25);
  EXPECT_DOUBLE_EQ(e.images_per_second(), 48.0);
  EXPECT_DOUBLE_EQ(e.eta_seconds(), 2.0 / 3 * 7);
  EXPECT_EQ(events[1].iteration(), 4);
  EXPECT_EQ(events[1].losses().at("tri"), 0.5);
  // Nothing else: the epoch results are the runners' own events.
  EXPECT_EQ(e.map_size(), 0);
  EXPECT_FALSE(e.has_ce());
  fs::remove(path);
}

}  // namespace
}  // namespace tandem::jobs
