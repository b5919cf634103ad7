// The gRPC faces of the JobCoordinator: tandem.v1.Tandem (the public job
// API) and tandem.v1.WorkerControl (the workers' control streams).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tandem/server/job_coordinator.h"
#include "tandem/server/ranking_index.h"
#include "tandem/v1/tandem.grpc.pb.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::server {

/// Embeds a JPEG/PNG image with the model a job exported (OUTPUT_DIR's
/// ranking export); throws std::invalid_argument for bytes it cannot decode.
using ImageEmbedder =
    std::function<std::vector<float>(const std::string& output_dir, const std::string& bytes)>;

class TandemService final : public tandem::v1::Tandem::Service {
 public:
  /// `embed` may be empty: image queries then answer UNIMPLEMENTED.
  TandemService(JobCoordinator& coordinator, ImageEmbedder embed);

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

 private:
  JobCoordinator& coordinator_;
  ImageEmbedder embed_;
  RankingIndexCache rankings_;
};

class WorkerControlService final : public tandem::v1::WorkerControl::Service {
 public:
  explicit WorkerControlService(JobCoordinator& coordinator);

  grpc::Status Connect(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<tandem::v1::WorkerCommand,
                                                tandem::v1::WorkerMessage>* stream) override;

 private:
  JobCoordinator& coordinator_;
};

}  // namespace tandem::server
