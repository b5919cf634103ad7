#include "tandem/clustering/clustering_client.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/golden.h"

namespace tandem::clustering {
namespace {

using testing::error_message;

TEST(ClusterRemote, UnreachableServiceFailsWithTheTargetAndNoHang) {
  ClusteringClientOptions client;
  client.target = "127.0.0.1:1";
  client.timeout = std::chrono::seconds(2);
  PseudoLabelOptions options;
  options.algorithm = PseudoLabelOptions::Algorithm::kKMeans;
  options.kmeans.k = 2;
  const auto start = std::chrono::steady_clock::now();
  const auto message = error_message([&] {
    cluster_remote(torch::randn({10, 4}), options, client);
  });
  EXPECT_NE(message.find("clustering service at 127.0.0.1:1 failed"), std::string::npos) << message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(ClusterRemote, ChecksItsInputBeforeCalling) {
  PseudoLabelOptions options;
  EXPECT_NE(error_message([&] {
              cluster_remote(torch::randn({10}), options);
            }).find("features must be a 2-D (n, d) tensor"),
            std::string::npos);
  ClusteringClientOptions tiny;
  tiny.chunk_bytes = 8;
  EXPECT_NE(error_message([&] {
              cluster_remote(torch::randn({10, 4}), options, tiny);
            }).find("cannot hold one row"),
            std::string::npos);
}

}  // namespace
}  // namespace tandem::clustering
