// The one way Tandem dials a gRPC endpoint: TLS from PEM files when asked,
// and the bearer token added to every call (docs/security.md).
#pragma once

#include <memory>
#include <string>

#include <absl/status/statusor.h>

namespace grpc {
class Channel;
class ChannelArguments;
}  // namespace grpc

namespace tandem::rpc {

struct ClientSecurity {
  /// Sent as `authorization: Bearer TOKEN` on every call ("": none).
  std::string token;
  /// PEM CA bundle that signs the server's certificate; set: TLS.
  std::string tls_ca_file;
  /// This client's certificate and key for mutual TLS (workers, ranks).
  std::string tls_cert_file, tls_key_file;

  /// Any TLS file given (a key alone too: make_channel then names the
  /// missing --tls-cert instead of dialling in plaintext).
  bool tls() const {
    return !tls_ca_file.empty() || !tls_cert_file.empty() || !tls_key_file.empty();
  }

  /// Fills the fields left empty from TANDEM_TOKEN, TANDEM_TLS_CA,
  /// TANDEM_TLS_CERT and TANDEM_TLS_KEY.
  ClientSecurity& with_environment();
  /// Only the environment's.
  static ClientSecurity from_environment();
};

/// A channel to `target` with `security` (plaintext when it asks for no
/// TLS). INVALID_ARGUMENT naming the flag (--tls-ca, --tls-cert, --tls-key)
/// for a file that cannot be read, or a certificate without its key.
absl::StatusOr<std::shared_ptr<grpc::Channel>> make_channel(const std::string& target,
                                                            const ClientSecurity& security);
absl::StatusOr<std::shared_ptr<grpc::Channel>> make_channel(
    const std::string& target, const ClientSecurity& security,
    const grpc::ChannelArguments& arguments);

}  // namespace tandem::rpc
