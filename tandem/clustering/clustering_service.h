// The gRPC ClusteringService (proto/tandem/v1/clustering.proto): receives an
// epoch's features in chunks and answers with pseudo labels and centroids.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include <tandem/v1/clustering.grpc.pb.h>

#include "tandem/clustering/pseudo_labels.h"

namespace tandem::clustering {

/// Limits of one ClusteringService.
struct ClusteringServiceOptions {
  /// Largest number of feature rows one request may announce.
  int64_t max_rows = 2'000'000;
  /// Largest feature payload (rows × dim × 4 bytes) of one request.
  int64_t max_bytes = int64_t{8} << 30;
  /// Clusterings that run at the same time; later ones wait their turn.
  int max_concurrent_jobs = 1;
};

/// Validates a header; INVALID_ARGUMENT or RESOURCE_EXHAUSTED naming the field.
grpc::Status validate_header(const tandem::v1::ClusterHeader& header,
                             const ClusteringServiceOptions& limits);

/// The PseudoLabelOptions a (validated) header asks for.
PseudoLabelOptions options_from_header(const tandem::v1::ClusterHeader& header);

/// Callback-API implementation; each Cluster call runs its clustering on a
/// thread of its own once all rows arrived, at most max_concurrent_jobs at a
/// time.
class ClusteringServiceImpl final : public tandem::v1::ClusteringService::CallbackService {
 public:
  explicit ClusteringServiceImpl(ClusteringServiceOptions options = {});
  ~ClusteringServiceImpl() override;

  grpc::ServerReadReactor<tandem::v1::ClusterRequest>* Cluster(
      grpc::CallbackServerContext* context, tandem::v1::ClusterResponse* response) override;

  const ClusteringServiceOptions& options() const { return options_; }
  /// Calls answered so far (any status).
  int64_t completed_calls() const { return completed_.load(); }

  // Used by the call reactors.
  void acquire_slot();
  void release_slot();
  void call_finished();

 private:
  ClusteringServiceOptions options_;
  std::mutex mutex_;
  std::condition_variable slot_free_;
  std::condition_variable idle_;
  int running_ = 0;
  int in_flight_ = 0;
  std::atomic<int64_t> completed_{0};
};

}  // namespace tandem::clustering
