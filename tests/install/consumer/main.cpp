// Uses each exported component through its installed header.
#include <torch/torch.h>

#include <iostream>

#include <tandem/clustering/kmeans.h>
#include <tandem/methods/mcc.h>
#include <tandem/methods/models/resnet.h>
#include <tandem/methods/reid_loss.h>
#include <tandem/worker/distributed.h>

int main() {
  auto x = torch::tensor({{0.0f, 0.0f}, {3.0f, 4.0f}});
  const float d = tandem::methods::pairwise_euclidean_distance(x, x)[0][1].item<float>();
  tandem::clustering::KMeansOptions kmeans_options;
  kmeans_options.k = 2;
  auto clusters = tandem::clustering::kmeans(x, kmeans_options);
  const auto dist = tandem::worker::distributed_options_from_env({{"WORLD_SIZE", "2"}});
  const bool ok = d == 5.0f &&
                  clusters.labels[0].item<int64_t>() != clusters.labels[1].item<int64_t>() &&
                  dist.world_size == 2;
  std::cout << (ok ? "consumer ok" : "consumer FAILED") << " d=" << d << "\n";
  return ok ? 0 : 1;
}
