// Identity samplers for re-ID training: MMT's RandomMultipleGallerySampler
// (P identities × K instances, other cameras preferred) and its distributed
// form, in which every rank takes a disjoint, equally sized share of the same
// global P×K batch.
#pragma once

#include <cstdint>
#include <vector>

namespace tandem::worker {

/// RandomMultipleGallerySampler of MMT (Ge et al., "Mutual Mean-Teaching",
/// ICLR 2020; identical in TLlib). One epoch, for each identity in a random
/// order:
///  1. a random anchor image i of the identity is emitted;
///  2. if the identity has images from cameras other than i's, K-1 of those
///     are drawn (without replacement when there are at least K of them,
///     with replacement otherwise; the threshold is K, not K-1, as in the
///     original);
///  3. else K-1 of the identity's other images are drawn by the same rule;
///  4. an identity with a single image emits only its anchor (batches then
///     mix identities).
/// Samples with a negative label (DBSCAN noise) are never emitted. The
/// nominal length is #identities · K; the real one may be smaller.
class RandomMultipleGallerySampler {
 public:
  /// `pids` and `cameras` per sample (same length); K = `num_instances` >= 1.
  RandomMultipleGallerySampler(std::vector<int64_t> pids, std::vector<int64_t> cameras,
                               int64_t num_instances, uint64_t seed);

  /// The sample indices of epoch `epoch` (a pure function of seed and epoch).
  std::vector<int64_t> epoch_indices(int64_t epoch) const;

  int64_t num_identities() const { return static_cast<int64_t>(identity_samples_.size()); }
  int64_t num_instances() const { return num_instances_; }
  /// #identities · K, as the original's __len__.
  int64_t nominal_size() const { return num_identities() * num_instances_; }

 private:
  std::vector<int64_t> pids_;
  std::vector<int64_t> cameras_;
  int64_t num_instances_;
  uint64_t seed_;
  /// For each identity (ascending pid), its sample indices in ascending order.
  std::vector<std::vector<int64_t>> identity_samples_;
};

/// Cuts `indices` into global batches of `global_batch` (the incomplete last
/// one dropped, as DataLoader(drop_last=True)) and returns rank `rank`'s share
/// of each: the contiguous slice [rank·B/W, (rank+1)·B/W). `global_batch` must
/// be a positive multiple of `world_size`. The union over ranks of batch b is
/// exactly global batch b, whatever W.
std::vector<std::vector<int64_t>> rank_batches(const std::vector<int64_t>& indices,
                                               int64_t global_batch, int64_t rank,
                                               int64_t world_size);

/// rank_batches for batches already cut: every batch of `batches` (all of
/// one size, a positive multiple of `world_size`) becomes rank `rank`'s
/// contiguous share of it.
std::vector<std::vector<int64_t>> rank_shares(const std::vector<std::vector<int64_t>>& batches,
                                              int64_t rank, int64_t world_size);

/// `count` batches of `batch_size` drawn from successive passes of `sampler`
/// (pass r = epoch_indices(r)), as a training epoch that iterates a
/// drop_last loader over and over: each pass is cut into full batches and its
/// incomplete tail dropped. When one pass holds fewer samples than a batch
/// (few identities, e.g. DBSCAN finding few clusters), passes are chained
/// and cut as one stream instead of yielding nothing, so identities can
/// repeat within a batch.
std::vector<std::vector<int64_t>> sampler_batches(const RandomMultipleGallerySampler& sampler,
                                                  int64_t batch_size, int64_t count);

}  // namespace tandem::worker
