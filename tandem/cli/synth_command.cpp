// `tandem synth`: renders a synthetic pedestrian domain in the Market-1501
// layout (bounding_box_train/, query/, bounding_box_test/) and prints what it
// wrote. Out-of-range values are usage errors (exit 2); a domain name or a
// folder that cannot be used exits 1 with a message naming it.
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <memory>

#include "tandem/cli/app.h"
#include "tandem/worker/data/synth.h"

namespace tandem::cli {
namespace {

struct SynthFlags {
  std::string out;
  worker::SynthOptions options;
  bool quiet = false;
};

int run_synth(const SynthFlags& flags) {
  const worker::SynthOptions& o = flags.options;
  o.validate();
  // A progress line on a terminal only; logs and tests get the summary alone.
  worker::SynthProgress progress;
  if (!flags.quiet && ::isatty(STDERR_FILENO)) {
    progress = [last = int64_t{-1}](int64_t done, int64_t total) mutable {
      const int64_t percent = 100 * done / total;
      if (percent == last) return;
      last = percent;
      std::cerr << "\r  rendering " << done << " / " << total << " (" << percent << "%)"
                << (done == total ? "\n" : "") << std::flush;
    };
  }
  const worker::SynthSummary s = worker::render_market_dataset(flags.out, o, progress);
  std::cout << "tandem synth: domain '" << o.domain << "', seed " << o.seed << ", " << o.height
            << "x" << o.width << " pixels, into " << flags.out << "\n";
  std::cout << "  " << std::left << std::setw(20) << "split" << std::right << std::setw(8)
            << "images" << std::setw(7) << "ids" << std::setw(9) << "cameras"
            << "\n";
  const auto row = [](const char* split, int64_t images, int64_t ids, int64_t cameras,
                      const std::string& note) {
    std::cout << "  " << std::left << std::setw(20) << split << std::right << std::setw(8) << images
              << std::setw(7) << ids << std::setw(9) << cameras << note << "\n";
  };
  row("bounding_box_train", s.train_images, s.train_ids, s.cameras, "");
  row("query", s.query_images, s.test_ids, s.cameras, "");
  row("bounding_box_test", s.gallery_images, s.test_ids, s.cameras,
      s.distractor_images > 0
          ? "  (with " + std::to_string(s.distractor_images) + " distractors, pid 0000)"
          : "");
  const double seconds = std::max(s.seconds, 1e-9);
  std::cout << "  " << s.images() << " images, " << std::fixed << std::setprecision(1)
            << static_cast<double>(s.bytes) / 1e6 << " MB in " << std::setprecision(2) << seconds
            << " s (" << std::setprecision(0) << static_cast<double>(s.images()) / seconds
            << " images/s on " << s.threads << " thread(s))";
  if (s.unchanged > 0) std::cout << "; " << s.unchanged << " files were already up to date";
  std::cout << std::endl;
  return kExitOk;
}

}  // namespace

void add_synth_command(CLI::App& app, Action& action) {
  auto flags = std::make_shared<SynthFlags>();
  worker::SynthOptions& o = flags->options;
  auto* command =
      app.add_subcommand("synth", "Render a synthetic pedestrian domain in the Market-1501 layout");
  command->add_option("--out", flags->out, "folder to write (created when missing)")->required();
  command
      ->add_option("--domain", o.domain,
                   "domain style: market, duke, msmt, or any name (style from its hash)")
      ->capture_default_str();
  command->add_option("--ids", o.ids, "identities; the first half train, the rest test")
      ->check(CLI::Range(int64_t{2}, int64_t{9999}))
      ->capture_default_str();
  command->add_option("--cameras", o.cameras, "cameras of the network")
      ->check(CLI::Range(int64_t{2}, int64_t{9}))
      ->capture_default_str();
  command->add_option("--seed", o.seed, "seeds identities and images")->capture_default_str();
  command
      ->add_option("--images-per-camera", o.images_per_camera,
                   "images of an identity in each camera it appears in")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}))
      ->capture_default_str();
  command->add_option("--min-cameras", o.min_cameras_per_id, "fewest cameras an identity is in")
      ->check(CLI::Range(int64_t{2}, int64_t{9}))
      ->capture_default_str();
  command
      ->add_option("--query-cameras", o.query_cameras_per_id,
                   "most cameras a test identity has a query in")
      ->check(CLI::Range(int64_t{1}, int64_t{9}))
      ->capture_default_str();
  command
      ->add_option("--distractors", o.distractor_fraction,
                   "distractor images (pid 0000) as a fraction of the gallery")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command->add_option("--height", o.height, "image height in pixels")
      ->check(CLI::Range(int64_t{32}, int64_t{1024}))
      ->capture_default_str();
  command->add_option("--width", o.width, "image width in pixels")
      ->check(CLI::Range(int64_t{16}, int64_t{1024}))
      ->capture_default_str();
  command->add_option("--quality", o.jpeg_quality, "JPEG quality")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  command->add_option("--threads", o.threads, "rendering threads (0: every hardware thread)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  command->add_flag("--quiet", flags->quiet, "no progress line");
  command->callback([flags, &action] { action = [flags] { return run_synth(*flags); }; });
}

}  // namespace tandem::cli
