#include "tandem/rpc/channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/client_interceptor.h>

#include <cstdlib>

#include "tandem/rpc/tls.h"

namespace tandem::rpc {
namespace {

/// Adds `authorization: Bearer TOKEN` to every call's initial metadata (an
/// interceptor rather than call credentials, which gRPC sends over TLS only:
/// a loopback server without TLS may still ask for tokens).
class BearerTokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(const std::string& token) : header_("Bearer " + token) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", header_});
    }
    methods->Proceed();
  }

 private:
  std::string header_;
};

class BearerTokenFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenFactory(std::string token) : token_(std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerTokenInterceptor(token_);
  }

 private:
  std::string token_;
};

void fill_from(std::string& field, const char* variable) {
  if (!field.empty()) return;
  if (const char* value = std::getenv(variable); value != nullptr) field = value;
}

}  // namespace

ClientSecurity& ClientSecurity::with_environment() {
  fill_from(token, "TANDEM_TOKEN");
  fill_from(tls_ca_file, "TANDEM_TLS_CA");
  fill_from(tls_cert_file, "TANDEM_TLS_CERT");
  fill_from(tls_key_file, "TANDEM_TLS_KEY");
  return *this;
}

ClientSecurity ClientSecurity::from_environment() {
  return ClientSecurity{}.with_environment();
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> make_channel(const std::string& target,
                                                            const ClientSecurity& security) {
  return make_channel(target, security, grpc::ChannelArguments());
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> make_channel(
    const std::string& target, const ClientSecurity& security,
    const grpc::ChannelArguments& arguments) {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (security.tls()) {
    grpc::SslCredentialsOptions options;
    if (!security.tls_ca_file.empty()) {
      auto ca = read_pem_file(security.tls_ca_file, "--tls-ca");
      if (!ca.ok()) return ca.status();
      options.pem_root_certs = *std::move(ca);
    }  // else: the system's roots
    if (security.tls_cert_file.empty() != security.tls_key_file.empty()) {
      return absl::InvalidArgumentError(security.tls_cert_file.empty()
                                            ? "--tls-key needs --tls-cert"
                                            : "--tls-cert needs --tls-key");
    }
    if (!security.tls_cert_file.empty()) {
      auto cert = read_pem_file(security.tls_cert_file, "--tls-cert");
      if (!cert.ok()) return cert.status();
      auto key = read_pem_file(security.tls_key_file, "--tls-key");
      if (!key.ok()) return key.status();
      options.pem_cert_chain = *std::move(cert);
      options.pem_private_key = *std::move(key);
    }
    credentials = grpc::SslCredentials(options);
  }
  if (security.token.empty()) return grpc::CreateCustomChannel(target, credentials, arguments);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<BearerTokenFactory>(security.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, credentials, arguments,
                                                                 std::move(factories));
}

}  // namespace tandem::rpc
