#include "tandem/worker/data/loader.h"

#include "tandem/worker/data/sampler.h"

#include "support/golden.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <numeric>

namespace tandem::worker {
namespace {
namespace fs = std::filesystem;

Image coloured(int64_t i) {
  Image image(32, 16);
  for (size_t k = 0; k < image.pixels.size(); ++k) {
    image.pixels[k] = static_cast<uint8_t>((k * 7 + static_cast<size_t>(i) * 29) % 251);
  }
  return image;
}

std::shared_ptr<MemoryImageSource> memory_source(int64_t n) {
  std::vector<Image> images;
  for (int64_t i = 0; i < n; ++i) images.push_back(coloured(i));
  return std::make_shared<MemoryImageSource>(std::move(images));
}

std::vector<std::vector<int64_t>> batches_of(int64_t n, int64_t batch, int64_t offset = 0) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t b = 0; b + batch <= n; b += batch) {
    std::vector<int64_t> one;
    for (int64_t i = 0; i < batch; ++i) one.push_back((b + i + offset) % n);
    out.push_back(one);
  }
  return out;
}

std::vector<Batch> run_epoch(DataLoader& loader, int64_t epoch,
                             std::vector<std::vector<int64_t>> batches) {
  loader.start_epoch(epoch, std::move(batches));
  std::vector<Batch> out;
  while (auto batch = loader.next()) out.push_back(std::move(*batch));
  return out;
}

ImageTransform small_train_transform() {
  TransformOptions options = TransformOptions::train(64, 32);
  options.pad = 4;
  return ImageTransform(options);
}

TEST(DataLoader, SameSeedSameBatchesWhateverTheThreadCount) {
  auto source = memory_source(40);
  LoaderOptions one;
  one.num_threads = 1;
  one.seed = 9;
  one.views = 2;
  LoaderOptions three = one;
  three.num_threads = 3;
  three.prefetch_batches = 2;
  DataLoader a(source, small_train_transform(), one), b(source, small_train_transform(), three);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {  // the threads serve every epoch
    const auto x = run_epoch(a, epoch, batches_of(40, 8, epoch));
    const auto y = run_epoch(b, epoch, batches_of(40, 8, epoch));
    ASSERT_EQ(x.size(), 5u);
    ASSERT_EQ(y.size(), 5u);
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(x[i].batch_index, static_cast<int64_t>(i));
      ASSERT_EQ(x[i].views.size(), 2u);
      EXPECT_EQ(x[i].views[0].sizes(), (std::vector<int64_t>{8, 3, 64, 32}));
      EXPECT_TRUE(torch::equal(x[i].indices, y[i].indices));
      EXPECT_TRUE(torch::equal(x[i].views[0], y[i].views[0]))
          << "epoch " << epoch << " batch " << i;
      EXPECT_TRUE(torch::equal(x[i].views[1], y[i].views[1]));
      EXPECT_FALSE(torch::equal(x[i].views[0], x[i].views[1])) << "two independent views";
    }
  }
  LoaderOptions other = one;
  other.seed = 10;
  DataLoader c(source, small_train_transform(), other);
  EXPECT_FALSE(torch::equal(run_epoch(c, 0, batches_of(40, 8))[0].views[0],
                            run_epoch(a, 0, batches_of(40, 8))[0].views[0]));
  EXPECT_FALSE(torch::equal(run_epoch(a, 1, batches_of(40, 8))[0].views[0],
                            run_epoch(a, 0, batches_of(40, 8))[0].views[0]))
      << "each epoch draws new augmentations";
}

TEST(DataLoader, PinnedBatchesHoldTheSameImagesInPageLockedMemory_CUDA) {
  TANDEM_SKIP_WITHOUT_CUDA();
  auto source = memory_source(24);
  LoaderOptions plain;
  plain.num_threads = 2;
  plain.seed = 3;
  LoaderOptions pinned = plain;
  pinned.pin_memory = true;
  DataLoader a(source, small_train_transform(), plain), b(source, small_train_transform(), pinned);
  const auto x = run_epoch(a, 0, batches_of(24, 8)), y = run_epoch(b, 0, batches_of(24, 8));
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_FALSE(x[i].views[0].is_pinned());
    EXPECT_TRUE(y[i].views[0].is_pinned());
    EXPECT_TRUE(y[i].indices.is_pinned());
    EXPECT_TRUE(torch::equal(x[i].views[0], y[i].views[0]));
    EXPECT_TRUE(torch::equal(x[i].views[0], y[i].views[0].to(torch::kCUDA, true).cpu()));
  }
}

TEST(DataLoader, TestTransformBatchesEqualPerImageTransforms) {
  auto source = memory_source(12);
  const ImageTransform transform(TransformOptions::test(64, 32));
  DataLoader loader(source, transform, LoaderOptions{});
  const auto batches = run_epoch(loader, 0, {{3, 1, 4}, {1, 5, 9}});
  ASSERT_EQ(batches.size(), 2u);
  Rng unused(0);
  EXPECT_TRUE(torch::equal(batches[1].views[0][2], transform(coloured(9), unused)));
  EXPECT_EQ(batches[0].indices[2].item<int64_t>(), 4);
}

/// Files on disk, some corrupt, to check skipping and counting.
class CorruptFiles : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef TANDEM_WITH_IMAGE_CODECS
    GTEST_SKIP() << "built without image codecs";
#endif
    dir_ = fs::temp_directory_path() / ("tandem_loader_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    for (int64_t i = 0; i < 12; ++i) {
      const fs::path path = dir_ / ("img" + std::to_string(i) + ".jpg");
      std::vector<uint8_t> bytes = encode_jpeg(coloured(i));
      if (i == 3) bytes.resize(bytes.size() / 3);  // truncated
      if (i == 7) bytes = {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'};
      write_file_bytes(path.string(), bytes);
      paths_.push_back(path.string());
    }
    paths_.push_back((dir_ / "missing.jpg").string());  // index 12
  }
  void TearDown() override {
    fs::remove_all(dir_);
  }
  fs::path dir_;
  std::vector<std::string> paths_;
};

TEST_F(CorruptFiles, AreSkippedLoggedOnceAndCounted) {
  std::mutex mutex;
  std::vector<std::string> logged;
  LoaderOptions options;
  options.num_threads = 2;
  options.log = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex);
    logged.push_back(line);
  };
  DataLoader loader(std::make_shared<FileImageSource>(paths_), small_train_transform(), options);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    const auto batches =
        run_epoch(loader, epoch, {{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}, {12, 0, 1, 2}});
    ASSERT_EQ(batches.size(), 4u);
    ASSERT_EQ(batches[0].views[0].size(0), 3);
    ASSERT_EQ(batches[1].views[0].size(0), 3);
    EXPECT_EQ(batches[0].skipped, 1);
    EXPECT_EQ(batches[0].indices.sizes(), (std::vector<int64_t>{3}));
    EXPECT_EQ(batches[0].indices[2].item<int64_t>(), 2);
    EXPECT_EQ(batches[1].views[0].size(0), 3);
    EXPECT_EQ(batches[1].indices[2].item<int64_t>(), 6);
    EXPECT_EQ(batches[2].views[0].size(0), 4);
    EXPECT_EQ(batches[3].views[0].size(0), 3);
    EXPECT_TRUE(batches[0].views[0].is_contiguous());
  }
  const SkipStats stats = loader.skip_stats();
  EXPECT_EQ(stats.unreadable_files, 3);
  EXPECT_EQ(stats.skipped_samples, 6);
  ASSERT_EQ(logged.size(), 3u) << "each bad file logged once";
  std::sort(logged.begin(), logged.end());
  EXPECT_NE(logged[0].find("img3.jpg"), std::string::npos) << logged[0];
  EXPECT_NE(logged[1].find("img7.jpg"), std::string::npos) << logged[1];
  EXPECT_NE(logged[2].find("missing.jpg"), std::string::npos) << logged[2];
}

/// Counts loads, to see how far ahead the threads run.
class CountingSource : public ImageSource {
 public:
  int64_t size() const override { return 1000; }
  Image load(int64_t index) const override {
    ++loads;
    return coloured(index);
  }
  std::string name(int64_t index) const override { return std::to_string(index); }
  mutable std::atomic<int64_t> loads{0};
};

TEST(DataLoader, PrefetchIsBoundedAndEpochsCanBeAbandoned) {
  auto source = std::make_shared<CountingSource>();
  LoaderOptions options;
  options.num_threads = 3;
  options.prefetch_batches = 2;
  DataLoader loader(source, ImageTransform(TransformOptions::test(16, 8)), options);
  // Waits (up to 20 s on a busy machine) for `count` loads, then checks that
  // no more follow: the bound, not the timing, is what is tested.
  const auto settles_at = [&](int64_t count) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (source->loads.load() < count && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return source->loads.load();
  };
  loader.start_epoch(0, batches_of(1000, 10));
  EXPECT_EQ(settles_at(20), 20) << "two batches of 10 built ahead, no more";
  ASSERT_TRUE(loader.next().has_value());
  EXPECT_EQ(settles_at(30), 30);
  // A new epoch abandons the old one and starts from its first batch.
  loader.start_epoch(1, batches_of(40, 10));
  EXPECT_EQ(loader.num_batches(), 4);
  int64_t count = 0;
  while (auto batch = loader.next()) {
    EXPECT_EQ(batch->epoch, 1);
    EXPECT_EQ(batch->batch_index, count++);
  }
  EXPECT_EQ(count, 4);
  EXPECT_FALSE(loader.next().has_value());
}

TEST(DataLoader, RankSharesTogetherAreTheSingleRankBatch) {
  auto source = memory_source(64);
  std::vector<int64_t> order(64);
  std::iota(order.begin(), order.end(), 0);
  std::reverse(order.begin(), order.end());
  LoaderOptions options;
  options.seed = 5;
  options.views = 2;
  DataLoader whole(source, small_train_transform(), options);
  const auto single = run_epoch(whole, 3, rank_batches(order, 16, 0, 1));
  ASSERT_EQ(single.size(), 4u);
  for (const int64_t world : {2, 4}) {
    std::vector<std::vector<Batch>> shares;
    for (int64_t rank = 0; rank < world; ++rank) {
      LoaderOptions rank_options = options;
      rank_options.position_offset = rank * 16 / world;
      DataLoader loader(source, small_train_transform(), rank_options);
      shares.push_back(run_epoch(loader, 3, rank_batches(order, 16, rank, world)));
    }
    for (size_t b = 0; b < single.size(); ++b) {
      for (int64_t v = 0; v < 2; ++v) {
        std::vector<torch::Tensor> parts;
        for (int64_t rank = 0; rank < world; ++rank) parts.push_back(shares[rank][b].views[v]);
        EXPECT_TRUE(torch::equal(torch::cat(parts), single[b].views[v]))
            << "world " << world << " batch " << b << " view " << v;
      }
    }
  }
}

/// Fails with a non-image error on one index, as a bug would.
class BrokenSource : public ImageSource {
 public:
  int64_t size() const override { return 40; }
  Image load(int64_t index) const override {
    if (index == 37) throw std::logic_error("bug while loading 37");
    if (index == 12) throw ImageError("image 12: unreadable");
    return coloured(index);
  }
  std::string name(int64_t index) const override { return std::to_string(index); }
};

TEST(DataLoader, OtherFailuresSurfaceAtTheirBatchAndEmptyBatchesAreSkipped) {
  LoaderOptions options;
  options.num_threads = 3;
  options.log = [](const std::string&) {};
  DataLoader loader(std::make_shared<BrokenSource>(), small_train_transform(), options);
  // Batch 1 is only index 12 (unreadable): left out. Batch 3 holds 37.
  loader.start_epoch(0, {{0, 1}, {12}, {2, 3}, {36, 37}, {4, 5}});
  auto first = loader.next();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->batch_index, 0);
  auto second = loader.next();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->batch_index, 2) << "the all-unreadable batch is not returned";
  try {
    loader.next();
    FAIL() << "the failure of batch 3 was not rethrown";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "bug while loading 37");
  }
  auto last = loader.next();
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->batch_index, 4);
  EXPECT_FALSE(loader.next().has_value());
}

TEST(DataLoader, DestroyedWhileAnEpochRuns) {
  auto source = std::make_shared<CountingSource>();
  for (int trial = 0; trial < 3; ++trial) {
    LoaderOptions options;
    options.num_threads = 3;
    DataLoader loader(source, small_train_transform(), options);
    loader.start_epoch(0, batches_of(1000, 10));
    ASSERT_TRUE(loader.next().has_value());
  }  // the destructor stops and joins threads that are mid-batch
  SUCCEED();
}

TEST(DataLoader, RejectsBadOptionsAndIndices) {
  auto source = memory_source(4);
  LoaderOptions options;
  options.num_threads = 0;
  EXPECT_THROW(DataLoader(source, small_train_transform(), options), c10::Error);
  DataLoader loader(source, small_train_transform(), LoaderOptions{});
  try {
    loader.start_epoch(0, {{0, 1}, {2, 4}});
    FAIL() << "accepted index 4 of a source of 4";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("batch 1 holds index 4"),
              std::string::npos);
  }
  EXPECT_FALSE(loader.next().has_value()) << "nothing started";
}

}  // namespace
}  // namespace tandem::worker
