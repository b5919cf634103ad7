#include "tandem/worker/data/sampler.h"

#include <c10/util/Exception.h>

#include <map>
#include <numeric>

#include "tandem/worker/data/random.h"

namespace tandem::worker {
namespace {

/// `count` draws from `candidates`: without replacement when there are at
/// least `threshold` candidates, with replacement otherwise (numpy's
/// random.choice(replace=...) as MMT calls it).
void draw(const std::vector<int64_t>& candidates, int64_t count, int64_t threshold, Rng& rng,
          std::vector<int64_t>& out) {
  const auto m = static_cast<int64_t>(candidates.size());
  if (m >= threshold) {
    std::vector<int64_t> pool = candidates;
    for (int64_t i = 0; i < count; ++i) {  // partial Fisher-Yates
      const auto j = i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(m - i)));
      std::swap(pool[i], pool[j]);
      out.push_back(pool[i]);
    }
  } else {
    for (int64_t i = 0; i < count; ++i) out.push_back(candidates[rng.below(m)]);
  }
}

}  // namespace

RandomMultipleGallerySampler::RandomMultipleGallerySampler(std::vector<int64_t> pids,
                                                           std::vector<int64_t> cameras,
                                                           int64_t num_instances, uint64_t seed)
    : pids_(std::move(pids)),
      cameras_(std::move(cameras)),
      num_instances_(num_instances),
      seed_(seed) {
  TORCH_CHECK(pids_.size() == cameras_.size(), "RandomMultipleGallerySampler: ", pids_.size(),
              " pids but ", cameras_.size(), " cameras");
  TORCH_CHECK(num_instances_ >= 1, "RandomMultipleGallerySampler: num_instances must be >= 1, got ",
              num_instances_);
  std::map<int64_t, std::vector<int64_t>> by_pid;
  for (size_t i = 0; i < pids_.size(); ++i) {
    if (pids_[i] >= 0) by_pid[pids_[i]].push_back(static_cast<int64_t>(i));
  }
  TORCH_CHECK(!by_pid.empty(), "RandomMultipleGallerySampler: no sample has a label >= 0");
  identity_samples_.reserve(by_pid.size());
  for (auto& entry : by_pid) identity_samples_.push_back(std::move(entry.second));
}

std::vector<int64_t> RandomMultipleGallerySampler::epoch_indices(int64_t epoch) const {
  Rng rng(seed_, {static_cast<uint64_t>(epoch)});
  std::vector<int64_t> order(identity_samples_.size());
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);

  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(nominal_size()));
  std::vector<int64_t> candidates;
  for (const int64_t identity : order) {
    const std::vector<int64_t>& samples = identity_samples_[identity];
    const int64_t anchor = samples[rng.below(samples.size())];
    out.push_back(anchor);
    if (num_instances_ == 1) continue;
    candidates.clear();
    for (const int64_t j : samples) {
      if (cameras_[j] != cameras_[anchor]) candidates.push_back(j);
    }
    if (candidates.empty()) {
      for (const int64_t j : samples) {
        if (j != anchor) candidates.push_back(j);
      }
      if (candidates.empty()) continue;  // a single image: only the anchor
    }
    draw(candidates, num_instances_ - 1, num_instances_, rng, out);
  }
  return out;
}

std::vector<std::vector<int64_t>> rank_batches(const std::vector<int64_t>& indices,
                                               int64_t global_batch, int64_t rank,
                                               int64_t world_size) {
  TORCH_CHECK(world_size >= 1, "rank_batches: world_size must be >= 1, got ", world_size);
  TORCH_CHECK(rank >= 0 && rank < world_size, "rank_batches: rank ", rank, " outside [0, ",
              world_size, ")");
  TORCH_CHECK(global_batch >= world_size && global_batch % world_size == 0,
              "rank_batches: global batch ", global_batch,
              " must be a positive multiple of the world size ", world_size);
  const int64_t share = global_batch / world_size;
  const auto batches = static_cast<int64_t>(indices.size()) / global_batch;
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(batches));
  for (int64_t b = 0; b < batches; ++b) {
    const auto begin = indices.begin() + b * global_batch + rank * share;
    out[b].assign(begin, begin + share);
  }
  return out;
}

std::vector<std::vector<int64_t>> rank_shares(const std::vector<std::vector<int64_t>>& batches,
                                              int64_t rank, int64_t world_size) {
  if (batches.empty()) return {};
  const auto size = static_cast<int64_t>(batches.front().size());
  std::vector<int64_t> sequence;
  sequence.reserve(batches.size() * batches.front().size());
  for (const auto& b : batches) {
    TORCH_CHECK(static_cast<int64_t>(b.size()) == size, "rank_shares: batches of ", size, " and ",
                b.size(), " images");
    sequence.insert(sequence.end(), b.begin(), b.end());
  }
  return rank_batches(sequence, size, rank, world_size);
}

std::vector<std::vector<int64_t>> sampler_batches(const RandomMultipleGallerySampler& sampler,
                                                  int64_t batch_size, int64_t count) {
  TORCH_CHECK(batch_size >= 1, "sampler_batches: batch_size must be >= 1, got ", batch_size);
  TORCH_CHECK(count >= 0, "sampler_batches: count must be >= 0, got ", count);
  std::vector<std::vector<int64_t>> out;
  std::vector<int64_t> stream;  // chained short passes
  for (int64_t pass = 0; static_cast<int64_t>(out.size()) < count; ++pass) {
    const std::vector<int64_t> indices = sampler.epoch_indices(pass);
    if (static_cast<int64_t>(indices.size()) >= batch_size) {
      for (auto& batch : rank_batches(indices, batch_size, 0, 1)) {
        if (static_cast<int64_t>(out.size()) == count) break;
        out.push_back(std::move(batch));
      }
      continue;
    }
    stream.insert(stream.end(), indices.begin(), indices.end());
    if (static_cast<int64_t>(stream.size()) >= batch_size) {
      out.emplace_back(stream.begin(), stream.begin() + batch_size);
      stream.erase(stream.begin(), stream.begin() + batch_size);
    }
  }
  return out;
}

}  // namespace tandem::worker
