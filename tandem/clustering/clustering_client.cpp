#include "tandem/clustering/clustering_client.h"

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/channel_arguments.h>
#include <tandem/v1/clustering.grpc.pb.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>

#include "tandem/clustering/tensor_checks.h"
#include "tandem/rpc/channel.h"
#include "tandem/rpc/status.h"

namespace tandem::clustering {
namespace {

tandem::v1::ClusterHeader header_for(const torch::Tensor& features,
                                     const PseudoLabelOptions& options, const std::string& job_id) {
  tandem::v1::ClusterHeader header;
  header.set_job_id(job_id);
  header.set_rows(features.size(0));
  header.set_dim(static_cast<int32_t>(features.size(1)));
  if (options.algorithm == PseudoLabelOptions::Algorithm::kKMeans) {
    auto* k = header.mutable_kmeans();
    k->set_k(options.kmeans.k);
    k->set_niter(options.kmeans.niter);
    k->set_seed(options.kmeans.seed);
    k->set_nredo(options.kmeans.nredo);
    return header;
  }
  auto* p = header.mutable_dbscan();
  p->set_k1(static_cast<int32_t>(options.jaccard.k1));
  p->set_k2(static_cast<int32_t>(options.jaccard.k2));
  if (options.rho.has_value()) {
    p->set_rho(*options.rho);
  } else {
    p->set_eps(options.dbscan.eps);
  }
  p->set_min_samples(static_cast<int32_t>(options.dbscan.min_samples));
  p->set_ivf(options.jaccard.search == NeighborSearch::kIvf);
  p->set_ivf_lists(static_cast<int32_t>(options.jaccard.ivf_lists));
  p->set_ivf_probe(static_cast<int32_t>(options.jaccard.ivf_probe));
  p->set_min_ivf_recall(options.min_ivf_recall);
  return header;
}

}  // namespace

PseudoLabels cluster_remote(const torch::Tensor& features, const PseudoLabelOptions& options,
                            const ClusteringClientOptions& client) {
  const auto input = to_faiss_input(features, "features");
  TORCH_CHECK(client.chunk_bytes >= 4 * input.size(1),
              "cluster_remote: chunk_bytes = ", client.chunk_bytes, " cannot hold one row of ",
              input.size(1), " floats");
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(-1);  // labels and centroids of large inputs
  // Mutual TLS when the worker passed its TLS files (TANDEM_TLS_CA, _CERT,
  // _KEY) to this rank; plaintext otherwise.
  auto channel =
      rpc::make_channel(client.target, rpc::ClientSecurity::from_environment(), arguments);
  TORCH_CHECK(channel.ok(), "clustering service at ", client.target, ": ",
              channel.status().message());
  auto stub = tandem::v1::ClusteringService::NewStub(*channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + client.timeout);
  tandem::v1::ClusterResponse response;
  auto writer = stub->Cluster(&context, &response);

  tandem::v1::ClusterRequest request;
  *request.mutable_header() = header_for(input, options, client.job_id);
  bool open = writer->Write(request);
  const int64_t rows = input.size(0);
  const int64_t row_bytes = 4 * input.size(1);
  const int64_t rows_per_chunk = std::max<int64_t>(1, client.chunk_bytes / row_bytes);
  const auto* data = reinterpret_cast<const char*>(input.data_ptr<float>());
  for (int64_t first = 0; open && first < rows; first += rows_per_chunk) {
    const int64_t count = std::min(rows_per_chunk, rows - first);
    request.Clear();
    auto* chunk = request.mutable_chunk();
    chunk->set_first_row(first);
    chunk->set_data(data + first * row_bytes, static_cast<std::size_t>(count * row_bytes));
    open = writer->Write(request);
  }
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  TORCH_CHECK(status.ok(), "clustering service at ", client.target,
              " failed: ", rpc::code_name(status.error_code()), ": ", status.error_message());
  TORCH_CHECK(response.labels_size() == rows, "clustering service returned ",
              response.labels_size(), " labels for ", rows, " rows");
  PseudoLabels result;
  result.labels = torch::tensor(
      std::vector<int64_t>(response.labels().begin(), response.labels().end()), torch::kInt64);
  result.stats = {response.clusters(), response.noise()};
  result.eps = response.eps();
  result.neighbor_recall = response.neighbor_recall();
  const auto expected_bytes = static_cast<std::size_t>(response.clusters()) *
                              static_cast<std::size_t>(input.size(1)) * sizeof(float);
  TORCH_CHECK(response.centroids().size() == expected_bytes,
              "clustering service returned centroids of ", response.centroids().size(),
              " bytes, expected ", expected_bytes);
  result.centroids = torch::empty({response.clusters(), input.size(1)}, torch::kFloat32);
  std::memcpy(result.centroids.data_ptr<float>(), response.centroids().data(), expected_bytes);
  for (const auto& phase : response.phases()) {
    result.phase_seconds.emplace_back(phase.phase(), phase.seconds());
  }
  return result;
}

}  // namespace tandem::clustering
