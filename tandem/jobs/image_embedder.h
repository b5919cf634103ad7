// Embeds an uploaded image with a finished job's exported model, for the
// Rank RPC's image queries: OUTPUT_DIR/ranking.json (written by `tandem
// train`'s ranking export) names the weights and how to rebuild the model;
// the image goes through the jobs' test transform and comes out as the
// L2-normalised neck feature that the export computed for its own images,
// so it ranks against OUTPUT_DIR/gallery_features.pt
// (server::RankingIndex::rank_features).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tandem::jobs {

/// Models of recently used output folders, reloaded when ranking.json or the
/// weights file change (modification time or size). Thread-safe: one model
/// embeds one image at a time, different folders in parallel.
class ImageEmbedder {
 public:
  /// Keeps at most `capacity` models (least recently used dropped first).
  explicit ImageEmbedder(size_t capacity = 4);
  ~ImageEmbedder();
  ImageEmbedder(const ImageEmbedder&) = delete;
  ImageEmbedder& operator=(const ImageEmbedder&) = delete;

  /// The L2-normalised feature of the JPEG or PNG `bytes` under the model of
  /// `output_dir`'s ranking export (its width is the exported features').
  /// Throws std::invalid_argument for bytes that are empty or do not decode
  /// (the message says why), std::runtime_error naming the file when the
  /// export is missing ("job has no ranking export yet") or unusable.
  std::vector<float> embed(const std::string& output_dir, const std::string& bytes);

  /// Drops every loaded model.
  void clear();

 private:
  struct Model;
  std::shared_ptr<Model> model_of(const std::string& output_dir);

  size_t capacity_;
  std::mutex mutex_;
  uint64_t clock_ = 0;
  std::map<std::string, std::shared_ptr<Model>> models_;
};

/// ImageEmbedder::embed on one process-wide embedder.
std::vector<float> embed_image_bytes(const std::string& output_dir, const std::string& bytes);

}  // namespace tandem::jobs
