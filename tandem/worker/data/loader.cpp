#include "tandem/worker/data/loader.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <iostream>

namespace tandem::worker {

BatchBufferPool::~BatchBufferPool() {
  for (auto& entry : free_) delete[] entry.second;
}

torch::Tensor BatchBufferPool::tensor(const std::vector<int64_t>& sizes) {
  size_t floats = 1;
  for (const int64_t size : sizes) floats *= static_cast<size_t>(size);
  float* buffer = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->first == floats) {
        buffer = it->second;
        free_.erase(it);
        break;
      }
    }
  }
  if (buffer == nullptr) buffer = new float[std::max<size_t>(floats, 1)];
  auto self = shared_from_this();  // the pool outlives every tensor it made
  return torch::from_blob(
      buffer, sizes,
      [self, floats](void* data) { self->give_back(static_cast<float*>(data), floats); },
      torch::kFloat32);
}

void BatchBufferPool::give_back(float* buffer, size_t floats) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.size() < keep_) {
      free_.emplace_back(floats, buffer);
      return;
    }
  }
  delete[] buffer;
}

DataLoader::DataLoader(std::shared_ptr<const ImageSource> source, ImageTransform transform,
                       LoaderOptions options)
    : source_(std::move(source)), transform_(std::move(transform)), options_(std::move(options)) {
  TORCH_CHECK(source_ != nullptr, "DataLoader: source is null");
  TORCH_CHECK(options_.num_threads >= 1 && options_.num_threads <= 256,
              "DataLoader: num_threads must be in [1, 256], got ", options_.num_threads);
  TORCH_CHECK(options_.prefetch_batches >= 1, "DataLoader: prefetch_batches must be >= 1, got ",
              options_.prefetch_batches);
  TORCH_CHECK(options_.views >= 1 && options_.views <= 16,
              "DataLoader: views must be in [1, 16], got ", options_.views);
  TORCH_CHECK(options_.position_offset >= 0, "DataLoader: position_offset must be >= 0, got ",
              options_.position_offset);
  // Buffers for the batches in flight plus a few the consumer still holds.
  pool_ = std::make_shared<BatchBufferPool>(
      static_cast<size_t>((options_.prefetch_batches + options_.num_threads + 2) * options_.views));
  if (!options_.log) {
    options_.log = [](const std::string& line) { std::cerr << line << std::endl; };
  }
  threads_.reserve(static_cast<size_t>(options_.num_threads));
  try {
    for (int64_t i = 0; i < options_.num_threads; ++i) {
      threads_.emplace_back([this] { worker_loop(); });
    }
  } catch (...) {  // could not start a thread: stop those that did
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    work_ready_.notify_all();
    for (auto& thread : threads_) thread.join();
    throw;
  }
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& thread : threads_) thread.join();
}

void DataLoader::start_epoch(int64_t epoch, std::vector<std::vector<int64_t>> batches) {
  const int64_t n = source_->size();
  for (size_t b = 0; b < batches.size(); ++b) {
    for (const int64_t index : batches[b]) {
      TORCH_CHECK(index >= 0 && index < n, "DataLoader: batch ", b, " holds index ", index,
                  " outside the source's [0, ", n, ")");
    }
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++generation_;
    epoch_ = epoch;
    batches_ = std::make_shared<const std::vector<std::vector<int64_t>>>(std::move(batches));
    next_claim_ = 0;
    next_return_ = 0;
    done_.clear();
    failures_.clear();
  }
  work_ready_.notify_all();
}

int64_t DataLoader::num_batches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return batches_ ? static_cast<int64_t>(batches_->size()) : 0;
}

SkipStats DataLoader::skip_stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {static_cast<int64_t>(unreadable_.size()), skipped_samples_.load()};
}

std::optional<Batch> DataLoader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (batches_ && next_return_ < static_cast<int64_t>(batches_->size())) {
    batch_ready_.wait(lock, [this] {
      return done_.count(next_return_) > 0 || failures_.count(next_return_) > 0;
    });
    const auto failed = failures_.find(next_return_);
    if (failed != failures_.end()) {
      const std::exception_ptr failure = failed->second;
      failures_.erase(failed);
      ++next_return_;
      lock.unlock();
      work_ready_.notify_all();
      std::rethrow_exception(failure);
    }
    auto it = done_.find(next_return_);
    Batch batch = std::move(it->second);
    done_.erase(it);
    ++next_return_;
    if (batch.indices.size(0) == 0) continue;  // every image unreadable
    lock.unlock();
    work_ready_.notify_all();  // a prefetch slot is free
    return batch;
  }
  lock.unlock();
  work_ready_.notify_all();
  return std::nullopt;
}

void DataLoader::worker_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    work_ready_.wait(lock, [this] {
      return stopping_ || (batches_ && next_claim_ < static_cast<int64_t>(batches_->size()) &&
                           next_claim_ < next_return_ + options_.prefetch_batches &&
                           building_ + static_cast<int64_t>(done_.size() + failures_.size()) <
                               options_.prefetch_batches);
    });
    if (stopping_) return;
    const uint64_t generation = generation_;
    const int64_t epoch = epoch_;
    const int64_t batch_index = next_claim_++;
    const auto batches = batches_;
    ++building_;
    lock.unlock();
    std::optional<Batch> built;
    std::exception_ptr failure;
    try {
      built = build(epoch, batch_index, (*batches)[batch_index]);
    } catch (...) {
      failure = std::current_exception();
    }
    lock.lock();
    --building_;
    if (generation != generation_) {  // the epoch was abandoned
      work_ready_.notify_all();       // its slot is free for the new one
      continue;
    }
    if (failure) {
      failures_.emplace(batch_index, failure);
    } else {
      done_.emplace(batch_index, std::move(*built));
    }
    batch_ready_.notify_all();
  }
}

Batch DataLoader::build(int64_t epoch, int64_t batch_index, const std::vector<int64_t>& indices) {
  const TransformOptions& t = transform_.options();
  const auto size = static_cast<int64_t>(indices.size());
  Batch batch;
  batch.epoch = epoch;
  batch.batch_index = batch_index;
  for (int64_t v = 0; v < options_.views; ++v) {
    batch.views.push_back(pool_->tensor({size, 3, t.height, t.width}));
  }
  batch.indices = torch::empty({size}, torch::kInt64);
  int64_t* kept = batch.indices.data_ptr<int64_t>();
  const int64_t sample_floats = 3 * t.height * t.width;
  int64_t count = 0;
  for (int64_t position = 0; position < size; ++position) {
    const int64_t index = indices[position];
    Image image;
    bool known_bad = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      known_bad = unreadable_.count(index) > 0;
    }
    if (known_bad) {  // found unreadable in an earlier batch: not read again
      ++batch.skipped;
      skipped_samples_.fetch_add(1);
      continue;
    }
    try {
      image = source_->load(index);
    } catch (const ImageError& error) {
      ++batch.skipped;
      skipped_samples_.fetch_add(1);
      bool first = false;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        first = unreadable_.insert(index).second;
      }
      if (first) options_.log(std::string("tandem: skipping unreadable image: ") + error.what());
      continue;
    }
    const Image resized = transform_.resize(image);  // once for every view
    const auto global_position = static_cast<uint64_t>(options_.position_offset + position);
    for (int64_t v = 0; v < options_.views; ++v) {
      Rng rng(options_.seed, {static_cast<uint64_t>(epoch), static_cast<uint64_t>(batch_index),
                              global_position, static_cast<uint64_t>(v)});
      transform_.apply_resized(resized, rng,
                               batch.views[v].data_ptr<float>() + count * sample_floats);
    }
    kept[count++] = index;
  }
  if (count < size) {
    for (auto& view : batch.views) view = view.narrow(0, 0, count);
    batch.indices = batch.indices.narrow(0, 0, count);
  }
  if (options_.pin_memory) {
    for (auto& view : batch.views) view = view.pin_memory();  // the pooled buffer goes back
    batch.indices = batch.indices.pin_memory();
  }
  return batch;
}

}  // namespace tandem::worker
