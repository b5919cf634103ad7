#include "tandem/jobs/job_progress.h"

#include <unistd.h>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace tandem::jobs {

EventLog::EventLog(const std::filesystem::path& path) : out_(path, std::ios::app) {
  if (!out_) throw std::runtime_error(path.string() + ": cannot open the event log");
}

void EventLog::write(const RankEvent& event) {
  if (!out_.is_open()) return;
  out_ << rank_event_json(event) << std::endl;
}

void EventLog::phase(const std::string& name, int64_t epoch) {
  write(phase_event(name, epoch));
}

JobProgress::JobProgress(const tandem::v1::JobSpec& spec, EventLog& events, bool quiet)
    : spec_(spec), events_(events), quiet_(quiet), terminal_(::isatty(STDOUT_FILENO) == 1) {}

void JobProgress::operator()(const worker::IterationProgress& p) {
  RankEvent event;
  event.set_event("iteration");
  event.set_kind(spec_.kind());
  event.set_epoch(static_cast<int32_t>(p.epoch));
  event.set_iteration(static_cast<int32_t>(p.iteration));
  event.set_iterations(static_cast<int32_t>(p.iterations));
  for (const auto& [name, value] : p.losses) (*event.mutable_losses())[name] = value;
  event.set_images_per_second(p.images_per_second);
  event.set_eta_seconds(p.eta_seconds);
  events_.write(event);
  if (quiet_) return;
  const int64_t every = std::max<int64_t>(1, p.iterations / 10);
  if (!terminal_ && p.iteration % every != 0 && p.iteration != p.iterations) return;
  std::ostringstream line;
  line << "epoch " << p.epoch + 1 << "/" << spec_.epochs() << " ";
  if (terminal_) {
    constexpr int kWidth = 24;
    const auto filled = static_cast<int>(kWidth * p.iteration / std::max<int64_t>(1, p.iterations));
    line << "[" << std::string(filled, '#') << std::string(kWidth - filled, '.') << "] ";
  }
  line << p.iteration << "/" << p.iterations << std::fixed << std::setprecision(3);
  for (const auto& [name, value] : p.losses) line << "  " << name << " " << value;
  const auto eta = static_cast<int64_t>(p.eta_seconds + 0.5);
  line << std::setprecision(0) << "  " << p.images_per_second << " img/s  ETA " << eta / 60 << ":"
       << std::setw(2) << std::setfill('0') << eta % 60;
  if (terminal_) {
    std::cout << "\r" << line.str() << "\x1b[K" << std::flush;
    if (p.iteration == p.iterations)
      std::cout << "\r\x1b[K" << std::flush;  // the epoch line follows
  } else {
    std::cout << "  " << line.str() << std::endl;
  }
}

}  // namespace tandem::jobs
