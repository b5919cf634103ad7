#include "tandem/jobs/rank_events.h"

#include <google/protobuf/util/json_util.h>

#include <fstream>
#include <stdexcept>

namespace tandem::jobs {

std::string rank_event_json(const RankEvent& event) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string line;
  const auto status = google::protobuf::util::MessageToJsonString(event, &line, options);
  if (!status.ok()) {
    throw std::runtime_error("rank event to JSON: " + std::string(status.message()));
  }
  return line;
}

RankEvent parse_rank_event(const std::string& line, const std::string& where, UnknownKeys unknown) {
  RankEvent event;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = unknown == UnknownKeys::kIgnore;
  const auto status = google::protobuf::util::JsonStringToMessage(line, &event, options);
  if (!status.ok()) {
    throw std::invalid_argument(where + ": not a rank event: " + std::string(status.message()));
  }
  if (event.event().empty()) throw std::invalid_argument(where + ": a rank event without `event`");
  return event;
}

std::vector<RankEvent> read_rank_events(const std::filesystem::path& path) {
  std::vector<RankEvent> events;
  std::ifstream in(path);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    events.push_back(parse_rank_event(line, path.string() + ":" + std::to_string(number)));
  }
  return events;
}

RankEvent phase_event(const std::string& phase, int64_t epoch) {
  RankEvent event;
  event.set_event("phase");
  event.set_phase(phase);
  event.set_epoch(static_cast<int32_t>(epoch));
  return event;
}

std::vector<RankEvent> coalesce_iterations(std::vector<RankEvent> events) {
  const auto is_iteration = [](const RankEvent& e) { return e.event() == "iteration"; };
  const auto ends_epoch = [](const RankEvent& e) {
    return e.has_iteration() && e.has_iterations() && e.iteration() == e.iterations();
  };
  std::vector<RankEvent> kept;
  for (size_t i = 0; i < events.size(); ++i) {
    if (is_iteration(events[i]) && i + 1 < events.size() && is_iteration(events[i + 1]) &&
        !ends_epoch(events[i]))
      continue;
    kept.push_back(std::move(events[i]));
  }
  return kept;
}

}  // namespace tandem::jobs
