#include "tandem/worker/data_parallel.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "run_ranks.h"

namespace tandem::worker {
namespace {
using testing::run_ranks_over_tcp_store;

const std::vector<std::string> kNoErrors(2);

std::shared_ptr<DataParallel> join(
    int rank, const c10::intrusive_ptr<c10d::Store>& store, int lanes = 0,
    std::chrono::milliseconds share_timeout = std::chrono::seconds(30)) {
  DistributedOptions options;
  options.world_size = 2;
  options.rank = rank;
  options.timeout = std::chrono::seconds(30);
  return make_data_parallel(init_process_group(store, options), lanes, share_timeout);
}

/// The same weights for a seed in every thread: the default generator is
/// global, so ranks (threads) building their nets at once would interleave
/// its draws.
torch::nn::Sequential small_net(uint64_t seed) {
  static std::mutex generator;
  const std::lock_guard<std::mutex> lock(generator);
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(5, 7), torch::nn::BatchNorm1d(7),
                               torch::nn::ReLU(), torch::nn::Linear(7, 3));
}

TEST(ShardOf, ContiguousSharesCoverEveryItemOnce) {
  // 10 items over 4 ranks: 3, 3, 2, 2.
  const int64_t expected[4][2] = {{0, 3}, {3, 6}, {6, 8}, {8, 10}};
  for (int r = 0; r < 4; ++r) {
    const Shard s = shard_of(10, r, 4);
    EXPECT_EQ(s.begin, expected[r][0]) << "rank " << r;
    EXPECT_EQ(s.end, expected[r][1]) << "rank " << r;
  }
  EXPECT_EQ(shard_of(1, 1, 2).size(), 0);
  EXPECT_THROW(shard_of(10, 4, 4), c10::Error);
}

TEST(DataParallel, BroadcastCopiesRankZerosParametersAndBuffers) {
  std::vector<torch::Tensor> weights(2), means(2);
  const auto errors = run_ranks_over_tcp_store(2, [&](int rank, const auto& store) {
    auto parallel = join(rank, store);
    auto net = small_net(10 + rank);  // different initialisations
    auto bn = net->ptr(1)->as<torch::nn::BatchNorm1d>();
    bn->running_mean.fill_(static_cast<float>(rank + 1));
    broadcast_module(*net, parallel->group());
    weights[rank] = net->ptr(0)->as<torch::nn::Linear>()->weight.detach().clone();
    means[rank] = bn->running_mean.clone();
  });
  ASSERT_EQ(errors, kNoErrors);
  EXPECT_TRUE(torch::equal(weights[0], weights[1]));
  EXPECT_TRUE(torch::equal(weights[0], small_net(10)->ptr(0)->as<torch::nn::Linear>()->weight));
  EXPECT_TRUE(torch::equal(means[1], torch::ones({7})));
}

TEST(DataParallel, AverageBuffersMeansFloatingBuffersAndKeepsCounters) {
  std::vector<torch::Tensor> means(2), counters(2);
  const auto errors = run_ranks_over_tcp_store(2, [&](int rank, const auto& store) {
    auto parallel = join(rank, store);
    torch::nn::BatchNorm1d bn(3);
    bn->running_mean.fill_(rank == 0 ? 1.0f : 3.0f);
    bn->num_batches_tracked.fill_(5);
    average_buffers(*bn, parallel->group());
    means[rank] = bn->running_mean.clone();
    counters[rank] = bn->num_batches_tracked.clone();
  });
  ASSERT_EQ(errors, kNoErrors);
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(torch::allclose(means[r], torch::full({3}, 2.0f))) << means[r];
    EXPECT_EQ(counters[r].item<int64_t>(), 5);
  }
}

TEST(DataParallel, AllGatherRowsConcatenatesInRankOrderAndBackpropagatesOwnRows) {
  // Rank r holds rows x_r; both compute L = Σ w ⊙ [x_0; x_1]. The gradient
  // reaching x_r is w's rows of rank r.
  const torch::Tensor w = torch::arange(12, torch::kFloat32).view({4, 3});
  std::vector<torch::Tensor> gathered(2), grads(2);
  const auto errors = run_ranks_over_tcp_store(2, [&](int rank, const auto& store) {
    auto parallel = join(rank, store);
    torch::Tensor x = torch::full({2, 3}, static_cast<float>(rank + 1)).requires_grad_();
    torch::Tensor all = all_gather_rows(x, parallel->group());
    (all * w).sum().backward();
    gathered[rank] = all.detach();
    grads[rank] = x.grad();
  });
  ASSERT_EQ(errors, kNoErrors);
  const torch::Tensor expected = torch::cat({torch::ones({2, 3}), torch::full({2, 3}, 2.0f)});
  EXPECT_TRUE(torch::equal(gathered[0], expected));
  EXPECT_TRUE(torch::equal(gathered[1], expected));
  EXPECT_TRUE(torch::equal(grads[0], w.narrow(0, 0, 2)));
  EXPECT_TRUE(torch::equal(grads[1], w.narrow(0, 2, 2)));
}

TEST(DataParallel, AllGatherShardsHandlesUnevenShards) {
  std::vector<torch::Tensor> out(2);
  const auto errors = run_ranks_over_tcp_store(2, [&](int rank, const auto& store) {
    auto parallel = join(rank, store);
    const Shard s = shard_of(5, rank, 2);
    torch::Tensor local = torch::arange(s.begin, s.end, torch::kFloat32).view({-1, 1});
    out[rank] = all_gather_shards(local, parallel->group(), {3, 2});
  });
  ASSERT_EQ(errors, kNoErrors);
  EXPECT_TRUE(torch::equal(out[1], torch::arange(5, torch::kFloat32).view({5, 1})));
}

TEST(GradientReducer, SumsGradientsOverRanksInSeveralBuckets) {
  // Each rank's loss is its half of one global loss; summed gradients are
  // the gradients of the global loss on one rank.
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({8, 5});
  torch::nn::Sequential reference = small_net(1);
  reference->eval();  // no batch statistics: per-sample losses only
  reference->forward(x).pow(2).sum().backward();
  std::vector<torch::Tensor> expected;
  for (const auto& p : reference->parameters()) expected.push_back(p.grad().clone());

  std::vector<std::vector<torch::Tensor>> grads(2);
  std::vector<CommunicationStats> stats(2);
  const auto errors = run_ranks_over_tcp_store(2, [&](int rank, const auto& store) {
    auto parallel = join(rank, store);
    torch::nn::Sequential net = small_net(1);
    net->eval();
    // 64-byte buckets: every parameter in a bucket of its own or two.
    GradientReducer reducer(net->parameters(), parallel->main.group, /*bucket_bytes=*/64,
                            /*first_bucket_bytes=*/64);
    for (int pass = 0; pass < 2; ++pass) {  // the second pass reuses the buckets
      for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
      reducer.prepare_for_backward();
      net->forward(x.narrow(0, 4 * rank, 4)).pow(2).sum().backward();
      reducer.backward_done();
    }
    for (const auto& p : net->parameters()) grads[rank].push_back(p.grad().clone());
    stats[rank] = reducer.stats();
  });
  ASSERT_EQ(errors, kNoErrors);
  int64_t numel = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    numel += expected[i].numel();
    for (int r = 0; r < 2; ++r) {
      EXPECT_TRUE(torch::allclose(grads[r][i], expected[i], 1e-5, 1e-6))
          << "parameter " << i << " rank " << r << "\n"
          << grads[r][i] << "\n"
          << expected[i];
    }
    EXPECT_TRUE(torch::equal(grads[0][i], grads[1][i])) << "ranks disagree on parameter " << i;
  }
  EXPECT_EQ(stats[0].backward_passes, 2);
  EXPECT_GE(stats[0].buckets, 2 * 3);
  EXPECT_EQ(stats[0].bytes, 2 * numel * 4);  // float32 gradients, twice
  EXPECT_GT(stats[0].communication_seconds, 0);
  EXPECT_GE(stats[0].backward_seconds, stats[0].overlapped_seconds);
}

TEST(DataParallel, ShareFromRankZeroGivesEveryRankItsTensors) {
  std::vector<std::vector<torch::Tensor>> shared(2);
  std::atomic<int> produced{0};
  const auto errors = run_ranks_over_tcp_store(2, [&](int rank, const auto& store) {
    auto parallel = join(rank, store);
    for (int round = 0; round < 2; ++round) {
      shared[rank] = share_from_rank0(*parallel, "labels/" + std::to_string(round), [&] {
        ++produced;
        return std::vector<torch::Tensor>{torch::arange(4) + round, torch::ones({2, 2})};
      });
    }
  });
  ASSERT_EQ(errors, kNoErrors);
  EXPECT_EQ(produced.load(), 2) << "only rank 0 computes";
  EXPECT_TRUE(torch::equal(shared[1][0], torch::arange(4) + 1));
  EXPECT_TRUE(torch::equal(shared[1][1], torch::ones({2, 2})));
}

TEST(DataParallel, ShareFromRankZeroReportsRankZerosErrorAndTimesOut) {
  const auto errors = run_ranks_over_tcp_store(2, [&](int rank, const auto& store) {
    auto parallel = join(rank, store);
    share_from_rank0(*parallel, "clusters", []() -> std::vector<torch::Tensor> {
      TORCH_CHECK(false, "every image is noise");
    });
  });
  EXPECT_NE(errors[0].find("every image is noise"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("rank 0 failed to compute clusters: every image is noise"),
            std::string::npos)
      << errors[1];

  // Rank 0 never publishes: rank 1 gives up after its share timeout.
  const auto timed_out = run_ranks_over_tcp_store(2, [&](int rank, const auto& store) {
    auto parallel = join(rank, store, 0, std::chrono::milliseconds(300));
    if (rank == 1) share_from_rank0(*parallel, "late", [] { return std::vector<torch::Tensor>{}; });
  });
  EXPECT_EQ(timed_out[0], "");
  EXPECT_NE(timed_out[1].find("rank 1 waited 300 ms for rank 0's late"), std::string::npos)
      << timed_out[1];
}

TEST(DataParallel, RankThatLeavesMakesThePeersCollectiveFailNotHang) {
  // Rank 1 joins and goes away (as a killed process would); rank 0's next
  // collective fails with a message instead of waiting forever.
  const auto start = std::chrono::steady_clock::now();
  const auto errors = run_ranks_over_tcp_store(2, [&](int rank, const auto& store) {
    DistributedOptions options;
    options.world_size = 2;
    options.rank = rank;
    options.timeout = std::chrono::seconds(3);
    auto parallel = make_data_parallel(init_process_group(store, options), 0);
    if (rank == 1) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    all_gather_rows(torch::ones({2, 2}), parallel->group());
  });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(errors[0].find("all-gather failed (a rank died or timed out?)"), std::string::npos)
      << errors[0];
  EXPECT_EQ(errors[1], "");
  EXPECT_LT(seconds, 20) << "the collective hung";
}

TEST(DataParallel, LanesAreIndependentGroups) {
  // Two threads per rank, each on its own lane, all-reduce at the same time.
  std::vector<torch::Tensor> sums(4);
  const auto errors = run_ranks_over_tcp_store(2, [&](int rank, const auto& store) {
    auto parallel = join(rank, store, 2);
    std::thread other([&] {
      std::vector<torch::Tensor> t{torch::full({3}, 10.0f * (rank + 1))};
      parallel->lane(1).allreduce(t)->wait();
      sums[static_cast<size_t>(2 * rank + 1)] = t[0];
    });
    std::vector<torch::Tensor> t{torch::full({3}, 1.0f * (rank + 1))};
    parallel->lane(0).allreduce(t)->wait();
    sums[static_cast<size_t>(2 * rank)] = t[0];
    other.join();
  });
  ASSERT_EQ(errors, kNoErrors);
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(torch::equal(sums[2 * r], torch::full({3}, 3.0f)));
    EXPECT_TRUE(torch::equal(sums[2 * r + 1], torch::full({3}, 30.0f)));
  }
}

}  // namespace
}  // namespace tandem::worker
