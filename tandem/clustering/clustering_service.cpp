#include "tandem/clustering/clustering_service.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tandem/rpc/status.h"

namespace tandem::clustering {
namespace {

using tandem::v1::ClusterHeader;
using tandem::v1::ClusterRequest;
using tandem::v1::ClusterResponse;

grpc::Status invalid(const std::string& message) {
  return rpc::to_grpc_status(absl::InvalidArgumentError(message));
}

grpc::Status exhausted(const std::string& message) {
  return rpc::to_grpc_status(absl::ResourceExhaustedError(message));
}

// One Cluster call: reads the header and chunks, then clusters off the
// reactor thread and finishes.
class ClusterReactor final : public grpc::ServerReadReactor<ClusterRequest> {
 public:
  ClusterReactor(ClusteringServiceImpl* service, ClusterResponse* response)
      : service_(service), response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side: every row should be here
      if (!have_header_) return Finish(invalid("the stream carried no ClusterHeader"));
      if (received_rows_ != header_.rows()) {
        return Finish(invalid("expected " + std::to_string(header_.rows()) + " rows, received " +
                              std::to_string(received_rows_)));
      }
      std::thread([this] { run(); }).detach();
      return;
    }
    const grpc::Status status = consume(request_);
    if (!status.ok()) return Finish(status);
    StartRead(&request_);
  }

  void OnDone() override {
    service_->call_finished();
    delete this;
  }

 private:
  grpc::Status consume(const ClusterRequest& request) {
    if (request.has_header()) {
      if (have_header_) return invalid("a second ClusterHeader arrived; send exactly one, first");
      const grpc::Status status = validate_header(request.header(), service_->options());
      if (!status.ok()) return status;
      header_ = request.header();
      have_header_ = true;
      features_.resize(static_cast<std::size_t>(header_.rows() * header_.dim()));
      return grpc::Status::OK;
    }
    if (!request.has_chunk()) return invalid("a request carried neither header nor chunk");
    if (!have_header_) return invalid("a FeatureChunk arrived before the ClusterHeader");
    const auto& chunk = request.chunk();
    const int64_t row_bytes = int64_t{header_.dim()} * 4;
    const auto size = static_cast<int64_t>(chunk.data().size());
    if (size == 0 || size % row_bytes != 0) {
      return invalid("FeatureChunk.data has " + std::to_string(size) +
                     " bytes, not a positive multiple of dim·4 = " + std::to_string(row_bytes));
    }
    if (chunk.first_row() != received_rows_) {
      return invalid("FeatureChunk.first_row is " + std::to_string(chunk.first_row()) +
                     ", expected " + std::to_string(received_rows_) + " (chunks in row order)");
    }
    const int64_t rows = size / row_bytes;
    if (received_rows_ + rows > header_.rows()) {
      return invalid("FeatureChunks carry more rows than ClusterHeader.rows = " +
                     std::to_string(header_.rows()));
    }
    std::memcpy(features_.data() + received_rows_ * header_.dim(), chunk.data().data(),
                static_cast<std::size_t>(size));
    received_rows_ += rows;
    return grpc::Status::OK;
  }

  // Clustering on its own thread; the last thing it does is Finish().
  void run() {
    service_->acquire_slot();
    grpc::Status status;
    try {
      const auto features =
          torch::from_blob(features_.data(), {header_.rows(), header_.dim()}, torch::kFloat32);
      const auto result = pseudo_labels(features, options_from_header(header_));
      response_->set_job_id(header_.job_id());
      const auto labels = result.labels.contiguous();
      response_->mutable_labels()->Add(labels.data_ptr<int64_t>(),
                                       labels.data_ptr<int64_t>() + labels.numel());
      response_->set_clusters(result.stats.clusters);
      response_->set_noise(result.stats.noise);
      response_->set_eps(result.eps);
      response_->set_neighbor_recall(result.neighbor_recall);
      response_->set_dim(header_.dim());
      const auto centroids = result.centroids.contiguous();
      response_->set_centroids(centroids.data_ptr<float>(),
                               static_cast<std::size_t>(centroids.numel()) * sizeof(float));
      for (const auto& [phase, seconds] : result.phase_seconds) {
        auto* time = response_->add_phases();
        time->set_phase(phase);
        time->set_seconds(seconds);
      }
    } catch (const c10::Error& error) {
      status = invalid(error.what_without_backtrace());
    } catch (const std::exception& error) {
      status = rpc::to_grpc_status(absl::InternalError(error.what()));
    }
    std::vector<float>().swap(features_);
    service_->release_slot();
    Finish(status);
  }

  ClusteringServiceImpl* service_;
  ClusterResponse* response_;
  ClusterRequest request_;
  ClusterHeader header_;
  bool have_header_ = false;
  int64_t received_rows_ = 0;
  std::vector<float> features_;
};

}  // namespace

grpc::Status validate_header(const ClusterHeader& header, const ClusteringServiceOptions& limits) {
  if (header.rows() <= 0) return invalid("ClusterHeader.rows must be positive");
  if (header.dim() <= 0) return invalid("ClusterHeader.dim must be positive");
  if (header.rows() > limits.max_rows) {
    return exhausted("ClusterHeader.rows = " + std::to_string(header.rows()) +
                     " is over this server's limit of " + std::to_string(limits.max_rows));
  }
  if (header.rows() * int64_t{header.dim()} * 4 > limits.max_bytes) {
    return exhausted(
        "the features (rows·dim·4 = " + std::to_string(header.rows() * int64_t{header.dim()} * 4) +
        " bytes) are over this server's limit of " + std::to_string(limits.max_bytes) + " bytes");
  }
  if (header.has_kmeans()) {
    const auto& k = header.kmeans();
    if (k.k() < 1 || k.k() > header.rows()) {
      return invalid("KMeansParams.k must be in [1, rows = " + std::to_string(header.rows()) +
                     "], got " + std::to_string(k.k()));
    }
    if (k.niter() < 0 || k.nredo() < 0) return invalid("KMeansParams.niter and nredo must be >= 0");
    return grpc::Status::OK;
  }
  if (!header.has_dbscan()) return invalid("ClusterHeader has no algorithm (kmeans or dbscan)");
  const auto& p = header.dbscan();
  const int64_t k1 = p.k1() == 0 ? 20 : p.k1();
  const int64_t k2 = p.k2() == 0 ? 6 : p.k2();
  if (k1 < 1 || k2 < 1) return invalid("DbscanParams.k1 and k2 must be positive");
  if (p.min_samples() < 0) return invalid("DbscanParams.min_samples must be >= 0");
  if (p.eps_rule_case() == tandem::v1::DbscanParams::kEps && !(p.eps() >= 0)) {
    return invalid("DbscanParams.eps must be non-negative");
  }
  if (p.eps_rule_case() == tandem::v1::DbscanParams::kRho && !(p.rho() > 0 && p.rho() <= 1)) {
    return invalid("DbscanParams.rho must be in (0, 1]");
  }
  if (p.ivf_lists() < 0 || p.ivf_probe() < 0 || p.min_ivf_recall() < 0 || p.min_ivf_recall() > 1) {
    return invalid("DbscanParams.ivf_lists and ivf_probe must be >= 0, min_ivf_recall in [0, 1]");
  }
  return grpc::Status::OK;
}

PseudoLabelOptions options_from_header(const ClusterHeader& header) {
  PseudoLabelOptions options;
  if (header.has_kmeans()) {
    const auto& k = header.kmeans();
    options.algorithm = PseudoLabelOptions::Algorithm::kKMeans;
    options.kmeans.k = k.k();
    if (k.niter() > 0) options.kmeans.niter = k.niter();
    options.kmeans.seed = k.seed();
    if (k.nredo() > 0) options.kmeans.nredo = k.nredo();
    return options;
  }
  const auto& p = header.dbscan();
  options.algorithm = PseudoLabelOptions::Algorithm::kDbscan;
  if (p.k1() > 0) options.jaccard.k1 = p.k1();
  if (p.k2() > 0) options.jaccard.k2 = p.k2();
  if (p.ivf()) options.jaccard.search = NeighborSearch::kIvf;
  if (p.ivf_lists() > 0) options.jaccard.ivf_lists = p.ivf_lists();
  if (p.ivf_probe() > 0) options.jaccard.ivf_probe = p.ivf_probe();
  if (p.min_ivf_recall() > 0) options.min_ivf_recall = p.min_ivf_recall();
  if (p.min_samples() > 0) options.dbscan.min_samples = p.min_samples();
  switch (p.eps_rule_case()) {
    case tandem::v1::DbscanParams::kEps:
      options.dbscan.eps = p.eps();
      options.rho = std::nullopt;
      break;
    case tandem::v1::DbscanParams::kRho: options.rho = p.rho(); break;
    default: options.rho = 1.6e-3;  // MMT's default rule
  }
  return options;
}

ClusteringServiceImpl::ClusteringServiceImpl(ClusteringServiceOptions options)
    : options_(options) {}

ClusteringServiceImpl::~ClusteringServiceImpl() {
  std::unique_lock<std::mutex> lock(mutex_);
  idle_.wait(lock, [this] { return in_flight_ == 0; });
}

grpc::ServerReadReactor<ClusterRequest>* ClusteringServiceImpl::Cluster(
    grpc::CallbackServerContext* /*context*/, ClusterResponse* response) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++in_flight_;
  }
  return new ClusterReactor(this, response);
}

void ClusteringServiceImpl::acquire_slot() {
  std::unique_lock<std::mutex> lock(mutex_);
  slot_free_.wait(lock, [this] { return running_ < std::max(1, options_.max_concurrent_jobs); });
  ++running_;
}

void ClusteringServiceImpl::release_slot() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --running_;
  }
  slot_free_.notify_one();
}

void ClusteringServiceImpl::call_finished() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --in_flight_;
  }
  completed_.fetch_add(1);
  idle_.notify_all();
}

}  // namespace tandem::clustering
