// Client of the ClusteringService: streams features in chunks under 4 MiB and
// returns the pseudo labels, as the trainer gets them in-process.
#pragma once

#include <chrono>
#include <string>

#include <torch/types.h>

#include "tandem/clustering/pseudo_labels.h"

namespace tandem::clustering {

/// Where and how to call the service.
struct ClusteringClientOptions {
  /// host:port of `tandem cluster`.
  std::string target = "127.0.0.1:50052";
  /// Deadline of the whole call (upload, clustering, answer).
  std::chrono::milliseconds timeout = std::chrono::minutes(30);
  /// Bytes of feature data per message (under gRPC's 4 MiB default).
  int64_t chunk_bytes = 3 << 20;
  /// Shown in the server's logs and statistics.
  std::string job_id;
};

/// pseudo_labels(features, options) computed by a ClusteringService. Throws
/// c10::Error with the gRPC status code and message when the call fails.
PseudoLabels cluster_remote(const torch::Tensor& features, const PseudoLabelOptions& options,
                            const ClusteringClientOptions& client = {});

}  // namespace tandem::clustering
