// Re-ID data sets (Market-1501, DukeMTMC-reID, MSMT17, a user's own
// Market-style folder) and ImageList files for the classification jobs.
//
// Parsing follows the Python originals (MMT, TLlib; see
// docs/data.md): file names give (person id, camera id), Market-1501's junk
// images (id -1) are skipped in every split, its distractors (id 0) stay in
// the gallery, and train ids are relabelled 0..n-1 in ascending order. Paths
// are sorted so every run, on every file system, sees the same order.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::worker {

/// One image of a re-ID split: its path, person id and camera id (0-based,
/// except MSMT17's list layout, which keeps MMT's 1-based cameras).
struct ReidSample {
  std::string path;
  int64_t pid = 0;
  int64_t camera = 0;
};

/// The layouts Tandem reads; names as `tandem dataset info --kind` spells them.
enum class ReidDatasetKind {
  kMarket1501,          ///< "market1501":
                        ///< Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}
  kDukeMtmc,            ///< "dukemtmc": DukeMTMC-reID/ with the same three folders
  kMsmt17,              ///< "msmt17": MSMT17_V1/list_{train,val,query,gallery}.txt + train/, test/
  kMsmt17MarketLayout,  ///< "msmt17-market-layout": converted, names pid_cXX_rest
  kFolder,              ///< "folder": a user's own cameras, Market-style names, any ids
};

/// "market1501" → kMarket1501, ...; an unknown name is a DatasetError listing the known ones.
ReidDatasetKind parse_reid_dataset_kind(const std::string& name);
const char* reid_dataset_kind_name(ReidDatasetKind kind);

/// The three splits of a re-ID data set. Train ids are relabelled 0..n-1;
/// query and gallery keep the raw ids (evaluation compares them).
struct ReidDataset {
  ReidDatasetKind kind = ReidDatasetKind::kFolder;
  /// The folder the splits were read from (the root, or its standard sub-folder).
  std::string root;
  std::vector<ReidSample> train;
  std::vector<ReidSample> query;
  std::vector<ReidSample> gallery;
  /// Number of train identities (train pids are 0..num_train_ids-1).
  int64_t num_train_ids = 0;
};

/// A missing folder, an empty split or a file name that does not parse.
/// what() names the file or folder and, for names, the expected pattern.
class DatasetError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Reads a data set of `kind` under `root`. `root` may be the data set's own
/// folder (holding bounding_box_train/ or list_train.txt) or the folder above
/// it (holding Market-1501-v15.09.15/, DukeMTMC-reID/, MSMT17_V1/).
ReidDataset load_reid_dataset(ReidDatasetKind kind, const std::string& root);

/// Image, identity and camera counts of one split.
struct SplitStats {
  int64_t images = 0;
  int64_t ids = 0;
  int64_t cameras = 0;
};
SplitStats split_stats(const std::vector<ReidSample>& split);

/// One line of an ImageList file (`<path> <int label>`).
struct LabeledImage {
  std::string path;
  int64_t label = 0;
};

/// Reads an ImageList text file (Office-31's image_list/amazon.txt, ...): one
/// sample per line, the label is the last whitespace-separated token and the
/// path is the rest re-joined with single spaces; a relative path is joined
/// to `root` (empty: the list file's folder, or the folder above it when that
/// is named image_list/, TLlib's layout). Blank lines are skipped; the
/// file's order is kept (it is the user's explicit order). A line without a
/// path or with a non-integer or negative label is a DatasetError naming the
/// file and line.
std::vector<LabeledImage> load_image_list(const std::string& list_file,
                                          const std::string& root = "");

}  // namespace tandem::worker
