#include "tandem/worker/data/sampler.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include "tandem/worker/data/random.h"

namespace tandem::worker {
namespace {

/// The emitted indices of one epoch cut into per-identity groups (each
/// identity is emitted once per epoch, so runs of one pid are its group).
std::vector<std::vector<int64_t>> groups_of(const std::vector<int64_t>& indices,
                                            const std::vector<int64_t>& pids) {
  std::vector<std::vector<int64_t>> groups;
  for (const int64_t i : indices) {
    if (groups.empty() || pids[groups.back().front()] != pids[i]) groups.emplace_back();
    groups.back().push_back(i);
  }
  return groups;
}

struct Fixture {
  std::vector<int64_t> pids;
  std::vector<int64_t> cameras;
  void add(int64_t pid, int64_t camera, int64_t count = 1) {
    for (int64_t i = 0; i < count; ++i) {
      pids.push_back(pid);
      cameras.push_back(camera);
    }
  }
};

TEST(RandomMultipleGallerySampler, PrefersOtherCamerasWithoutReplacementWhenAtLeastK) {
  Fixture f;
  f.add(0, 0, 2);  // pid 0: 2 images in camera 0, 5 in camera 1, 1 in camera 2
  f.add(0, 1, 5);
  f.add(0, 2, 1);
  const int64_t K = 4;
  RandomMultipleGallerySampler sampler(f.pids, f.cameras, K, 7);
  for (int64_t epoch = 0; epoch < 200; ++epoch) {
    const auto indices = sampler.epoch_indices(epoch);
    ASSERT_EQ(indices.size(), 4u);
    const int64_t anchor = indices[0];
    std::set<int64_t> drawn(indices.begin() + 1, indices.end());
    // Anchored in camera 0 or 2 there are 6 or 7 other-camera images (>= K):
    // drawn without replacement. In camera 1 only 3 (< K): with replacement.
    if (f.cameras[anchor] != 1) {
      EXPECT_EQ(drawn.size(), 3u) << "at least K candidates: drawn without replacement";
    }
    for (auto it = indices.begin() + 1; it != indices.end(); ++it) {
      EXPECT_NE(f.cameras[*it], f.cameras[anchor]) << "epoch " << epoch;
    }
  }
}

TEST(RandomMultipleGallerySampler, ThresholdIsKNotKMinusOne) {
  // The anchor is always in camera 0 (one image there); exactly K-1 = 3
  // other-camera candidates: MMT draws them WITH replacement.
  Fixture f;
  f.add(5, 0, 1);
  f.add(5, 1, 3);
  RandomMultipleGallerySampler sampler(f.pids, f.cameras, 4, 3);
  int duplicates = 0, anchored_in_camera_0 = 0;
  for (int64_t epoch = 0; epoch < 300; ++epoch) {
    const auto indices = sampler.epoch_indices(epoch);
    ASSERT_EQ(indices.size(), 4u);
    if (indices[0] != 0) continue;
    ++anchored_in_camera_0;
    std::set<int64_t> drawn(indices.begin() + 1, indices.end());
    for (auto it = indices.begin() + 1; it != indices.end(); ++it) EXPECT_EQ(f.cameras[*it], 1);
    if (drawn.size() < 3) ++duplicates;
  }
  ASSERT_GT(anchored_in_camera_0, 30);
  // P(no repeat in 3 draws from 3) = 6/27: repeats are the rule.
  EXPECT_GT(duplicates, anchored_in_camera_0 / 2);
}

TEST(RandomMultipleGallerySampler, SingleCameraFallsBackToOtherImagesNeverTheAnchor) {
  Fixture f;
  f.add(1, 3, 2);  // one camera, 2 images: 1 other image < K → with replacement
  RandomMultipleGallerySampler sampler(f.pids, f.cameras, 4, 11);
  for (int64_t epoch = 0; epoch < 50; ++epoch) {
    const auto indices = sampler.epoch_indices(epoch);
    ASSERT_EQ(indices.size(), 4u);
    for (size_t i = 1; i < 4; ++i) EXPECT_NE(indices[i], indices[0]);
  }
  // Exactly K images in one camera: K-1 = 3 others, fewer than K, so MMT
  // draws them WITH replacement (the threshold is K in this branch too).
  Fixture k;
  k.add(2, 0, 4);
  RandomMultipleGallerySampler sampler_k(k.pids, k.cameras, 4, 5);
  int repeats = 0;
  for (int64_t epoch = 0; epoch < 100; ++epoch) {
    const auto indices = sampler_k.epoch_indices(epoch);
    ASSERT_EQ(indices.size(), 4u);
    for (size_t i = 1; i < 4; ++i) EXPECT_NE(indices[i], indices[0]);
    repeats += std::set<int64_t>(indices.begin(), indices.end()).size() < 4;
  }
  EXPECT_GT(repeats, 50) << "3 draws from 3 with replacement repeat 7 times in 9";
  Fixture g;
  g.add(1, 3, 6);  // one camera, 5 others >= K → without replacement
  RandomMultipleGallerySampler sampler2(g.pids, g.cameras, 4, 11);
  for (int64_t epoch = 0; epoch < 50; ++epoch) {
    const auto indices = sampler2.epoch_indices(epoch);
    EXPECT_EQ(std::set<int64_t>(indices.begin(), indices.end()).size(), 4u);
  }
}

TEST(RandomMultipleGallerySampler, SingleImageIdentityEmitsOnlyItsAnchorAndNoiseIsNeverEmitted) {
  Fixture f;
  f.add(0, 0, 4);
  f.add(0, 1, 4);
  f.add(1, 2, 1);   // single image
  f.add(-1, 0, 5);  // DBSCAN noise
  f.add(2, 0, 3);
  f.add(2, 5, 2);
  RandomMultipleGallerySampler sampler(f.pids, f.cameras, 4, 1);
  EXPECT_EQ(sampler.num_identities(), 3);
  EXPECT_EQ(sampler.nominal_size(), 12);
  const auto indices = sampler.epoch_indices(0);
  EXPECT_EQ(indices.size(), 9u);  // 4 + 1 + 4
  std::map<int64_t, int64_t> per_pid;
  for (const auto& group : groups_of(indices, f.pids)) {
    for (const int64_t i : group) EXPECT_GE(f.pids[i], 0);
    per_pid[f.pids[group.front()]] = static_cast<int64_t>(group.size());
  }
  EXPECT_EQ(per_pid.size(), 3u) << "every identity once per epoch";
  EXPECT_EQ(per_pid[1], 1);
  EXPECT_EQ(per_pid[0], 4);
  EXPECT_EQ(per_pid[2], 4);
}

TEST(RandomMultipleGallerySampler, SeededPermutationOfIdentities) {
  Fixture f;
  for (int64_t pid = 0; pid < 50; ++pid) {
    f.add(pid, 0, 2);
    f.add(pid, 1, 2);
  }
  RandomMultipleGallerySampler a(f.pids, f.cameras, 4, 42), b(f.pids, f.cameras, 4, 42),
      c(f.pids, f.cameras, 4, 43);
  EXPECT_EQ(a.epoch_indices(3), b.epoch_indices(3));
  EXPECT_NE(a.epoch_indices(3), a.epoch_indices(4));
  EXPECT_NE(a.epoch_indices(3), c.epoch_indices(3));
  const auto groups = groups_of(a.epoch_indices(0), f.pids);
  ASSERT_EQ(groups.size(), 50u);
  std::vector<int64_t> order;
  for (const auto& group : groups) order.push_back(f.pids[group.front()]);
  EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), 50u);
  std::vector<int64_t> sorted(order);
  std::sort(sorted.begin(), sorted.end());
  EXPECT_NE(order, sorted) << "identities are shuffled";
  // Anchor choice is uniform over the identity's images.
  std::map<int64_t, int> anchor_counts;
  for (int64_t epoch = 0; epoch < 400; ++epoch) {
    const auto indices = a.epoch_indices(epoch);
    for (const auto& group : groups_of(indices, f.pids)) {
      if (f.pids[group.front()] == 0) ++anchor_counts[group.front()];
    }
  }
  ASSERT_EQ(anchor_counts.size(), 4u);
  for (const auto& [index, count] : anchor_counts) EXPECT_NEAR(count, 100, 35) << index;
}

TEST(RandomMultipleGallerySampler, RejectsBadArguments) {
  EXPECT_THROW(RandomMultipleGallerySampler({0, 1}, {0}, 4, 0), c10::Error);
  EXPECT_THROW(RandomMultipleGallerySampler({0, 1}, {0, 0}, 0, 0), c10::Error);
  EXPECT_THROW(RandomMultipleGallerySampler({-1, -1}, {0, 0}, 4, 0), c10::Error);
}

TEST(RankBatches, SharesPartitionTheSameGlobalBatchesForAnyWorldSize) {
  std::vector<int64_t> indices(70);
  std::iota(indices.begin(), indices.end(), 100);
  const auto whole = rank_batches(indices, 16, 0, 1);
  ASSERT_EQ(whole.size(), 4u);  // 70 / 16, the last 6 dropped
  for (const int64_t world : {2, 4, 8}) {
    std::vector<std::vector<std::vector<int64_t>>> shares;
    for (int64_t rank = 0; rank < world; ++rank)
      shares.push_back(rank_batches(indices, 16, rank, world));
    for (size_t b = 0; b < whole.size(); ++b) {
      std::vector<int64_t> joined;
      for (int64_t rank = 0; rank < world; ++rank) {
        ASSERT_EQ(shares[rank][b].size(), static_cast<size_t>(16 / world));
        joined.insert(joined.end(), shares[rank][b].begin(), shares[rank][b].end());
      }
      EXPECT_EQ(joined, whole[b]) << "world " << world << " batch " << b;
    }
  }
  EXPECT_THROW(rank_batches(indices, 16, 0, 3), c10::Error);
  EXPECT_THROW(rank_batches(indices, 16, 2, 2), c10::Error);
  EXPECT_THROW(rank_batches(indices, 0, 0, 1), c10::Error);
}

TEST(SamplerBatches, FullPassesDropTheirTailShortPassesAreChained) {
  Fixture f;
  for (int64_t pid = 0; pid < 5; ++pid) f.add(pid, pid % 2, 4);  // 5 ids x 4 = 20 per pass
  RandomMultipleGallerySampler sampler(f.pids, f.cameras, 4, 2);
  // Batches of 8: two per pass (the tail of 4 dropped), so batch 2 starts pass 1.
  const auto batches = sampler_batches(sampler, 8, 5);
  ASSERT_EQ(batches.size(), 5u);
  const auto pass0 = sampler.epoch_indices(0), pass1 = sampler.epoch_indices(1);
  EXPECT_EQ(batches[1], std::vector<int64_t>(pass0.begin() + 8, pass0.begin() + 16));
  EXPECT_EQ(batches[2], std::vector<int64_t>(pass1.begin(), pass1.begin() + 8));
  // Batches of 32 > 20 per pass: passes are chained rather than yielding nothing.
  const auto chained = sampler_batches(sampler, 32, 2);
  ASSERT_EQ(chained.size(), 2u);
  std::vector<int64_t> stream(pass0);
  stream.insert(stream.end(), pass1.begin(), pass1.end());
  EXPECT_EQ(chained[0], std::vector<int64_t>(stream.begin(), stream.begin() + 32));
  for (const auto& batch : chained) EXPECT_EQ(batch.size(), 32u);
}

TEST(Rng, BelowIsUniformAndSeedsAreIndependentStreams) {
  Rng rng(5);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) ++counts[rng.below(7)];
  for (const int count : counts) EXPECT_NEAR(count, 10000, 400);
  Rng a(1, {2, 3}), b(1, {2, 3}), c(1, {3, 2});
  EXPECT_EQ(a.next(), b.next());
  EXPECT_NE(Rng(1, {2, 3}).next(), c.next());
  Rng r(9);
  for (int i = 0; i < 1000; ++i) {
    const int64_t v = r.integer(-2, 3);
    EXPECT_GE(v, -2);
    EXPECT_LE(v, 3);
    const double u = r.uniform(0.3, 0.7);
    EXPECT_GE(u, 0.3);
    EXPECT_LT(u, 0.7);
  }
}

TEST(RankShares, EachBatchCutToTheRanksContiguousShare) {
  const std::vector<std::vector<int64_t>> batches = {{0, 1, 2, 3}, {4, 5, 6, 7}};
  EXPECT_EQ(rank_shares(batches, 1, 2), (std::vector<std::vector<int64_t>>{{2, 3}, {6, 7}}));
  EXPECT_EQ(rank_shares(batches, 0, 1), batches);
  EXPECT_THROW(rank_shares({{0, 1, 2, 3}, {4, 5}}, 0, 2), c10::Error);
}

}  // namespace
}  // namespace tandem::worker
