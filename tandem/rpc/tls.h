// TLS for Tandem's gRPC listeners and channels, from PEM files
// (docs/security.md). Plaintext stays the default, meant for loopback.
#pragma once

#include <memory>
#include <string>

#include <absl/status/statusor.h>

namespace grpc {
class ServerCredentials;
class ChannelCredentials;
class ServerContext;
}  // namespace grpc

namespace tandem::rpc {

/// Whether a listener's client certificate is optional or required.
enum class ClientCertificates {
  /// Verified against client_ca when presented; calls without one still
  /// connect (the job service: users bring tokens, workers certificates).
  kVerifyIfPresented,
  /// Every connection must present a certificate client_ca signed (the
  /// clustering service: only ranks call it).
  kRequire,
};

struct ServerTls {
  /// PEM certificate chain and private key; both empty: plaintext.
  std::string cert_file, key_file;
  /// PEM CA bundle that signs client certificates (mutual TLS); empty: none
  /// asked for. Needs cert_file and key_file.
  std::string client_ca_file;
  ClientCertificates client_certificates = ClientCertificates::kVerifyIfPresented;
  /// What the flags are called in errors: PREFIX + "tls-cert", "tls-key",
  /// "client-ca" (`tandem worker` names its health listener's
  /// "--health-tls-cert").
  std::string flag_prefix = "--";

  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

/// The listener's credentials: insecure when `tls` is not enabled, else TLS
/// (and mutual TLS with client_ca_file). INVALID_ARGUMENT naming the flag
/// (--tls-cert, --tls-key, --client-ca) for a half-given pair or a file that
/// cannot be read or holds no PEM block.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> server_credentials(const ServerTls& tls);

/// True when the call's peer presented a client certificate the listener's
/// --client-ca verified (always false on a plaintext listener).
bool peer_has_verified_certificate(const grpc::ServerContext& context);

/// The certificate's subject common name of a verified peer ("" otherwise).
std::string peer_common_name(const grpc::ServerContext& context);

/// True for 127.0.0.0/8, ::1, localhost and "unix:" targets: where plaintext
/// is acceptable.
bool is_loopback_address(const std::string& host_port);

/// Reads a whole file; INVALID_ARGUMENT naming `what` (a flag) and the path.
absl::StatusOr<std::string> read_pem_file(const std::string& path, const std::string& what);

}  // namespace tandem::rpc
