#include "tandem/server/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

namespace tandem::server {
namespace {

// Splits "host:port" ("[::1]:port" for IPv6); the port must be numeric.
absl::StatusOr<std::pair<std::string, int>> split_address(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return absl::InvalidArgumentError("grpc address '" + address +
                                      "' is not of the form host:port");
  }
  const std::string port_text = address.substr(colon + 1);
  int port = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9' || port > 65535) {
      return absl::InvalidArgumentError("grpc address '" + address + "' has a bad port '" +
                                        port_text + "'");
    }
    port = port * 10 + (c - '0');
  }
  if (port > 65535) {
    return absl::InvalidArgumentError("grpc address '" + address + "' has a port above 65535");
  }
  return std::make_pair(address.substr(0, colon), port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Create(
    const GrpcOptions& options, const std::vector<grpc::Service*>& services,
    const std::vector<std::string>& service_names) {
  auto host_port = split_address(options.address);
  if (!host_port.ok()) return host_port.status();
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError("max_message_bytes must be positive");
  }
  grpc::EnableDefaultHealthCheckService(true);
  // Server reflection lets grpcurl and grpc_cli discover the services; it is
  // also the service that makes a server with nothing else registered start
  // (the builder refuses a server with no method to serve before gRPC adds
  // its default health service).
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  // gRPC sets SO_REUSEPORT by default, which lets a second server bind a
  // port already in use and silently share its calls; refuse that instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(
      options.address,
      options.credentials ? options.credentials : grpc::InsecureServerCredentials(), &bound_port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    return absl::UnavailableError("cannot listen on " + options.address +
                                  " (address in use or not local?)");
  }
  if (auto* health = server->GetHealthCheckService()) {
    health->SetServingStatus(true);
    for (const auto& name : service_names) health->SetServingStatus(name, true);
  }
  return std::unique_ptr<GrpcServer>(
      new GrpcServer(std::move(server), host_port->first, bound_port));
}

GrpcServer::GrpcServer(std::unique_ptr<grpc::Server> server, std::string host, int port)
    : server_(std::move(server)), host_(std::move(host)), port_(port) {}

GrpcServer::~GrpcServer() {
  Shutdown(std::chrono::seconds(1));
}

std::string GrpcServer::target() const {
  const std::string host = (host_ == "0.0.0.0" || host_ == "[::]") ? "127.0.0.1" : host_;
  return host + ":" + std::to_string(port_);
}

void GrpcServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_.exchange(true)) return;
  if (auto* health = server_->GetHealthCheckService()) health->Shutdown();
  server_->Shutdown(std::chrono::system_clock::now() + grace);
}

void GrpcServer::Wait() {
  server_->Wait();
}

}  // namespace tandem::server
