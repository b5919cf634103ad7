// `tandem dataset info`: parses a data set as training would and prints the
// per-split image, identity and camera counts (a table, or one JSON object
// with --json). A missing folder, an empty split or a file name that does not
// parse exits 1 with a message naming the file and the expected pattern.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <iomanip>
#include <iostream>
#include <memory>
#include <set>

#include "tandem/cli/app.h"
#include "tandem/worker/data/reid_dataset.h"

namespace tandem::cli {
namespace {

struct DatasetFlags {
  std::string kind;
  std::string root;
  std::string list;
  bool json = false;
};

nlohmann::ordered_json to_json(const worker::SplitStats& stats) {
  return {{"images", stats.images}, {"ids", stats.ids}, {"cameras", stats.cameras}};
}

int run_dataset_info(const DatasetFlags& flags) {
  worker::SplitStats train, query, gallery;
  std::string where;
  if (flags.kind == "imagelist") {
    if (flags.list.empty()) {
      std::cerr
          << "tandem dataset info: --kind imagelist needs --list FILE (lines '<path> <label>')\n";
      return kExitUsage;
    }
    const auto images = worker::load_image_list(flags.list, flags.root);
    std::set<int64_t> labels;
    for (const auto& image : images) labels.insert(image.label);
    // An image list is one split of classes; "ids" counts classes, and it has
    // no cameras, query or gallery.
    train = {static_cast<int64_t>(images.size()), static_cast<int64_t>(labels.size()), 0};
    where = flags.list;
  } else {
    const auto data =
        worker::load_reid_dataset(worker::parse_reid_dataset_kind(flags.kind), flags.root);
    train = worker::split_stats(data.train);
    query = worker::split_stats(data.query);
    gallery = worker::split_stats(data.gallery);
    where = data.root;
  }
  if (flags.json) {
    const nlohmann::ordered_json out = {
        {"train", to_json(train)}, {"query", to_json(query)}, {"gallery", to_json(gallery)}};
    std::cout << out.dump() << std::endl;
    return kExitOk;
  }
  std::cout << flags.kind << " at " << where << "\n";
  std::cout << std::left << std::setw(9) << "split" << std::right << std::setw(9) << "images"
            << std::setw(7) << "ids" << std::setw(9) << "cameras"
            << "\n";
  const auto row = [](const char* name, const worker::SplitStats& s) {
    std::cout << std::left << std::setw(9) << name << std::right << std::setw(9) << s.images
              << std::setw(7) << s.ids << std::setw(9) << s.cameras << "\n";
  };
  row("train", train);
  if (flags.kind != "imagelist") {
    row("query", query);
    row("gallery", gallery);
  }
  return kExitOk;
}

}  // namespace

void add_dataset_command(CLI::App& app, Action& action) {
  auto flags = std::make_shared<DatasetFlags>();
  auto* command = app.add_subcommand("dataset", "Inspect data sets");
  command->require_subcommand(1);
  auto* info = command->add_subcommand("info", "Print the image, id and camera counts per split");
  info->add_option("--kind", flags->kind, "layout of the data set")
      ->required()
      ->check(CLI::IsMember(
          {"market1501", "dukemtmc", "msmt17", "msmt17-market-layout", "folder", "imagelist"}));
  info->add_option("--root", flags->root,
                   "data set folder (or its parent); for imagelist, the folder relative paths "
                   "join (default: the list's folder)");
  info->add_option("--list", flags->list, "imagelist: the list file ('<path> <label>' per line)");
  info->add_flag("--json", flags->json, "print exactly one JSON object");
  info->callback([flags, info, &action] {
    if (flags->kind != "imagelist" && flags->root.empty()) {
      throw CLI::RequiredError("--root");
    }
    action = [flags] { return run_dataset_info(*flags); };
  });
}

}  // namespace tandem::cli
