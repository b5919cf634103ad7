#include "tandem/worker/data/reid_dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace tandem::worker {
namespace fs = std::filesystem;
namespace {

struct KindInfo {
  ReidDatasetKind kind;
  const char* name;
  const char* sub_folder;  // standard folder below a parent root
};
constexpr KindInfo kKinds[] = {
    {ReidDatasetKind::kMarket1501, "market1501", "Market-1501-v15.09.15"},
    {ReidDatasetKind::kDukeMtmc, "dukemtmc", "DukeMTMC-reID"},
    {ReidDatasetKind::kMsmt17, "msmt17", "MSMT17_V1"},
    {ReidDatasetKind::kMsmt17MarketLayout, "msmt17-market-layout", "MSMT17"},
    {ReidDatasetKind::kFolder, "folder", ""},
};

const KindInfo& info_of(ReidDatasetKind kind) {
  for (const auto& info : kKinds) {
    if (info.kind == kind) return info;
  }
  throw DatasetError("unknown data set kind");
}

bool is_image_file(const fs::path& path, bool allow_png) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || (allow_png && (ext == ".jpeg" || ext == ".png"));
}

/// Image files directly in `dir`, sorted by path.
std::vector<std::string> list_images(const fs::path& dir, bool allow_png) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    throw DatasetError(dir.string() + ": folder not found");
  }
  std::vector<std::string> paths;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    if (entry.is_regular_file() && is_image_file(entry.path(), allow_png)) {
      paths.push_back(entry.path().string());
    }
  }
  if (error) throw DatasetError(dir.string() + ": cannot list (" + error.message() + ")");
  std::sort(paths.begin(), paths.end());
  return paths;
}

int64_t to_int(const std::string& text, const std::string& file, const char* pattern) {
  try {
    size_t used = 0;
    const long long value = std::stoll(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  throw DatasetError(file + ": file name does not match the expected pattern " + pattern);
}

/// Market-1501 / DukeMTMC names: ([-\d]+)_c(\d) (searched in the base name;
/// the originals search the full path, which gives the same result for their
/// layouts and cannot be fooled by a folder name).
constexpr const char* kMarketPattern =
    "<pid>_c<camera digit>... (regex ([-\\d]+)_c(\\d), e.g. 0002_c1s1_000451_03.jpg)";
constexpr const char* kFolderPattern =
    "<pid>_c<camera>... (regex ([-\\d]+)_c(\\d+), e.g. 0002_c12_000451.jpg)";

struct ParsedName {
  int64_t pid;
  int64_t camera;  // as written (1-based)
};

ParsedName parse_market_name(const std::string& path, bool single_digit_camera) {
  // Market-1501 and DukeMTMC as the originals: one camera digit. A user's
  // own folder may have ten cameras or more.
  static const std::regex one_digit(R"(([-\d]+)_c(\d))");
  static const std::regex digits(R"(([-\d]+)_c(\d+))");
  const char* expected = single_digit_camera ? kMarketPattern : kFolderPattern;
  const std::string name = fs::path(path).filename().string();
  std::smatch match;
  if (!std::regex_search(name, match, single_digit_camera ? one_digit : digits)) {
    throw DatasetError(path + ": file name does not match the expected pattern " + expected);
  }
  return {to_int(match[1], path, expected), to_int(match[2], path, expected)};
}

struct MarketRules {
  bool skip_junk;            // pid -1 skipped
  int64_t min_pid;           // smallest id kept
  int64_t max_pid;           // < 0: unbounded
  int64_t max_camera;        // < 0: unbounded
  bool single_digit_camera;  // regex _c(\d) rather than _c(\d+)
};

std::vector<ReidSample> read_market_split(const fs::path& dir, const MarketRules& rules,
                                          bool allow_png) {
  std::vector<ReidSample> split;
  for (const std::string& path : list_images(dir, allow_png)) {
    const ParsedName parsed = parse_market_name(path, rules.single_digit_camera);
    if (rules.skip_junk && parsed.pid == -1) continue;
    if (parsed.pid < rules.min_pid || (rules.max_pid >= 0 && parsed.pid > rules.max_pid)) {
      throw DatasetError(path + ": person id " + std::to_string(parsed.pid) + " outside [" +
                         std::to_string(rules.min_pid) + ", " +
                         (rules.max_pid >= 0 ? std::to_string(rules.max_pid) : "inf") + "]" +
                         (rules.skip_junk ? " (-1 is junk and skipped)" : ""));
    }
    if (parsed.camera < 1 || (rules.max_camera >= 0 && parsed.camera > rules.max_camera)) {
      throw DatasetError(path + ": camera " + std::to_string(parsed.camera) + " outside [1, " +
                         (rules.max_camera >= 0 ? std::to_string(rules.max_camera) : "inf") + "]");
    }
    split.push_back({path, parsed.pid, parsed.camera - 1});
  }
  return split;
}

/// MSMT17 converted to Market style (TLlib): <pid>_c<camera>_<rest>, exactly
/// three '_'-separated parts.
constexpr const char* kMsmtMarketPattern =
    "<pid>_c<camera>_<rest> (exactly three '_'-separated parts, e.g. 0012_c3_0303morning0015.jpg)";

std::vector<ReidSample> read_msmt_market_split(const fs::path& dir) {
  std::vector<ReidSample> split;
  for (const std::string& path : list_images(dir, true)) {
    const std::string stem = fs::path(path).stem().string();
    std::vector<std::string> parts;
    std::stringstream stream(stem);
    for (std::string part; std::getline(stream, part, '_');) parts.push_back(part);
    if (parts.size() != 3 || parts[1].size() < 2 || parts[1][0] != 'c') {
      throw DatasetError(path + ": file name does not match the expected pattern " +
                         kMsmtMarketPattern);
    }
    const int64_t pid = to_int(parts[0], path, kMsmtMarketPattern);
    const int64_t camera = to_int(parts[1].substr(1), path, kMsmtMarketPattern);
    if (pid < 0 || camera < 1) {
      throw DatasetError(path + ": negative person id or camera below 1 in " + kMsmtMarketPattern);
    }
    split.push_back({path, pid, camera - 1});
  }
  return split;
}

/// MSMT17_V1 list files (MMT): "<dir>/<pid>_<n>_<camera>_<rest>.jpg <label>";
/// the image lives under `image_dir`; cameras stay 1-based as in MMT.
constexpr const char* kMsmtListPattern =
    "<pid>_<n>_<camera>_... (regex ([-\\d]+)_([-\\d]+)_([-\\d]+) on the base name)";

std::vector<ReidSample> read_msmt_list(const fs::path& list_file, const fs::path& image_dir) {
  std::ifstream in(list_file);
  if (!in) throw DatasetError(list_file.string() + ": list file not found");
  static const std::regex pattern(R"(([-\d]+)_([-\d]+)_([-\d]+))");
  std::vector<ReidSample> split;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    std::istringstream tokens(line);
    std::string relative;
    if (!(tokens >> relative)) continue;  // blank line
    const std::string name = fs::path(relative).filename().string();
    std::smatch match;
    const std::string where =
        list_file.string() + ":" + std::to_string(number) + " (" + relative + ")";
    if (!std::regex_search(name, match, pattern)) {
      throw DatasetError(where + ": file name does not match the expected pattern " +
                         kMsmtListPattern);
    }
    split.push_back({(image_dir / relative).string(), to_int(match[1], where, kMsmtListPattern),
                     to_int(match[3], where, kMsmtListPattern)});
  }
  return split;
}

void sort_split(std::vector<ReidSample>& split) {
  std::sort(split.begin(), split.end(),
            [](const ReidSample& a, const ReidSample& b) { return a.path < b.path; });
}

int64_t relabel(std::vector<ReidSample>& train) {
  std::map<int64_t, int64_t> labels;
  for (const auto& sample : train) labels.emplace(sample.pid, 0);
  int64_t next = 0;
  for (auto& [pid, label] : labels) label = next++;
  for (auto& sample : train) sample.pid = labels.at(sample.pid);
  return next;
}

void require_non_empty(const std::vector<ReidSample>& split, const fs::path& where) {
  if (split.empty()) throw DatasetError(where.string() + ": split is empty (no images)");
}

/// The data set's own folder: `root` itself when it holds `marker`, else the
/// standard sub-folder when that does.
fs::path resolve_root(const fs::path& root, const char* sub_folder, const char* marker) {
  std::error_code error;
  if (!fs::is_directory(root, error)) throw DatasetError(root.string() + ": folder not found");
  if (fs::exists(root / marker, error)) return root;
  if (sub_folder[0] != '\0' && fs::exists(root / sub_folder / marker, error)) {
    return root / sub_folder;
  }
  throw DatasetError(root.string() + ": no " + marker + " here" +
                     (sub_folder[0] != '\0' ? std::string(" nor in ") + sub_folder + "/" : "") +
                     " (is --kind right?)");
}

}  // namespace

ReidDatasetKind parse_reid_dataset_kind(const std::string& name) {
  std::string known;
  for (const auto& info : kKinds) {
    if (name == info.name) return info.kind;
    known += std::string(known.empty() ? "" : ", ") + info.name;
  }
  throw DatasetError("unknown data set kind '" + name + "' (known: " + known + ")");
}

const char* reid_dataset_kind_name(ReidDatasetKind kind) {
  return info_of(kind).name;
}

ReidDataset load_reid_dataset(ReidDatasetKind kind, const std::string& root_text) {
  const KindInfo& info = info_of(kind);
  ReidDataset dataset;
  dataset.kind = kind;
  const fs::path root(root_text);
  fs::path base;
  if (kind == ReidDatasetKind::kMsmt17) {
    base = resolve_root(root, info.sub_folder, "list_train.txt");
    for (const char* images : {"train", "test"}) {
      std::error_code error;
      if (!fs::is_directory(base / images, error)) {
        throw DatasetError((base / images).string() +
                           ": folder not found (MSMT17_V1 keeps its "
                           "images in train/ and test/ beside the list files)");
      }
    }
    dataset.train = read_msmt_list(base / "list_train.txt", base / "train");
    std::vector<ReidSample> val = read_msmt_list(base / "list_val.txt", base / "train");
    dataset.train.insert(dataset.train.end(), val.begin(), val.end());
    dataset.query = read_msmt_list(base / "list_query.txt", base / "test");
    dataset.gallery = read_msmt_list(base / "list_gallery.txt", base / "test");
  } else {
    base = resolve_root(root, info.sub_folder, "bounding_box_train");
    if (kind == ReidDatasetKind::kMsmt17MarketLayout) {
      dataset.train = read_msmt_market_split(base / "bounding_box_train");
      dataset.query = read_msmt_market_split(base / "query");
      dataset.gallery = read_msmt_market_split(base / "bounding_box_test");
    } else {
      MarketRules rules{};
      bool allow_png = false;
      switch (kind) {
        case ReidDatasetKind::kMarket1501: rules = {true, 0, 1501, 6, true}; break;
        // DukeMTMC: no junk filtering in the originals, so an id -1 is kept.
        case ReidDatasetKind::kDukeMtmc: rules = {false, -1, -1, 8, true}; break;
        default:
          rules = {true, 0, -1, -1, false};
          allow_png = true;
          break;
      }
      dataset.train = read_market_split(base / "bounding_box_train", rules, allow_png);
      dataset.query = read_market_split(base / "query", rules, allow_png);
      dataset.gallery = read_market_split(base / "bounding_box_test", rules, allow_png);
    }
  }
  dataset.root = base.string();
  sort_split(dataset.train);
  sort_split(dataset.query);
  sort_split(dataset.gallery);
  const bool lists = kind == ReidDatasetKind::kMsmt17;
  require_non_empty(dataset.train, lists ? base / "list_train.txt" : base / "bounding_box_train");
  require_non_empty(dataset.query, lists ? base / "list_query.txt" : base / "query");
  require_non_empty(dataset.gallery,
                    lists ? base / "list_gallery.txt" : base / "bounding_box_test");
  if (kind == ReidDatasetKind::kMsmt17MarketLayout) {
    // TLlib asserts the converted train ids are exactly 0..n-1.
    std::set<int64_t> pids;
    for (const auto& sample : dataset.train) pids.insert(sample.pid);
    if (*pids.begin() != 0 || *pids.rbegin() != static_cast<int64_t>(pids.size()) - 1) {
      throw DatasetError((base / "bounding_box_train").string() +
                         ": converted MSMT17 train ids must be exactly 0..n-1, found " +
                         std::to_string(pids.size()) + " ids in [" + std::to_string(*pids.begin()) +
                         ", " + std::to_string(*pids.rbegin()) + "]");
    }
  }
  dataset.num_train_ids = relabel(dataset.train);
  return dataset;
}

SplitStats split_stats(const std::vector<ReidSample>& split) {
  std::set<int64_t> pids, cameras;
  for (const auto& sample : split) {
    pids.insert(sample.pid);
    cameras.insert(sample.camera);
  }
  return {static_cast<int64_t>(split.size()), static_cast<int64_t>(pids.size()),
          static_cast<int64_t>(cameras.size())};
}

std::vector<LabeledImage> load_image_list(const std::string& list_file, const std::string& root) {
  std::ifstream in(list_file);
  if (!in) throw DatasetError(list_file + ": image list not found");
  fs::path base = root.empty() ? fs::path(list_file).parent_path() : fs::path(root);
  // TLlib's layout (office31/image_list/amazon.txt listing amazon/images/...)
  // joins paths to the data set root, the folder above image_list/.
  if (root.empty() && base.filename() == "image_list") base = base.parent_path();
  std::vector<LabeledImage> images;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    std::istringstream stream(line);
    std::vector<std::string> tokens;
    for (std::string token; stream >> token;) tokens.push_back(token);
    if (tokens.empty()) continue;
    const std::string where = list_file + ":" + std::to_string(number);
    if (tokens.size() < 2) {
      throw DatasetError(where + ": expected '<path> <integer label>', got '" + line + "'");
    }
    int64_t label = -1;
    try {
      size_t used = 0;
      label = std::stoll(tokens.back(), &used);
      if (used != tokens.back().size()) label = -1;
    } catch (const std::exception&) {
      label = -1;
    }
    if (label < 0) {
      throw DatasetError(where + ": label '" + tokens.back() +
                         "' is not a non-negative integer (expected '<path> <integer label>')");
    }
    std::string path = tokens[0];
    for (size_t i = 1; i + 1 < tokens.size(); ++i) path += " " + tokens[i];
    const fs::path file(path);
    images.push_back({file.is_absolute() ? path : (base / file).string(), label});
  }
  if (images.empty()) throw DatasetError(list_file + ": image list is empty");
  return images;
}

}  // namespace tandem::worker
