// The data loader: multi-threaded decode + augment + batch with prefetching.
//
// Worker threads claim whole batches in order, at most `prefetch_batches`
// ahead of the consumer (bounded memory: that many batches exist at once),
// and the consumer receives them in order. Each sample's augmentation draws
// from an Rng seeded by (seed, epoch, batch, position, view), so the batches
// of an epoch are the same whatever the thread count or timing. A corrupt or
// unreadable image is skipped (the batch is one shorter), logged once per
// file and counted, never fatal. The threads live as long as the loader and
// serve every epoch.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <torch/types.h>

#include "tandem/worker/data/image.h"
#include "tandem/worker/data/transforms.h"

namespace tandem::worker {

/// Where a loader's images come from: files, or images held in memory.
class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual int64_t size() const = 0;
  /// Decodes sample `index`; throws ImageError when it cannot.
  virtual Image load(int64_t index) const = 0;
  /// A name for logs (the path).
  virtual std::string name(int64_t index) const = 0;
};

/// Images read from files, decoded on the loader's threads.
class FileImageSource : public ImageSource {
 public:
  explicit FileImageSource(std::vector<std::string> paths) : paths_(std::move(paths)) {}
  int64_t size() const override { return static_cast<int64_t>(paths_.size()); }
  Image load(int64_t index) const override { return read_image(paths_.at(index)); }
  std::string name(int64_t index) const override { return paths_.at(index); }

 private:
  std::vector<std::string> paths_;
};

/// Images already decoded (Fashion-MNIST, tests).
class MemoryImageSource : public ImageSource {
 public:
  explicit MemoryImageSource(std::vector<Image> images) : images_(std::move(images)) {}
  int64_t size() const override { return static_cast<int64_t>(images_.size()); }
  Image load(int64_t index) const override { return images_.at(index); }
  std::string name(int64_t index) const override { return "image #" + std::to_string(index); }

 private:
  std::vector<Image> images_;
};

struct LoaderOptions {
  /// Decode/augment threads (>= 1).
  int64_t num_threads = 4;
  /// Batches in flight at most (being built or waiting for the consumer).
  int64_t prefetch_batches = 8;
  /// Independently augmented views per sample (MMT: 2).
  int64_t views = 1;
  /// Base seed of every augmentation.
  uint64_t seed = 0;
  /// Position of this loader's first sample within each global batch: a
  /// rank of W sharing global batches of B passes rank · B / W, so that every
  /// sample draws the augmentation of its global position and W ranks
  /// together produce exactly the single-rank batch.
  int64_t position_offset = 0;
  /// Copy each finished batch into page-locked (pinned) host memory on the
  /// loader thread, so that the trainer's `.to(cuda, non_blocking)` is an
  /// asynchronous DMA (PyTorch's DataLoader pin_memory). Needs a CUDA build
  /// with a visible GPU; the trainers set it when they train on one.
  bool pin_memory = false;
  /// Where the once-per-file message about a skipped image goes (default:
  /// stderr).
  std::function<void(const std::string&)> log;
};

/// One batch: `views[v]` is (B, 3, H, W) float32; `indices` (B) int64 are the
/// source indices of its samples (labels are looked up with them). B is the
/// requested batch size less the skipped images; a batch whose images were
/// all unreadable is not returned at all.
struct Batch {
  int64_t epoch = 0;
  int64_t batch_index = 0;
  std::vector<torch::Tensor> views;
  torch::Tensor indices;
  int64_t skipped = 0;
};

/// Counts of images that could not be used.
struct SkipStats {
  /// Distinct samples found unreadable (each logged once).
  int64_t unreadable_files = 0;
  /// Times a sample was left out of a batch.
  int64_t skipped_samples = 0;
};

/// Recycles the float buffers of batch tensors: a batch of 64 views at
/// 256 x 128 is 25 MB, and fresh pages for every batch cost more kernel time
/// (page faults, zeroing) than decoding. A tensor's deleter hands its buffer
/// back; at most `keep` free buffers are kept.
class BatchBufferPool : public std::enable_shared_from_this<BatchBufferPool> {
 public:
  explicit BatchBufferPool(size_t keep) : keep_(keep) {}
  ~BatchBufferPool();
  BatchBufferPool(const BatchBufferPool&) = delete;
  BatchBufferPool& operator=(const BatchBufferPool&) = delete;
  /// A float32 tensor of `sizes` whose storage returns here when released.
  torch::Tensor tensor(const std::vector<int64_t>& sizes);

 private:
  void give_back(float* buffer, size_t floats);
  std::mutex mutex_;
  size_t keep_;
  std::vector<std::pair<size_t, float*>> free_;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const ImageSource> source, ImageTransform transform,
             LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  /// Starts epoch `epoch` over `batches` (lists of source indices); an epoch
  /// still running is abandoned. Indices outside the source are a c10::Error.
  void start_epoch(int64_t epoch, std::vector<std::vector<int64_t>> batches);
  /// The next batch of the current epoch in order; nullopt after the last.
  /// A failure on a loader thread other than an unreadable image is rethrown
  /// when its batch is reached.
  std::optional<Batch> next();
  /// Batches in the current epoch.
  int64_t num_batches() const;
  SkipStats skip_stats() const;

 private:
  void worker_loop();
  Batch build(int64_t epoch, int64_t batch_index, const std::vector<int64_t>& indices);

  std::shared_ptr<const ImageSource> source_;
  ImageTransform transform_;
  LoaderOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable work_ready_;   // workers wait for claimable batches
  std::condition_variable batch_ready_;  // the consumer waits for its batch
  bool stopping_ = false;
  uint64_t generation_ = 0;  // bumped by start_epoch
  int64_t epoch_ = 0;
  std::shared_ptr<const std::vector<std::vector<int64_t>>> batches_;
  int64_t next_claim_ = 0;
  int64_t next_return_ = 0;
  std::map<int64_t, Batch> done_;
  /// Failures by batch: next() rethrows one when it reaches that batch, so
  /// where an error surfaces does not depend on timing.
  std::map<int64_t, std::exception_ptr> failures_;
  /// Batches being built, of any epoch (an abandoned epoch's still count
  /// towards prefetch_batches until they finish).
  int64_t building_ = 0;

  std::shared_ptr<BatchBufferPool> pool_;
  std::set<int64_t> unreadable_;
  std::atomic<int64_t> skipped_samples_{0};
  std::vector<std::thread> threads_;
};

}  // namespace tandem::worker
