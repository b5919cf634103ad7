#include "tandem/server/ranking_index.h"

#include <faiss/IndexFlat.h>
#include <torch/types.h>

#include <absl/strings/str_cat.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <utility>

#include "tandem/methods/serialization.h"

namespace tandem::server {
namespace {
namespace fs = std::filesystem;

constexpr const char* kGalleryFeatures = "gallery_features.pt";
constexpr const char* kGalleryPaths = "gallery.txt";
constexpr const char* kQueryFeatures = "query_features.pt";
constexpr const char* kQueryPaths = "query.txt";
constexpr const char* kMarker = "ranking.json";
/// FAISS's index type (faiss::Index::idx_t in 1.7.3, faiss::idx_t later).
using Label = decltype(faiss::Index::ntotal);

/// The tensor `key` of `state` read from `file`, or INTERNAL naming both.
absl::StatusOr<torch::Tensor> entry(const methods::StateDict& state, const std::string& key,
                                    const std::string& file) {
  const torch::Tensor* tensor = state.find(key);
  if (tensor == nullptr) return absl::InternalError(absl::StrCat(file, ": no '", key, "' tensor"));
  return *tensor;
}

absl::StatusOr<std::vector<int64_t>> id_column(const methods::StateDict& state,
                                               const std::string& key, int64_t rows,
                                               const std::string& file) {
  auto tensor = entry(state, key, file);
  if (!tensor.ok()) return tensor.status();
  if (tensor->dim() != 1 || tensor->size(0) != rows) {
    return absl::InternalError(absl::StrCat(file, ": '", key, "' has shape ",
                                            c10::str(tensor->sizes()), ", expected [", rows,
                                            "] (one per feature row)"));
  }
  const torch::Tensor ids = tensor->to(torch::kInt64).contiguous();
  return std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + rows);
}

/// The data set root ranking.json names ("dataset"; "" when it names none).
absl::StatusOr<std::string> dataset_root(const fs::path& marker) {
  std::ifstream in(marker);
  if (!in) return absl::InternalError(absl::StrCat(marker.string(), ": cannot be read"));
  nlohmann::json ranking = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (ranking.is_discarded() || !ranking.is_object()) {
    return absl::InternalError(absl::StrCat(marker.string(), ": not a JSON object"));
  }
  const auto dataset = ranking.find("dataset");
  if (dataset == ranking.end()) return std::string();
  if (!dataset->is_string()) {
    return absl::InternalError(absl::StrCat(marker.string(), ": 'dataset' is not a string"));
  }
  return dataset->get<std::string>();
}

}  // namespace

std::string RankingIndex::relative_to_dataset(const std::string& path, const std::string& root) {
  const fs::path normal = fs::path(path).lexically_normal();
  fs::path base = fs::path(root).lexically_normal();
  if (base.has_relative_path() && base.filename().empty()) base = base.parent_path();
  if (!root.empty()) {
    const fs::path relative = normal.lexically_relative(base);
    if (!relative.empty() && *relative.begin() != ".." && relative != ".") {
      return relative.generic_string();
    }
  } else if (normal.is_relative() && !normal.empty() && *normal.begin() != "..") {
    return normal.generic_string();  // no root named: relative paths as exported
  }
  return normal.filename().string();
}

RankingIndex::~RankingIndex() = default;

const std::vector<std::string>& RankingIndex::export_files() {
  static const std::vector<std::string> files = {kGalleryFeatures, kGalleryPaths, kQueryFeatures,
                                                 kQueryPaths, kMarker};
  return files;
}

absl::StatusOr<std::shared_ptr<const RankingIndex>> RankingIndex::load(
    const std::string& output_dir) {
  const fs::path dir(output_dir);
  std::error_code error;
  if (!fs::exists(dir / kMarker, error)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job has no ranking export yet: ", (dir / kMarker).string(), " not found"));
  }
  auto root = dataset_root(dir / kMarker);
  if (!root.ok()) return root.status();
  std::shared_ptr<RankingIndex> index(new RankingIndex());
  index->output_dir_ = output_dir;
  // Reads one split's features, ids, cameras and paths; checks they agree.
  const auto read_split = [&dir, &root](const char* features_file, const char* paths_file,
                                        Split& split) -> absl::StatusOr<int64_t> {
    const std::string file = (dir / features_file).string();
    std::error_code missing;
    if (!fs::exists(file, missing)) {
      return absl::InternalError(absl::StrCat(file, ": missing from the ranking export"));
    }
    methods::StateDict state;
    try {
      state = methods::load_state_dict(file);
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat(file, ": cannot be read: ", e.what()));
    }
    auto features = entry(state, "features", file);
    if (!features.ok()) return features.status();
    if (features->dim() != 2 || features->size(1) == 0) {
      return absl::InternalError(absl::StrCat(file, ": 'features' has shape ",
                                              c10::str(features->sizes()),
                                              ", expected [rows, dimension]"));
    }
    const int64_t rows = features->size(0);
    const torch::Tensor values = features->to(torch::kFloat32).contiguous();
    if (!torch::isfinite(values).all().item<bool>()) {
      return absl::InternalError(absl::StrCat(file, ": 'features' holds non-finite values"));
    }
    split.features.assign(values.data_ptr<float>(), values.data_ptr<float>() + values.numel());
    auto pids = id_column(state, "pids", rows, file);
    if (!pids.ok()) return pids.status();
    auto cameras = id_column(state, "cameras", rows, file);
    if (!cameras.ok()) return cameras.status();
    split.pids = *std::move(pids);
    split.cameras = *std::move(cameras);
    const std::string list = (dir / paths_file).string();
    std::ifstream in(list);
    if (!in) return absl::InternalError(absl::StrCat(list, ": missing from the ranking export"));
    for (std::string line; std::getline(in, line);) {
      split.paths.push_back(relative_to_dataset(line, *root));
    }
    if (static_cast<int64_t>(split.paths.size()) != rows) {
      return absl::InternalError(absl::StrCat(list, ": ", split.paths.size(), " paths for the ",
                                              rows, " feature rows of ", file));
    }
    return features->size(1);
  };
  auto gallery_dim = read_split(kGalleryFeatures, kGalleryPaths, index->gallery_);
  if (!gallery_dim.ok()) return gallery_dim.status();
  if (index->gallery_.pids.empty()) {
    return absl::InternalError(
        absl::StrCat((dir / kGalleryFeatures).string(), ": the gallery is empty"));
  }
  auto query_dim = read_split(kQueryFeatures, kQueryPaths, index->query_);
  if (!query_dim.ok()) return query_dim.status();
  if (*query_dim != *gallery_dim) {
    return absl::InternalError(absl::StrCat(
        (dir / kQueryFeatures).string(), ": features of width ", *query_dim, ", the gallery's (",
        (dir / kGalleryFeatures).string(), ") are ", *gallery_dim, " wide"));
  }
  index->dimension_ = *gallery_dim;
  index->index_ = std::make_unique<faiss::IndexFlatL2>(index->dimension_);
  index->index_->add(index->gallery_size(), index->gallery_.features.data());
  return std::shared_ptr<const RankingIndex>(std::move(index));
}

absl::StatusOr<tandem::v1::RankResponse> RankingIndex::search(const float* feature,
                                                              int top_k) const {
  if (top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k must be >= 0 (0: ", kDefaultTopK, "), got ", top_k));
  }
  const int64_t k = std::min<int64_t>(top_k == 0 ? kDefaultTopK : top_k, gallery_size());
  std::vector<float> squared(k);
  std::vector<Label> labels(k);
  index_->search(1, feature, k, squared.data(), labels.data());
  // Nearest first, ties by gallery order.
  std::vector<std::pair<float, Label>> hits;
  for (int64_t i = 0; i < k; ++i) {
    if (labels[i] >= 0) hits.emplace_back(squared[i], labels[i]);
  }
  std::sort(hits.begin(), hits.end());
  tandem::v1::RankResponse response;
  for (const auto& [distance, row] : hits) {
    tandem::v1::RankedEntry* out = response.add_entries();
    out->set_gallery_path(gallery_.paths[row]);
    out->set_person_id(gallery_.pids[row]);
    out->set_camera_id(gallery_.cameras[row]);
    out->set_distance(std::sqrt(std::max(0.0, static_cast<double>(distance))));
  }
  return response;
}

absl::StatusOr<tandem::v1::RankResponse> RankingIndex::rank_query(int64_t query_index,
                                                                  int top_k) const {
  const std::string range =
      absl::StrCat("[0, ", query_size(), ") (the job's query set has ", query_size(), " images)");
  if (query_index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("query_index must be in ", range, ", got ", query_index));
  }
  if (query_index >= query_size()) {
    return absl::OutOfRangeError(
        absl::StrCat("query_index ", query_index, " is out of range ", range));
  }
  auto response = search(query_.features.data() + query_index * dimension_, top_k);
  if (!response.ok()) return response;
  response->set_query_person_id(query_.pids[query_index]);
  response->set_query_camera_id(query_.cameras[query_index]);
  return response;
}

absl::StatusOr<tandem::v1::RankResponse> RankingIndex::rank_features(
    const std::vector<float>& feature, int top_k) const {
  if (static_cast<int64_t>(feature.size()) != dimension_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the query feature has ", feature.size(), " values, the job's features have ", dimension_));
  }
  for (float value : feature) {
    if (!std::isfinite(value)) {
      return absl::InvalidArgumentError("the query feature holds non-finite values");
    }
  }
  return search(feature.data(), top_k);
}

namespace {

/// What changes when any export file is rewritten: each file's
/// modification time and size ("-" for a missing file).
std::string export_stamp(const fs::path& dir) {
  std::string stamp;
  for (const std::string& name : RankingIndex::export_files()) {
    std::error_code error;
    const auto time = fs::last_write_time(dir / name, error);
    if (error) {
      stamp += "-;";
      continue;
    }
    const auto size = fs::file_size(dir / name, error);
    stamp += absl::StrCat(time.time_since_epoch().count(), ":", error ? 0 : size, ";");
  }
  return stamp;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const RankingIndex>> RankingIndexCache::get(
    const std::string& output_dir) {
  fs::path normal = fs::path(output_dir).lexically_normal();
  if (normal.has_relative_path() && normal.filename().empty()) normal = normal.parent_path();
  const std::string key = normal.string();
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& slot = entries_[key];
    if (!slot) slot = std::make_shared<Entry>();
    entry = slot;
  }
  std::lock_guard<std::mutex> lock(entry->mutex);
  const std::string stamp = export_stamp(key);
  if (entry->index && entry->stamp == stamp) return entry->index;
  entry->index.reset();
  auto index = RankingIndex::load(output_dir);
  if (!index.ok()) return index.status();
  // A file rewritten during the load: keep the index, reload next time.
  entry->stamp = export_stamp(key) == stamp ? stamp : "";
  entry->index = *index;
  return entry->index;
}

void RankingIndexCache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.clear();
}

}  // namespace tandem::server
