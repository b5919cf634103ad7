// Forward(+backward) time of methods/ at MMT sizes (batch 64, 2048-d).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "tandem/methods/reid_loss.h"

namespace {

void BM_PairwiseEuclideanDistance(benchmark::State& state) {
  torch::manual_seed(0);
  const int64_t n = state.range(0);
  auto x = torch::randn({n, 2048}, torch::requires_grad());
  for (auto _ : state) {
    auto d = tandem::methods::pairwise_euclidean_distance(x, x);
    d.sum().backward();
    benchmark::DoNotOptimize(x.grad().data_ptr<float>());
  }
  state.SetItemsProcessed(state.iterations() * n * n);
}
BENCHMARK(BM_PairwiseEuclideanDistance)->Arg(64)->Arg(256)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  torch::set_num_threads(1);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
