// A gRPC server on one address, with the standard grpc.health.v1.Health
// service that every Tandem process exposes.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

namespace grpc {
class Server;
class ServerCredentials;
class Service;
class HealthCheckServiceInterface;
}  // namespace grpc

namespace tandem::server {

struct GrpcOptions {
  /// host:port to listen on; port 0 picks a free port (see bound_port()).
  std::string address = "127.0.0.1:50051";
  /// Largest message accepted or sent (features are streamed in chunks).
  int max_message_bytes = 64 << 20;
  /// The listener's credentials (rpc::server_credentials: TLS, mutual TLS);
  /// null: plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
};

class GrpcServer {
 public:
  /// Starts a server on options.address serving `services` (not owned; they
  /// must outlive the server) plus the health service, which reports SERVING
  /// for the server ("") and for each service's name. Fails with
  /// UNAVAILABLE naming the address when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Create(
      const GrpcOptions& options, const std::vector<grpc::Service*>& services,
      const std::vector<std::string>& service_names = {});

  ~GrpcServer();
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  /// The port actually bound.
  int bound_port() const { return port_; }
  /// "host:port" clients can dial.
  std::string target() const;
  /// Marks every service NOT_SERVING, then stops accepting calls and waits
  /// for in-flight ones up to `grace`.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::seconds(5));
  /// Blocks until Shutdown() is called from another thread.
  void Wait();

 private:
  GrpcServer(std::unique_ptr<grpc::Server> server, std::string host, int port);

  std::unique_ptr<grpc::Server> server_;
  std::string host_;
  int port_;
  std::atomic<bool> shut_down_{false};
};

}  // namespace tandem::server
