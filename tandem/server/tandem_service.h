// The gRPC faces of the JobCoordinator: tandem.v1.Tandem (the public job
// API) and tandem.v1.WorkerControl (the workers' control streams).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tandem/rpc/auth.h"
#include "tandem/server/job_coordinator.h"
#include "tandem/server/ranking_index.h"
#include "tandem/v1/tandem.grpc.pb.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::server {

/// Embeds a JPEG/PNG image with the model a job exported (OUTPUT_DIR's
/// ranking export); throws std::invalid_argument for bytes it cannot decode.
using ImageEmbedder =
    std::function<std::vector<float>(const std::string& output_dir, const std::string& bytes)>;

/// Bounds on Rank's image uploads, checked on the header before decoding.
struct UploadLimits {
  int64_t max_image_bytes = 16 << 20;
  int64_t max_image_pixels = 4096LL * 4096;
};

/// Every call is authorised first (rpc/auth.h: read for GetJob, ListJobs,
/// WatchJob and Rank; submit for SubmitJob; CancelJob and DeleteJob need
/// submit and the job's ownership, or admin).
class TandemService final : public tandem::v1::Tandem::Service {
 public:
  /// `embed` may be empty: image queries then answer UNIMPLEMENTED.
  TandemService(JobCoordinator& coordinator, ImageEmbedder embed, rpc::Authorizer authorizer = {},
                UploadLimits limits = {});

  grpc::Status SubmitJob(grpc::ServerContext* context, const tandem::v1::SubmitJobRequest* request,
                         tandem::v1::Job* reply) override;
  grpc::Status GetJob(grpc::ServerContext* context, const tandem::v1::GetJobRequest* request,
                      tandem::v1::Job* reply) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const tandem::v1::ListJobsRequest* request,
                        tandem::v1::ListJobsResponse* reply) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const tandem::v1::CancelJobRequest* request,
                         tandem::v1::Job* reply) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const tandem::v1::WatchJobRequest* request,
                        grpc::ServerWriter<tandem::v1::JobEvent>* writer) override;
  grpc::Status Rank(grpc::ServerContext* context, const tandem::v1::RankRequest* request,
                    tandem::v1::RankResponse* reply) override;
  grpc::Status DeleteJob(grpc::ServerContext* context, const tandem::v1::DeleteJobRequest* request,
                         tandem::v1::DeleteJobResponse* reply) override;

 private:
  /// The caller may change job `id` (submit and owner, or admin): OK, or
  /// the status to answer (NOT_FOUND, PERMISSION_DENIED).
  absl::Status authorize_change(const grpc::ServerContext& context, const std::string& id) const;

  JobCoordinator& coordinator_;
  ImageEmbedder embed_;
  rpc::Authorizer authorizer_;
  UploadLimits limits_;
  RankingIndexCache rankings_;
};

/// Only `worker` tokens register; with `require_certificate` (the server's
/// --client-ca) the worker must also present a client certificate that CA
/// signed.
class WorkerControlService final : public tandem::v1::WorkerControl::Service {
 public:
  explicit WorkerControlService(JobCoordinator& coordinator, rpc::Authorizer authorizer = {},
                                bool require_certificate = false);

  grpc::Status Connect(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<tandem::v1::WorkerCommand,
                                                tandem::v1::WorkerMessage>* stream) override;

 private:
  JobCoordinator& coordinator_;
  rpc::Authorizer authorizer_;
  bool require_certificate_;
};

}  // namespace tandem::server
