// The rank events of a job (proto/tandem/v1/rank_event.proto): what rank 0
// of every job writes to OUTPUT_DIR/events.jsonl, one RankEvent per line as
// its protobuf JSON mapping (proto field names as keys), and what the worker
// reads back and carries to the server as the message. This is the one
// place that turns the message into a line and a line into the message.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <tandem/v1/rank_event.pb.h>

namespace tandem::jobs {

using RankEvent = tandem::v1::RankEvent;

/// One line of events.jsonl (no newline): the JSON mapping, proto names.
std::string rank_event_json(const RankEvent& event);

/// What parse_rank_event does with a key RankEvent lacks.
enum class UnknownKeys {
  kRefuse,  // an error: tests and tools reading their own version's lines
  kIgnore,  // skipped: the worker, which may be older than the engine
            // that wrote the line (fields are only ever added)
};

/// The event a line holds. Throws std::invalid_argument, starting with
/// `where`, for a line that is not a RankEvent's JSON (not JSON, an unknown
/// key unless `unknown` is kIgnore, a wrong-typed value) or that has no
/// `event`.
RankEvent parse_rank_event(const std::string& line, const std::string& where = "events.jsonl",
                           UnknownKeys unknown = UnknownKeys::kRefuse);

/// Every event of a log, in order; a missing file is no events. Errors as
/// parse_rank_event's, naming PATH:LINE.
std::vector<RankEvent> read_rank_events(const std::filesystem::path& path);

/// {event: phase, phase, epoch}: the epoch entered a phase (extract,
/// cluster, train, evaluate, checkpoint).
RankEvent phase_event(const std::string& phase, int64_t epoch);

/// Of one read's new events, those worth sending to the server: of a run of
/// consecutive iteration events only the last, and each epoch's last
/// iteration; every other event passes, in order.
std::vector<RankEvent> coalesce_iterations(std::vector<RankEvent> events);

}  // namespace tandem::jobs
