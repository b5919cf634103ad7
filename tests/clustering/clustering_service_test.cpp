#include "tandem/clustering/clustering_service.h"

#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

#include "support/golden.h"
#include "tandem/clustering/clustering_client.h"
#include "tandem/server/grpc_server.h"

namespace tandem::clustering {
namespace {

using testing::error_message;

torch::Tensor blobs(int64_t ids, int64_t per_id, int64_t d, int seed) {
  torch::manual_seed(seed);
  auto centres = torch::randn({ids, d});
  centres = centres / centres.norm(2, {1}, true);
  return (centres.repeat_interleave(per_id, 0) + 0.05 * torch::randn({ids * per_id, d}))
      .contiguous();
}

// One service per suite on a free loopback port, with small limits.
class ClusteringServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ClusteringServiceOptions limits;
    limits.max_rows = 5000;
    limits.max_bytes = 5000 * 64 * 4;
    limits.max_concurrent_jobs = 2;
    service_ = new ClusteringServiceImpl(limits);
    server::GrpcOptions options;
    options.address = "127.0.0.1:0";
    auto created = server::GrpcServer::Create(options, {service_}, {"tandem.v1.ClusteringService"});
    ASSERT_TRUE(created.ok()) << created.status();
    server_ = created->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete service_;
  }
  static ClusteringClientOptions client() {
    ClusteringClientOptions options;
    options.target = server_->target();
    options.timeout = std::chrono::seconds(60);
    options.chunk_bytes = 4096;  // many chunks
    return options;
  }
  static ClusteringServiceImpl* service_;
  static server::GrpcServer* server_;
};
ClusteringServiceImpl* ClusteringServiceTest::service_ = nullptr;
server::GrpcServer* ClusteringServiceTest::server_ = nullptr;

TEST_F(ClusteringServiceTest, DbscanOverTheWireEqualsInProcess) {
  const auto f = blobs(10, 8, 32, 1);
  PseudoLabelOptions options;
  options.rho = 2e-2;
  const auto local = pseudo_labels(f, options);
  const auto remote = cluster_remote(f, options, client());
  EXPECT_TRUE(torch::equal(remote.labels, local.labels));
  EXPECT_TRUE(torch::equal(remote.centroids, local.centroids));
  EXPECT_EQ(remote.stats.clusters, local.stats.clusters);
  EXPECT_DOUBLE_EQ(remote.eps, local.eps);
  EXPECT_FALSE(remote.phase_seconds.empty());
}

TEST_F(ClusteringServiceTest, KMeansOverTheWireEqualsInProcess) {
  const auto f = blobs(6, 10, 16, 2);
  PseudoLabelOptions options;
  options.algorithm = PseudoLabelOptions::Algorithm::kKMeans;
  options.kmeans.k = 6;
  const auto local = pseudo_labels(f, options);
  const auto remote = cluster_remote(f, options, client());
  EXPECT_TRUE(torch::equal(remote.labels, local.labels));
  EXPECT_TRUE(torch::equal(remote.centroids, local.centroids));
}

TEST_F(ClusteringServiceTest, SeveralJobsAtOnce) {
  std::vector<std::thread> threads;
  std::vector<int64_t> clusters(4, -1);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      PseudoLabelOptions options;
      options.algorithm = PseudoLabelOptions::Algorithm::kKMeans;
      options.kmeans.k = 3 + t;
      clusters[t] = cluster_remote(blobs(3 + t, 12, 16, 10 + t), options, client()).stats.clusters;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(clusters, (std::vector<int64_t>{3, 4, 5, 6}));
}

TEST_F(ClusteringServiceTest, BadRequestsGetClearErrors) {
  PseudoLabelOptions kmeans;
  kmeans.algorithm = PseudoLabelOptions::Algorithm::kKMeans;
  kmeans.kmeans.k = 50;
  EXPECT_NE(error_message([&] {
              cluster_remote(blobs(2, 5, 8, 3), kmeans, client());
            }).find("KMeansParams.k must be in [1, rows = 10], got 50"),
            std::string::npos);
  PseudoLabelOptions dbscan;
  dbscan.rho = 5.0;
  EXPECT_NE(error_message([&] {
              cluster_remote(blobs(2, 5, 8, 3), dbscan, client());
            }).find("DbscanParams.rho must be in (0, 1]"),
            std::string::npos);
}

TEST_F(ClusteringServiceTest, OverTheRowLimitIsResourceExhausted) {
  PseudoLabelOptions kmeans;
  kmeans.algorithm = PseudoLabelOptions::Algorithm::kKMeans;
  kmeans.kmeans.k = 2;
  const auto message = error_message([&] {
    cluster_remote(torch::randn({5001, 4}), kmeans, client());
  });
  EXPECT_NE(message.find("failed: RESOURCE_EXHAUSTED: "), std::string::npos) << message;
  EXPECT_NE(message.find("over this server's limit of 5000"), std::string::npos) << message;
}

TEST_F(ClusteringServiceTest, ChunksOutOfOrderOrMissingAreRejected) {
  auto channel = grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials());
  auto stub = tandem::v1::ClusteringService::NewStub(channel);
  grpc::ClientContext context;
  tandem::v1::ClusterResponse response;
  auto writer = stub->Cluster(&context, &response);
  tandem::v1::ClusterRequest request;
  auto* header = request.mutable_header();
  header->set_rows(4);
  header->set_dim(2);
  header->mutable_kmeans()->set_k(2);
  writer->Write(request);
  request.Clear();
  request.mutable_chunk()->set_first_row(0);
  request.mutable_chunk()->set_data(std::string(2 * 2 * 4, '\0'));  // 2 of 4 rows
  writer->Write(request);
  writer->WritesDone();
  const auto status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "expected 4 rows, received 2");
}

TEST(ValidateHeader, NamesTheField) {
  tandem::v1::ClusterHeader header;
  header.set_rows(100);
  header.set_dim(8);
  EXPECT_EQ(validate_header(header, {}).error_message(),
            "ClusterHeader has no algorithm (kmeans or dbscan)");
  header.mutable_dbscan()->set_rho(2.0);
  EXPECT_EQ(validate_header(header, {}).error_message(), "DbscanParams.rho must be in (0, 1]");
  header.mutable_dbscan()->set_eps(0.5);
  EXPECT_TRUE(validate_header(header, {}).ok());
  header.set_dim(0);
  EXPECT_EQ(validate_header(header, {}).error_message(), "ClusterHeader.dim must be positive");
}

}  // namespace
}  // namespace tandem::clustering
