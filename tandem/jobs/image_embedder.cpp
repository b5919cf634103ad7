#include "tandem/jobs/image_embedder.h"

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "tandem/jobs/train_jobs.h"
#include "tandem/methods/models/reidentifier.h"
#include "tandem/methods/models/weights.h"
#include "tandem/methods/serialization.h"
#include "tandem/spec/job_spec.h"
#include "tandem/worker/data/image.h"
#include "tandem/worker/data/transforms.h"

namespace tandem::jobs {
namespace fs = std::filesystem;

/// One output folder's model, as its ranking export computed features.
struct ImageEmbedder::Model {
  /// ranking.json's and the weights' modification times and sizes.
  std::string stamp;
  fs::path weights;
  uint64_t last_used = 0;
  /// One forward at a time.
  std::mutex mutex;
  methods::models::ReIdentifier model{nullptr};
  std::unique_ptr<worker::ImageTransform> transform;
};

namespace {

/// "mtime:size" of `path`, or "-" when it cannot be read.
std::string file_stamp(const fs::path& path) {
  std::error_code error;
  const auto time = fs::last_write_time(path, error);
  if (error) return "-";
  const auto size = fs::file_size(path, error);
  if (error) return "-";
  return std::to_string(time.time_since_epoch().count()) + ":" + std::to_string(size);
}

fs::path marker_of(const fs::path& dir) {
  return dir / "ranking.json";
}

nlohmann::json read_marker(const fs::path& marker) {
  std::ifstream in(marker);
  if (!in) throw std::runtime_error(marker.string() + ": job has no ranking export yet");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(marker.string() + ": not valid JSON (" + e.what() + ")");
  }
}

/// The weights file ranking.json names (relative to the output folder when
/// relative).
fs::path weights_of(const fs::path& dir, const fs::path& marker, const nlohmann::json& ranking) {
  if (!ranking.contains("weights") || !ranking["weights"].is_string()) {
    throw std::runtime_error(marker.string() + ": no \"weights\" string");
  }
  const fs::path weights = ranking["weights"].get<std::string>();
  return weights.is_absolute() ? weights : dir / weights;
}

/// make_model seeds torch's global generator: one model built at a time.
std::mutex& construction_mutex() {
  static std::mutex mutex;
  return mutex;
}

}  // namespace

ImageEmbedder::ImageEmbedder(size_t capacity) : capacity_(std::max<size_t>(1, capacity)) {}

ImageEmbedder::~ImageEmbedder() = default;

void ImageEmbedder::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  models_.clear();
}

std::shared_ptr<ImageEmbedder::Model> ImageEmbedder::model_of(const std::string& output_dir) {
  fs::path dir = fs::path(output_dir).lexically_normal();
  if (dir.has_relative_path() && dir.filename().empty()) dir = dir.parent_path();
  const fs::path marker = marker_of(dir);
  const std::string marker_stamp = file_stamp(marker);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = models_.find(dir.string());
    if (found != models_.end() &&
        found->second->stamp == marker_stamp + ";" + file_stamp(found->second->weights)) {
      found->second->last_used = ++clock_;
      return found->second;
    }
  }
  // Load outside the lock: other folders keep embedding meanwhile.
  const nlohmann::json ranking = read_marker(marker);
  auto model = std::make_shared<Model>();
  model->weights = weights_of(dir, marker, ranking);
  model->stamp = marker_stamp + ";" + file_stamp(model->weights);
  JobSpec spec;
  int64_t height = 0, width = 0;
  try {
    spec.set_backbone(ranking.at("backbone").get<std::string>());
    spec.set_backbone_width(ranking.at("backbone_width").get<int64_t>());
    spec.set_backbone_depth(ranking.at("backbone_depth").get<int64_t>());
    spec.set_seed(ranking.at("seed").get<uint64_t>());
    height = ranking.at("height").get<int64_t>();
    width = ranking.at("width").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(marker.string() + ": " + e.what());
  }
  if (spec.backbone() != "small" && spec.backbone() != "resnet18" &&
      spec.backbone() != "resnet50" && spec.backbone() != "resnet50_ibn_a") {
    throw std::runtime_error(marker.string() + ": unknown backbone '" + spec.backbone() + "'");
  }
  if (!fs::exists(model->weights)) {
    throw std::runtime_error(model->weights.string() + ": missing (the weights " + marker.string() +
                             " names)");
  }
  try {
    model->transform =
        std::make_unique<worker::ImageTransform>(worker::TransformOptions::test(height, width));
    {
      std::lock_guard<std::mutex> lock(construction_mutex());
      model->model = make_model(spec, 1);
    }
    // As the export's model: every weight but the head (never used here).
    const auto report = methods::models::load_weights(
        *model->model, methods::load_state_dict(model->weights.string()));
    if (report.loaded.empty()) {
      throw std::runtime_error(model->weights.string() + ": no weight matches the " +
                               spec.backbone() + " backbone of " + marker.string() + " (" +
                               report.summary() + ")");
    }
  } catch (const c10::Error& e) {
    throw std::runtime_error(e.what_without_backtrace());
  }
  model->model->eval();
  std::lock_guard<std::mutex> lock(mutex_);
  model->last_used = ++clock_;
  models_[dir.string()] = model;
  while (models_.size() > capacity_) {
    auto oldest = models_.begin();
    for (auto it = models_.begin(); it != models_.end(); ++it) {
      if (it->second->last_used < oldest->second->last_used) oldest = it;
    }
    models_.erase(oldest);
  }
  return model;
}

std::vector<float> ImageEmbedder::embed(const std::string& output_dir, const std::string& bytes) {
  worker::Image image;
  try {
    image = worker::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                 "the uploaded image");
  } catch (const worker::ImageError& e) {
    throw std::invalid_argument(e.what());
  }
  const std::shared_ptr<Model> model = model_of(output_dir);
  worker::Rng rng(0);  // the test transform draws nothing
  const torch::Tensor batch = (*model->transform)(image, rng).unsqueeze(0);
  torch::Tensor feature;
  {
    std::lock_guard<std::mutex> lock(model->mutex);
    torch::NoGradGuard no_grad;
    const torch::Tensor neck = model->model->forward(batch).neck;
    // As worker::extract_features: L2-normalised neck, float32.
    feature =
        torch::nn::functional::normalize(neck, torch::nn::functional::NormalizeFuncOptions().dim(1))
            .to(torch::kFloat32)
            .contiguous();
  }
  return std::vector<float>(feature.data_ptr<float>(), feature.data_ptr<float>() + feature.numel());
}

std::vector<float> embed_image_bytes(const std::string& output_dir, const std::string& bytes) {
  static ImageEmbedder embedder;
  return embedder.embed(output_dir, bytes);
}

}  // namespace tandem::jobs
