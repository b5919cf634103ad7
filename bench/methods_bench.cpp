// Forward + backward time of every loss in methods/ at MMT sizes: a batch of
// N = 64 (16 identities × 4 images), C = 700 pseudo classes, D = 2048-d
// features. Run side by side with the Python reference by
// bench/side_by_side.py methods (figures in BENCHMARKS.md).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "tandem/methods/afn.h"
#include "tandem/methods/mcc.h"
#include "tandem/methods/reid_loss.h"
#include "tandem/methods/self_ensemble.h"

namespace {

using namespace tandem::methods;  // NOLINT(google-build-using-namespace): benchmark file

constexpr int64_t kBatch = 64;
constexpr int64_t kClasses = 700;
constexpr int64_t kDim = 2048;

torch::Tensor pk_labels() {
  return torch::arange(kBatch / 4).repeat_interleave(4);
}

torch::Tensor leaf(std::initializer_list<int64_t> shape) {
  return torch::randn(shape).requires_grad_();
}

// Times `step` (forward + backward), clearing the gradients of `leaves`.
template <typename Step>
void run(benchmark::State& state, const std::vector<torch::Tensor>& leaves, Step step) {
  for (auto _ : state) {
    for (auto t : leaves) t.mutable_grad() = torch::Tensor();
    auto loss = step();
    loss.backward();
    benchmark::DoNotOptimize(loss.data_ptr());
  }
}

void BM_PairwiseEuclideanDistance(benchmark::State& state) {
  torch::manual_seed(0);
  auto x = leaf({state.range(0), kDim});
  run(state, {x}, [&] { return pairwise_euclidean_distance(x, x).sum(); });
}
BENCHMARK(BM_PairwiseEuclideanDistance)->Arg(64)->Arg(256);

void BM_SoftTripletLossSoft(benchmark::State& state) {
  torch::manual_seed(0);
  auto f1 = leaf({kBatch, kDim});
  auto f2 = torch::randn({kBatch, kDim});
  auto labels = pk_labels();
  SoftTripletLoss loss;
  run(state, {f1}, [&] { return loss(f1, f2, labels); });
}
BENCHMARK(BM_SoftTripletLossSoft);

void BM_SoftTripletLossMargin0(benchmark::State& state) {
  torch::manual_seed(0);
  auto f = leaf({kBatch, kDim});
  auto labels = pk_labels();
  SoftTripletLoss loss(SoftTripletLossOptions().margin(0.0));
  run(state, {f}, [&] { return loss(f, f, labels); });
}
BENCHMARK(BM_SoftTripletLossMargin0);

void BM_TripletLoss(benchmark::State& state) {
  torch::manual_seed(0);
  auto f = leaf({kBatch, kDim});
  auto labels = pk_labels();
  TripletLoss loss(TripletLossOptions(0.3));
  run(state, {f}, [&] { return loss(f, labels); });
}
BENCHMARK(BM_TripletLoss);

void BM_SoftCrossEntropyLoss(benchmark::State& state) {
  torch::manual_seed(0);
  auto y = leaf({kBatch, kClasses});
  auto target = torch::randn({kBatch, kClasses});
  SoftCrossEntropyLoss loss;
  run(state, {y}, [&] { return loss(y, target); });
}
BENCHMARK(BM_SoftCrossEntropyLoss);

void BM_CrossEntropyLabelSmooth(benchmark::State& state) {
  torch::manual_seed(0);
  auto y = leaf({kBatch, kClasses});
  auto labels = torch::randint(kClasses, {kBatch});
  CrossEntropyLabelSmooth loss{CrossEntropyLabelSmoothOptions(kClasses)};
  run(state, {y}, [&] { return loss(y, labels); });
}
BENCHMARK(BM_CrossEntropyLabelSmooth);

void BM_L2ConsistencyLoss(benchmark::State& state) {
  torch::manual_seed(0);
  auto y = leaf({kBatch, kClasses});
  auto teacher = torch::softmax(torch::randn({kBatch, kClasses}), 1);
  auto mask = (torch::rand({kBatch}) > 0.3).to(torch::kFloat32);
  L2ConsistencyLoss loss;
  run(state, {y}, [&] { return loss(torch::softmax(y, 1), teacher, mask); });
}
BENCHMARK(BM_L2ConsistencyLoss);

void BM_ClassBalanceLoss(benchmark::State& state) {
  torch::manual_seed(0);
  auto y = leaf({kBatch, kClasses});
  ClassBalanceLoss loss{ClassBalanceLossOptions(kClasses)};
  run(state, {y}, [&] { return loss(torch::softmax(y, 1)); });
}
BENCHMARK(BM_ClassBalanceLoss);

void BM_MinimumClassConfusionLoss(benchmark::State& state) {
  torch::manual_seed(0);
  auto y = leaf({kBatch, kClasses});
  MinimumClassConfusionLoss loss(MinimumClassConfusionLossOptions(2.5));
  run(state, {y}, [&] { return loss(y); });
}
BENCHMARK(BM_MinimumClassConfusionLoss);

void BM_AdaptiveFeatureNorm(benchmark::State& state) {
  torch::manual_seed(0);
  auto f = leaf({kBatch, kDim});
  AdaptiveFeatureNorm loss(AdaptiveFeatureNormOptions(1.0));
  run(state, {f}, [&] { return loss(f); });
}
BENCHMARK(BM_AdaptiveFeatureNorm);

}  // namespace

int main(int argc, char** argv) {
  torch::set_num_threads(1);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
