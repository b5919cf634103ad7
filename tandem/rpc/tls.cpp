#include "tandem/rpc/tls.h"

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

namespace tandem::rpc {

absl::StatusOr<std::string> read_pem_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(what + ": cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  std::string pem = text.str();
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(what + ": " + path + " holds no PEM block");
  }
  return pem;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> server_credentials(const ServerTls& tls) {
  const std::string cert_flag = tls.flag_prefix + "tls-cert",
                    key_flag = tls.flag_prefix + "tls-key", ca_flag = tls.flag_prefix + "client-ca";
  if (!tls.enabled()) {
    if (!tls.client_ca_file.empty()) {
      return absl::InvalidArgumentError(ca_flag + " needs TLS: give " + cert_flag + " and " +
                                        key_flag + " too");
    }
    return grpc::InsecureServerCredentials();
  }
  if (tls.cert_file.empty()) return absl::InvalidArgumentError(key_flag + " needs " + cert_flag);
  if (tls.key_file.empty()) return absl::InvalidArgumentError(cert_flag + " needs " + key_flag);
  auto cert = read_pem_file(tls.cert_file, cert_flag);
  if (!cert.ok()) return cert.status();
  auto key = read_pem_file(tls.key_file, key_flag);
  if (!key.ok()) return key.status();
  grpc_ssl_client_certificate_request_type request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  std::string roots;
  if (!tls.client_ca_file.empty()) {
    auto ca = read_pem_file(tls.client_ca_file, ca_flag);
    if (!ca.ok()) return ca.status();
    roots = *std::move(ca);
    request = tls.client_certificates == ClientCertificates::kRequire
                  ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                  : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  grpc::SslServerCredentialsOptions options(request);
  options.pem_root_certs = roots;
  options.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  return grpc::SslServerCredentials(options);
}

bool peer_has_verified_certificate(const grpc::ServerContext& context) {
  const auto auth = context.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return false;
  // Only the TLS transport authenticates peers here; its identity is the
  // verified certificate's names.
  const auto type = auth->FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
  return !type.empty() && std::string(type.front().data(), type.front().size()) == "ssl";
}

std::string peer_common_name(const grpc::ServerContext& context) {
  if (!peer_has_verified_certificate(context)) return "";
  const auto names = context.auth_context()->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
  return names.empty() ? "" : std::string(names.front().data(), names.front().size());
}

bool is_loopback_address(const std::string& host_port) {
  if (host_port.rfind("unix:", 0) == 0 || host_port.rfind("unix-abstract:", 0) == 0) return true;
  std::string host = host_port;
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string::npos) return false;
    host = host.substr(1, close - 1);  // [::1]:port
  } else if (const auto colon = host.rfind(':');
             colon != std::string::npos && host.find(':') == colon) {
    host = host.substr(0, colon);  // host:port (one colon)
  }
  std::string lower(host.size(), '\0');
  std::transform(host.begin(), host.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "localhost") return true;
  // Numeric addresses only: a host name such as 127.example.com is not one.
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;  // 127.0.0.0/8
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;  // ::ffff:127.x.y.z
  }
  return false;
}

}  // namespace tandem::rpc
