// Per-iteration progress of the trainers, for progress bars, log lines and
// the event stream the service forwards.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace tandem::worker {

struct IterationProgress {
  int64_t epoch = 0;
  /// 1-based iteration within the epoch, and the epoch's iteration count.
  int64_t iteration = 0;
  int64_t iterations = 0;
  /// This iteration's loss terms by name, in a fixed order.
  std::vector<std::pair<std::string, double>> losses;
  /// Training images per second so far in this epoch.
  double images_per_second = 0;
  /// Seconds left in this epoch at the current rate.
  double eta_seconds = 0;
};

/// The progress after `iteration` of `iterations` steps that trained
/// `images` images in `elapsed_seconds` (rate and ETA derived from them).
inline IterationProgress make_iteration_progress(
    int64_t epoch, int64_t iteration, int64_t iterations, int64_t images, double elapsed_seconds,
    std::vector<std::pair<std::string, double>> losses) {
  IterationProgress progress;
  progress.epoch = epoch;
  progress.iteration = iteration;
  progress.iterations = iterations;
  progress.losses = std::move(losses);
  progress.images_per_second =
      elapsed_seconds > 0 ? static_cast<double>(images) / elapsed_seconds : 0;
  progress.eta_seconds = iteration > 0 ? elapsed_seconds / static_cast<double>(iteration) *
                                             static_cast<double>(iterations - iteration)
                                       : 0;
  return progress;
}

/// Called on the training thread after every iteration (keep it cheap).
using ProgressFn = std::function<void(const IterationProgress&)>;

/// Called on the training thread when an epoch enters a phase ("extract",
/// "cluster", "train"; the jobs add "evaluate" and "checkpoint"), so the
/// service can show what a job is doing (docs/protocol.md).
using PhaseFn = std::function<void(const std::string& phase, int64_t epoch)>;

}  // namespace tandem::worker
