#include "tandem/server/tandem_service.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <mutex>
#include <stdexcept>

#include "tandem/rpc/status.h"
#include "tandem/rpc/tls.h"
#include "tandem/server/upload_limits.h"

namespace tandem::server {

using rpc::status_from_exceptions;
using rpc::to_grpc_status;
namespace {

namespace v1 = tandem::v1;

/// How long CancelJob waits for the ranks to stop before answering.
constexpr auto kCancelWait = std::chrono::seconds(15);

/// The server's end of one worker's Connect stream. Writes are serialised;
/// after the handler returns, the stream is never touched again.
class StreamChannel final : public WorkerChannel {
 public:
  StreamChannel(grpc::ServerContext* context,
                grpc::ServerReaderWriter<v1::WorkerCommand, v1::WorkerMessage>* stream)
      : context_(context), stream_(stream) {}

  bool send(const v1::WorkerCommand& command) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return stream_ != nullptr && stream_->Write(command);
  }
  void close() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (context_ != nullptr) context_->TryCancel();
  }
  /// The handler is about to return.
  void detach() {
    std::lock_guard<std::mutex> lock(mutex_);
    stream_ = nullptr;
    context_ = nullptr;
  }

 private:
  std::mutex mutex_;
  grpc::ServerContext* context_;
  grpc::ServerReaderWriter<v1::WorkerCommand, v1::WorkerMessage>* stream_;
};

}  // namespace

/// Answers `status` from the enclosing RPC handler when it is not OK.
#define TANDEM_RPC_RETURN_IF_ERROR(expr)                                     \
  do {                                                                       \
    const ::absl::Status tandem_rpc_status_ = (expr);                        \
    if (!tandem_rpc_status_.ok()) return to_grpc_status(tandem_rpc_status_); \
  } while (false)

TandemService::TandemService(JobCoordinator& coordinator, ImageEmbedder embed,
                             rpc::Authorizer authorizer, UploadLimits limits)
    : coordinator_(coordinator),
      embed_(std::move(embed)),
      authorizer_(std::move(authorizer)),
      limits_(limits) {}

absl::Status TandemService::authorize_change(const grpc::ServerContext& context,
                                             const std::string& id) const {
  auto caller = authorizer_.authorize(context, rpc::Permission::kSubmit);
  if (!caller.ok()) return caller.status();
  auto job = coordinator_.get(id);
  if (!job.ok()) return job.status();
  if (rpc::grants(caller->role, rpc::Permission::kAdmin) || job->owner() == caller->name) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError("job " + id + " belongs to '" + job->owner() + "', not '" +
                                     caller->name + "' (only an admin token changes others' jobs)");
}

grpc::Status TandemService::SubmitJob(grpc::ServerContext* context,
                                      const v1::SubmitJobRequest* request, v1::Job* reply) {
  auto caller = authorizer_.authorize(*context, rpc::Permission::kSubmit);
  if (!caller.ok()) return to_grpc_status(caller.status());
  auto job = coordinator_.submit(request->spec(), caller->name);
  if (!job.ok()) return to_grpc_status(job.status());
  *reply = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status TandemService::GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                                   v1::Job* reply) {
  TANDEM_RPC_RETURN_IF_ERROR(authorizer_.authorize(*context, rpc::Permission::kRead).status());
  auto job = coordinator_.get(request->id());
  if (!job.ok()) return to_grpc_status(job.status());
  *reply = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status TandemService::ListJobs(grpc::ServerContext* context,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* reply) {
  TANDEM_RPC_RETURN_IF_ERROR(authorizer_.authorize(*context, rpc::Permission::kRead).status());
  if (request->limit() < 0) {
    return to_grpc_status(absl::InvalidArgumentError("limit: must be >= 0"));
  }
  std::vector<v1::JobState> states;
  for (const int state : request->states()) states.push_back(static_cast<v1::JobState>(state));
  for (auto& job : coordinator_.list(states, request->limit())) *reply->add_jobs() = std::move(job);
  return grpc::Status::OK;
}

grpc::Status TandemService::CancelJob(grpc::ServerContext* context,
                                      const v1::CancelJobRequest* request, v1::Job* reply) {
  TANDEM_RPC_RETURN_IF_ERROR(authorize_change(*context, request->id()));
  auto job = coordinator_.cancel(request->id(), kCancelWait);
  if (!job.ok()) return to_grpc_status(job.status());
  *reply = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status TandemService::WatchJob(grpc::ServerContext* context,
                                     const v1::WatchJobRequest* request,
                                     grpc::ServerWriter<v1::JobEvent>* writer) {
  TANDEM_RPC_RETURN_IF_ERROR(authorizer_.authorize(*context, rpc::Permission::kRead).status());
  if (request->max_iteration_events_per_second() < 0) {
    return to_grpc_status(
        absl::InvalidArgumentError("max_iteration_events_per_second: must be >= 0"));
  }
  const absl::Status status = coordinator_.watch(
      request->id(), request->max_iteration_events_per_second(),
      [writer](const v1::JobEvent& event) { return writer->Write(event); },
      [context] { return context->IsCancelled(); });
  return to_grpc_status(status);
}

grpc::Status TandemService::Rank(grpc::ServerContext* context, const v1::RankRequest* request,
                                 v1::RankResponse* reply) {
  TANDEM_RPC_RETURN_IF_ERROR(authorizer_.authorize(*context, rpc::Permission::kRead).status());
  auto job = coordinator_.get(request->job_id());
  if (!job.ok()) return to_grpc_status(job.status());
  if (request->top_k() < 0) {
    return to_grpc_status(absl::InvalidArgumentError("top_k: must be >= 0 (0: 10)"));
  }
  auto index = rankings_.get(job->spec().output_dir());
  if (!index.ok()) {
    return to_grpc_status(absl::Status(index.status().code(),
                                       "job " + job->id() + " (" + v1::JobState_Name(job->state()) +
                                           "): " + std::string(index.status().message())));
  }
  absl::StatusOr<v1::RankResponse> response;
  switch (request->query_case()) {
    case v1::RankRequest::kQueryIndex:
      response = (*index)->rank_query(request->query_index(), request->top_k());
      break;
    case v1::RankRequest::kImage: {
      if (!embed_) {
        return to_grpc_status(absl::UnimplementedError("image: this server cannot embed images"));
      }
      if (request->image().empty()) {
        return to_grpc_status(absl::InvalidArgumentError("image: empty"));
      }
      // The header's size, before any decoder sees the bytes.
      TANDEM_RPC_RETURN_IF_ERROR(check_uploaded_image(request->image(), limits_.max_image_bytes,
                                                      limits_.max_image_pixels));
      std::vector<float> feature;
      try {
        feature = embed_(job->spec().output_dir(), request->image());
      } catch (const std::invalid_argument& error) {
        return to_grpc_status(absl::InvalidArgumentError(std::string("image: ") + error.what()));
      } catch (const std::exception& error) {
        return to_grpc_status(absl::InternalError(std::string("image: ") + error.what()));
      }
      response = (*index)->rank_features(feature, request->top_k());
      break;
    }
    default:
      return to_grpc_status(absl::InvalidArgumentError("query: give query_index or image bytes"));
  }
  if (!response.ok()) return to_grpc_status(response.status());
  *reply = *std::move(response);
  return grpc::Status::OK;
}

grpc::Status TandemService::DeleteJob(grpc::ServerContext* context,
                                      const v1::DeleteJobRequest* request,
                                      v1::DeleteJobResponse* reply) {
  TANDEM_RPC_RETURN_IF_ERROR(authorize_change(*context, request->id()));
  auto removed = coordinator_.remove(request->id());
  if (!removed.ok()) return to_grpc_status(removed.status());
  *reply = *std::move(removed);
  return grpc::Status::OK;
}

WorkerControlService::WorkerControlService(JobCoordinator& coordinator, rpc::Authorizer authorizer,
                                           bool require_certificate)
    : coordinator_(coordinator),
      authorizer_(std::move(authorizer)),
      require_certificate_(require_certificate) {}

grpc::Status WorkerControlService::Connect(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::WorkerCommand, v1::WorkerMessage>* stream) {
  // Credentials before the first read: nothing registers without them.
  TANDEM_RPC_RETURN_IF_ERROR(authorizer_.authorize(*context, rpc::Permission::kWorker).status());
  if (require_certificate_ && !rpc::peer_has_verified_certificate(*context)) {
    return to_grpc_status(absl::UnauthenticatedError(
        "a worker must present a client certificate signed by the server's --client-ca "
        "(tandem worker --tls-cert/--tls-key)"));
  }
  v1::WorkerMessage first;
  if (!stream->Read(&first)) return grpc::Status::OK;
  if (!first.has_register_()) {
    return to_grpc_status(absl::InvalidArgumentError(
        "register: the first message of a worker's stream must be RegisterWorker"));
  }
  auto channel = std::make_shared<StreamChannel>(context, stream);
  const std::string id = coordinator_.register_worker(first.register_(), channel);
  v1::WorkerMessage message;
  while (stream->Read(&message)) coordinator_.on_worker_message(id, message);
  channel->detach();
  coordinator_.on_worker_disconnected(id);
  return grpc::Status::OK;
}

}  // namespace tandem::server
