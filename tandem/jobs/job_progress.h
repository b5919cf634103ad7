// What every job runner writes while it runs: the event stream
// (OUTPUT_DIR/events.jsonl, one RankEvent per line, jobs/rank_events.h) and
// per-iteration progress on stdout.
#pragma once

#include <filesystem>
#include <fstream>

#include "tandem/jobs/rank_events.h"
#include "tandem/v1/job_spec.pb.h"
#include "tandem/worker/train/progress.h"

namespace tandem::jobs {

/// Appends one event per line to a job's event log.
class EventLog {
 public:
  /// Throws std::runtime_error naming `path` when it cannot be opened.
  explicit EventLog(const std::filesystem::path& path);
  /// A log that writes nothing (ranks other than 0).
  EventLog() = default;
  void write(const RankEvent& event);
  /// Writes phase_event(name, epoch): the epoch entered a phase (extract,
  /// cluster, train, evaluate, checkpoint).
  void phase(const std::string& name, int64_t epoch);

 private:
  std::ofstream out_;
};

/// Shows per-iteration progress: a bar redrawn in place on a terminal
/// (iterations, loss terms, images/s, ETA), a plain line every tenth of an
/// epoch otherwise; every iteration also becomes an iteration event.
class JobProgress {
 public:
  JobProgress(const tandem::v1::JobSpec& spec, EventLog& events, bool quiet);
  void operator()(const worker::IterationProgress& p);

 private:
  const tandem::v1::JobSpec& spec_;
  EventLog& events_;
  bool quiet_;
  bool terminal_;
};

}  // namespace tandem::jobs
