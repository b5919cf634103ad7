// What every `tandem train` job writes while it runs: the event stream
// (OUTPUT_DIR/events.jsonl, one JSON object per line) and per-iteration
// progress on stdout.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "tandem/cli/job_spec.h"
#include "tandem/worker/train/progress.h"

namespace tandem::cli {

/// Appends one JSON object per line to a job's event log.
class EventLog {
 public:
  /// Throws std::runtime_error naming `path` when it cannot be opened.
  explicit EventLog(const std::filesystem::path& path);
  /// A log that writes nothing (ranks other than 0).
  EventLog() = default;
  void write(const nlohmann::ordered_json& event);
  /// {"event": "phase", "phase": ..., "epoch": ...}: the epoch entered a
  /// phase (extract, cluster, train, evaluate, checkpoint).
  void phase(const std::string& name, int64_t epoch);

 private:
  std::ofstream out_;
};

/// Shows per-iteration progress: a bar redrawn in place on a terminal
/// (iterations, loss terms, images/s, ETA), a plain line every tenth of an
/// epoch otherwise; every iteration also becomes a JSON event.
class JobProgress {
 public:
  JobProgress(const JobSpec& spec, EventLog& events, bool quiet);
  void operator()(const worker::IterationProgress& p);

 private:
  const JobSpec& spec_;
  EventLog& events_;
  bool quiet_;
  bool terminal_;
};

}  // namespace tandem::cli
