// The ranking backend of the Rank RPC: a finished job's ranking export
// (OUTPUT_DIR/gallery_features.pt, gallery.txt, query_features.pt,
// query.txt and ranking.json, written by `tandem train`) loaded into a FAISS
// exact L2 index, and a cache of such indexes by output folder.
//
// Ranking is the plain top-k of the whole gallery by Euclidean distance on
// the exported L2-normalised features, nearest first (ties by gallery
// order). It is a retrieval API, not the Market-1501 evaluation protocol:
// gallery images of the query's own id and camera, junk (-1) and
// distractor (0) ids are all ranked like any other image.
//
// Gallery paths come back relative to the data set's root (ranking.json's
// "dataset"), never absolute: a client learns nothing of the server's file
// system beyond the data set (issue 19).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

#include "tandem/v1/tandem.pb.h"

namespace faiss {
struct IndexFlatL2;
}

namespace tandem::server {

/// One job's ranking export in memory. Immutable after load; every method
/// is const and safe to call from many threads at once.
class RankingIndex {
 public:
  /// Entries returned for top_k 0.
  static constexpr int kDefaultTopK = 10;

  /// Loads and validates the export in `output_dir`; gallery and query
  /// paths become relative_to_dataset(path, ranking.json's "dataset").
  /// FAILED_PRECONDITION "job has no ranking export yet" when ranking.json
  /// (written last by the export) is missing; INTERNAL naming the file when
  /// a file is missing, unreadable, not JSON (ranking.json) or disagrees
  /// with the others (row counts, feature widths).
  static absl::StatusOr<std::shared_ptr<const RankingIndex>> load(const std::string& output_dir);

  ~RankingIndex();
  RankingIndex(const RankingIndex&) = delete;
  RankingIndex& operator=(const RankingIndex&) = delete;

  /// The top_k gallery entries nearest to query `query_index` of the job's
  /// query set (query.txt order), with the query's own person and camera id.
  /// top_k 0: kDefaultTopK; larger than the gallery: the whole gallery;
  /// negative: INVALID_ARGUMENT. query_index outside [0, query_size()):
  /// INVALID_ARGUMENT (negative) or OUT_OF_RANGE, naming the valid range.
  absl::StatusOr<tandem::v1::RankResponse> rank_query(int64_t query_index, int top_k) const;

  /// The top_k gallery entries nearest to `feature` (dimension() values,
  /// ranked as given: pass an L2-normalised feature such as
  /// jobs::embed_image_bytes returns). Query ids in the response are 0.
  /// Wrong size or a non-finite value: INVALID_ARGUMENT.
  absl::StatusOr<tandem::v1::RankResponse> rank_features(const std::vector<float>& feature,
                                                         int top_k) const;

  const std::string& output_dir() const { return output_dir_; }
  int64_t gallery_size() const { return static_cast<int64_t>(gallery_.pids.size()); }
  int64_t query_size() const { return static_cast<int64_t>(query_.pids.size()); }
  /// Feature width.
  int64_t dimension() const { return dimension_; }

  /// The export's files, relative to OUTPUT_DIR (ranking.json last).
  static const std::vector<std::string>& export_files();

  /// `path` (an exported image path) as the Rank RPC returns it: relative
  /// to the data set `root`, compared lexically ("a/./b", "a/x/../b" and
  /// "a/b/" are "a/b"); a path not under `root` is just its file name. With
  /// no root (""), a relative path that stays below "." is kept. Never an
  /// absolute path.
  static std::string relative_to_dataset(const std::string& path, const std::string& root);

 private:
  /// One exported split: rows of `features` (n × dimension, row-major).
  struct Split {
    std::vector<float> features;
    std::vector<int64_t> pids, cameras;
    std::vector<std::string> paths;
  };

  RankingIndex() = default;
  absl::StatusOr<tandem::v1::RankResponse> search(const float* feature, int top_k) const;

  std::string output_dir_;
  int64_t dimension_ = 0;
  Split gallery_, query_;
  std::unique_ptr<faiss::IndexFlatL2> index_;
};

/// RankingIndex per output folder, loaded on first use and reloaded when
/// the export's files change (modification time or size). Thread-safe; a
/// load blocks only callers of the same folder.
class RankingIndexCache {
 public:
  /// The index of `output_dir`'s current export, or RankingIndex::load's
  /// error (failures are not cached: the next call tries again).
  absl::StatusOr<std::shared_ptr<const RankingIndex>> get(const std::string& output_dir);
  /// Drops every cached index.
  void clear();

 private:
  struct Entry {
    std::mutex mutex;
    std::string stamp;
    std::shared_ptr<const RankingIndex> index;
  };
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
};

}  // namespace tandem::server
