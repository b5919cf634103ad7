// TLS credentials, peer certificates and the channel factory, over real
// loopback sockets with certificates the `openssl` CLI makes once per test
// process.
#include "tandem/rpc/tls.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <grpc/health/v1/health.grpc.pb.h>
#include <grpcpp/grpcpp.h>

#include <unistd.h>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>

#include "tandem/rpc/channel.h"
#include "tandem/server/grpc_server.h"
#include "tandem/v1/tandem.grpc.pb.h"

namespace tandem::rpc {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string message_of(const absl::Status& status) {
  return std::string(status.message());
}

// --- Certificates ---------------------------------------------------------------

constexpr const char* kOpensslConfig = R"([req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[client_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
)";

/// A CA, a server certificate for localhost/127.0.0.1 and a client
/// certificate it signed; another CA and a client certificate of its own.
struct Certificates {
  fs::path dir;
  std::string error;  // why they could not be made
  std::string ca, server_cert, server_key, client_cert, client_key;
  std::string other_ca, other_client_cert, other_client_key;

  Certificates() {
    if (std::system("openssl version >/dev/null 2>&1") != 0) {
      error = "the `openssl` command is not on PATH; tls_test makes its certificates with it";
      return;
    }
    std::string pattern = (fs::temp_directory_path() / "tandem-tls-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      error = "mkdtemp failed";
      return;
    }
    dir = pattern;
    std::ofstream(dir / "openssl.cnf") << kOpensslConfig;
    const std::string d = dir.string() + "/";
    const std::string cnf = " -config " + d + "openssl.cnf";
    const std::string newkey = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    auto make_ca = [&](const std::string& stem, const std::string& cn) {
      return run("openssl req -x509" + cnf + " -extensions ca_ext" + newkey + " -keyout " + d +
                 stem + ".key -out " + d + stem + ".pem -days 2 -subj '/CN=" + cn + "'");
    };
    auto make_leaf = [&](const std::string& stem, const std::string& cn, const std::string& ca,
                         const std::string& ext) {
      return run("openssl req" + cnf + newkey + " -keyout " + d + stem + ".key -out " + d + stem +
                 ".csr -subj '/CN=" + cn + "'") &&
             run("openssl x509 -req -in " + d + stem + ".csr -CA " + d + ca + ".pem -CAkey " + d +
                 ca + ".key -CAcreateserial -days 2 -out " + d + stem + ".pem -extfile " + d +
                 "openssl.cnf -extensions " + ext);
    };
    if (!(make_ca("ca", "Tandem Test CA") && make_ca("other-ca", "Another CA") &&
          make_leaf("server", "localhost", "ca", "server_ext") &&
          make_leaf("client", "worker-1", "ca", "client_ext") &&
          make_leaf("other-client", "intruder", "other-ca", "client_ext"))) {
      return;
    }
    ca = d + "ca.pem";
    server_cert = d + "server.pem";
    server_key = d + "server.key";
    client_cert = d + "client.pem";
    client_key = d + "client.key";
    other_ca = d + "other-ca.pem";
    other_client_cert = d + "other-client.pem";
    other_client_key = d + "other-client.key";
  }
  ~Certificates() {
    std::error_code ignored;
    if (!dir.empty()) fs::remove_all(dir, ignored);
  }

  /// A file in the certificates' folder.
  std::string file(const std::string& name, const std::string& text) const {
    const fs::path path = dir / name;
    std::ofstream(path) << text;
    return path.string();
  }
  std::string missing(const std::string& name) const { return (dir / name).string(); }

 private:
  bool run(const std::string& command) {
    const std::string log = (dir / "openssl.log").string();
    if (std::system((command + " >" + log + " 2>&1").c_str()) == 0) return true;
    std::ifstream in(log);
    std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    error = "`" + command + "` failed:\n" + output;
    return false;
  }
};

const Certificates& certificates() {
  static const Certificates made;
  return made;
}

/// Tests that need the certificates: a clear failure when openssl cannot make
/// them.
class Tls : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(certificates().error.empty()) << certificates().error; }
  const Certificates& certs() const { return certificates(); }
};

// --- A server and its clients ---------------------------------------------------

/// Records what the server saw of the last GetJob call.
class RecordingService final : public tandem::v1::Tandem::Service {
 public:
  struct Seen {
    bool verified = false;
    std::string common_name;
    std::vector<std::string> authorization;
  };

  grpc::Status GetJob(grpc::ServerContext* context, const tandem::v1::GetJobRequest* request,
                      tandem::v1::Job* response) override {
    Seen seen;
    seen.verified = peer_has_verified_certificate(*context);
    seen.common_name = peer_common_name(*context);
    const auto range = context->client_metadata().equal_range("authorization");
    for (auto it = range.first; it != range.second; ++it) {
      seen.authorization.emplace_back(it->second.data(), it->second.size());
    }
    std::lock_guard<std::mutex> lock(mutex_);
    last_ = seen;
    response->set_id(request->id());
    return grpc::Status::OK;
  }

  std::optional<Seen> take() {
    std::lock_guard<std::mutex> lock(mutex_);
    auto seen = std::move(last_);
    last_.reset();
    return seen;
  }

 private:
  std::mutex mutex_;
  std::optional<Seen> last_;
};

struct Listener {
  RecordingService service;
  std::unique_ptr<server::GrpcServer> server;

  std::string target() const { return server->target(); }
  std::string localhost_target() const {
    return "localhost:" + std::to_string(server->bound_port());
  }
};

/// A loopback listener with `tls` (asserting that it starts).
std::unique_ptr<Listener> listen(const ServerTls& tls) {
  auto credentials = server_credentials(tls);
  EXPECT_TRUE(credentials.ok()) << credentials.status();
  if (!credentials.ok()) return nullptr;
  auto listener = std::make_unique<Listener>();
  server::GrpcOptions options;
  options.address = "127.0.0.1:0";
  options.credentials = *credentials;
  auto server = server::GrpcServer::Create(options, {&listener->service}, {"tandem.v1.Tandem"});
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  listener->server = *std::move(server);
  return listener;
}

std::shared_ptr<grpc::Channel> channel_to(const std::string& target,
                                          const ClientSecurity& security) {
  auto channel = make_channel(target, security);
  EXPECT_TRUE(channel.ok()) << channel.status();
  return channel.ok() ? *channel : nullptr;
}

std::chrono::system_clock::time_point in_seconds(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

/// The health service's answer for the whole server over `channel`.
grpc::Status check_health(const std::shared_ptr<grpc::Channel>& channel,
                          grpc::health::v1::HealthCheckResponse* response) {
  if (!channel) return grpc::Status(grpc::StatusCode::INTERNAL, "no channel");
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(in_seconds(5));
  return stub->Check(&context, grpc::health::v1::HealthCheckRequest(), response);
}

/// SERVING, or the call's error.
std::string health(const std::string& target, const ClientSecurity& security) {
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = check_health(channel_to(target, security), &response);
  if (!status.ok())
    return "error " + std::to_string(status.error_code()) + ": " + status.error_message();
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

/// One GetJob call; what the service saw of it, or nullopt when it failed.
std::optional<RecordingService::Seen> get_job(Listener& listener, const std::string& target,
                                              const ClientSecurity& security,
                                              grpc::Status* status_out = nullptr) {
  auto channel = channel_to(target, security);
  if (!channel) return std::nullopt;
  auto stub = tandem::v1::Tandem::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(in_seconds(5));
  tandem::v1::GetJobRequest request;
  request.set_id("job-1");
  tandem::v1::Job job;
  const grpc::Status status = stub->GetJob(&context, request, &job);
  if (status_out != nullptr) *status_out = status;
  if (!status.ok()) return std::nullopt;
  EXPECT_EQ(job.id(), "job-1");
  return listener.service.take();
}

ClientSecurity trusting(const std::string& ca) {
  ClientSecurity security;
  security.tls_ca_file = ca;
  return security;
}

ClientSecurity with_certificate(const std::string& ca, const std::string& cert,
                                const std::string& key) {
  ClientSecurity security = trusting(ca);
  security.tls_cert_file = cert;
  security.tls_key_file = key;
  return security;
}

// --- is_loopback_address -----------------------------------------------------------

TEST(IsLoopbackAddress, Table) {
  struct Case {
    const char* address;
    bool loopback;
  };
  const Case cases[] = {
      {"127.0.0.1:1", true},
      {"127.0.0.1:50051", true},
      {"127.1.2.3:80", true},
      {"localhost:5", true},
      {"[::1]:9", true},
      {"unix:/x", true},
      {"unix:///tmp/tandem.sock", true},
      {"unix-abstract:tandem", true},
      {"LocalHost:5", true},
      {"[::ffff:127.0.0.1]:1", true},
      {"::1", true},
      {"127.0.0.1", true},
      {"[::1", false},
      {"0.0.0.0:1", false},
      {"10.0.0.1:1", false},
      {"[::]:50051", false},
      {"myhost:80", false},
      {"192.168.1.127:80", false},
      {"128.0.0.1:1", false},
      // A host name that merely starts like a loopback address is not one.
      {"127.example.com:80", false},
      {"127.0.0.1.nip.io:80", false},
      {"localhost.example.com:5", false},
      {"mylocalhost:5", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(is_loopback_address(c.address), c.loopback) << c.address;
  }
}

// --- read_pem_file / server_credentials errors --------------------------------------

TEST_F(Tls, ReadPemFileReturnsTheText) {
  auto pem = read_pem_file(certs().ca, "--tls-ca");
  ASSERT_TRUE(pem.ok()) << pem.status();
  EXPECT_THAT(*pem, HasSubstr("-----BEGIN CERTIFICATE-----"));
  EXPECT_THAT(*pem, HasSubstr("-----END CERTIFICATE-----"));
}

TEST_F(Tls, ReadPemFileErrorsNameTheFlagAndPath) {
  const std::string missing = certs().missing("nope.pem");
  auto absent = read_pem_file(missing, "--some-flag");
  ASSERT_FALSE(absent.ok());
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(message_of(absent.status()), HasSubstr("--some-flag"));
  EXPECT_THAT(message_of(absent.status()), HasSubstr(missing));

  const std::string text = certs().file("not-pem.txt", "just some text\n");
  auto not_pem = read_pem_file(text, "--some-flag");
  ASSERT_FALSE(not_pem.ok());
  EXPECT_EQ(not_pem.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(message_of(not_pem.status()), HasSubstr("--some-flag"));
  EXPECT_THAT(message_of(not_pem.status()), HasSubstr(text));
  EXPECT_THAT(message_of(not_pem.status()), HasSubstr("no PEM"));
}

TEST(ServerCredentials, NothingGivenIsPlaintext) {
  auto listener = listen(ServerTls{});
  ASSERT_TRUE(listener);
  EXPECT_EQ(health(listener->target(), ClientSecurity{}), "SERVING");
}

TEST_F(Tls, HalfPairsAreInvalidNamingTheMissingFlag) {
  ServerTls cert_only;
  cert_only.cert_file = certs().server_cert;
  auto a = server_credentials(cert_only);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(message_of(a.status()), HasSubstr("--tls-key"));

  ServerTls key_only;
  key_only.key_file = certs().server_key;
  auto b = server_credentials(key_only);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(message_of(b.status()), HasSubstr("--tls-cert"));

  ServerTls ca_only;
  ca_only.client_ca_file = certs().ca;
  auto c = server_credentials(ca_only);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(message_of(c.status()), HasSubstr("--client-ca"));
  EXPECT_THAT(message_of(c.status()), HasSubstr("--tls-cert"));
}

TEST_F(Tls, UnreadableFilesAreInvalidNamingFlagAndPath) {
  const std::string missing = certs().missing("missing.pem");
  struct Case {
    const char* flag;
    ServerTls tls;
  };
  ServerTls good;
  good.cert_file = certs().server_cert;
  good.key_file = certs().server_key;
  good.client_ca_file = certs().ca;
  ServerTls no_cert = good, no_key = good, no_ca = good;
  no_cert.cert_file = missing;
  no_key.key_file = missing;
  no_ca.client_ca_file = missing;
  for (const Case& c :
       {Case{"--tls-cert", no_cert}, Case{"--tls-key", no_key}, Case{"--client-ca", no_ca}}) {
    auto credentials = server_credentials(c.tls);
    ASSERT_FALSE(credentials.ok()) << c.flag;
    EXPECT_EQ(credentials.status().code(), absl::StatusCode::kInvalidArgument) << c.flag;
    EXPECT_THAT(message_of(credentials.status()), HasSubstr(c.flag));
    EXPECT_THAT(message_of(credentials.status()), HasSubstr(missing));
  }
  EXPECT_TRUE(server_credentials(good).ok());
}

TEST_F(Tls, FilesWithoutPemAreInvalidNamingFlagAndPath) {
  const std::string text = certs().file("plain.txt", "no pem in here\n");
  ServerTls good;
  good.cert_file = certs().server_cert;
  good.key_file = certs().server_key;
  good.client_ca_file = certs().ca;
  ServerTls bad_cert = good, bad_key = good, bad_ca = good;
  bad_cert.cert_file = text;
  bad_key.key_file = text;
  bad_ca.client_ca_file = text;
  for (const auto& [flag, tls] : {std::pair<const char*, ServerTls>{"--tls-cert", bad_cert},
                                  {"--tls-key", bad_key},
                                  {"--client-ca", bad_ca}}) {
    auto credentials = server_credentials(tls);
    ASSERT_FALSE(credentials.ok()) << flag;
    EXPECT_EQ(credentials.status().code(), absl::StatusCode::kInvalidArgument) << flag;
    EXPECT_THAT(message_of(credentials.status()), HasSubstr(flag));
    EXPECT_THAT(message_of(credentials.status()), HasSubstr(text));
  }
}

// --- Server TLS over real sockets ---------------------------------------------------

TEST_F(Tls, ClientTrustingTheCaGetsServing) {
  ServerTls tls;
  tls.cert_file = certs().server_cert;
  tls.key_file = certs().server_key;
  auto listener = listen(tls);
  ASSERT_TRUE(listener);
  EXPECT_EQ(health(listener->target(), trusting(certs().ca)), "SERVING");            // IP SAN
  EXPECT_EQ(health(listener->localhost_target(), trusting(certs().ca)), "SERVING");  // DNS SAN
}

TEST_F(Tls, PlaintextClientIsRefused) {
  ServerTls tls;
  tls.cert_file = certs().server_cert;
  tls.key_file = certs().server_key;
  auto listener = listen(tls);
  ASSERT_TRUE(listener);
  EXPECT_THAT(health(listener->target(), ClientSecurity{}), HasSubstr("error"));
  EXPECT_EQ(health(listener->target(), trusting(certs().ca)), "SERVING");
}

TEST_F(Tls, ClientTrustingAnotherCaIsRefused) {
  ServerTls tls;
  tls.cert_file = certs().server_cert;
  tls.key_file = certs().server_key;
  auto listener = listen(tls);
  ASSERT_TRUE(listener);
  EXPECT_THAT(health(listener->target(), trusting(certs().other_ca)), HasSubstr("error"));
}

TEST_F(Tls, RequiredClientCertificates) {
  ServerTls tls;
  tls.cert_file = certs().server_cert;
  tls.key_file = certs().server_key;
  tls.client_ca_file = certs().ca;
  tls.client_certificates = ClientCertificates::kRequire;
  auto listener = listen(tls);
  ASSERT_TRUE(listener);
  EXPECT_THAT(health(listener->target(), trusting(certs().ca)), HasSubstr("error"))
      << "a client without a certificate";
  EXPECT_THAT(health(listener->target(), with_certificate(certs().ca, certs().other_client_cert,
                                                          certs().other_client_key)),
              HasSubstr("error"))
      << "a certificate another CA signed";
  EXPECT_EQ(health(listener->target(),
                   with_certificate(certs().ca, certs().client_cert, certs().client_key)),
            "SERVING");
  // The handler sees the verified certificate.
  auto seen = get_job(*listener, listener->target(),
                      with_certificate(certs().ca, certs().client_cert, certs().client_key));
  ASSERT_TRUE(seen.has_value());
  EXPECT_TRUE(seen->verified);
  EXPECT_EQ(seen->common_name, "worker-1");
}

TEST_F(Tls, OptionalClientCertificatesAreVerifiedWhenPresented) {
  ServerTls tls;
  tls.cert_file = certs().server_cert;
  tls.key_file = certs().server_key;
  tls.client_ca_file = certs().ca;
  tls.client_certificates = ClientCertificates::kVerifyIfPresented;
  auto listener = listen(tls);
  ASSERT_TRUE(listener);

  auto without = get_job(*listener, listener->target(), trusting(certs().ca));
  ASSERT_TRUE(without.has_value()) << "a call without a certificate still connects";
  EXPECT_FALSE(without->verified);
  EXPECT_EQ(without->common_name, "");

  auto with = get_job(*listener, listener->target(),
                      with_certificate(certs().ca, certs().client_cert, certs().client_key));
  ASSERT_TRUE(with.has_value());
  EXPECT_TRUE(with->verified);
  EXPECT_EQ(with->common_name, "worker-1");

  grpc::Status status;
  auto other = get_job(
      *listener, listener->target(),
      with_certificate(certs().ca, certs().other_client_cert, certs().other_client_key), &status);
  EXPECT_FALSE(other.has_value()) << "a certificate another CA signed is refused";
  EXPECT_FALSE(status.ok());
}

TEST_F(Tls, TlsWithoutClientCaNeverVerifiesAPeer) {
  ServerTls tls;
  tls.cert_file = certs().server_cert;
  tls.key_file = certs().server_key;
  auto listener = listen(tls);
  ASSERT_TRUE(listener);
  auto seen = get_job(*listener, listener->target(),
                      with_certificate(certs().ca, certs().client_cert, certs().client_key));
  ASSERT_TRUE(seen.has_value());
  EXPECT_FALSE(seen->verified);
  EXPECT_EQ(seen->common_name, "");
}

TEST(PeerCertificate, PlaintextPeerIsNeverVerified) {
  auto listener = listen(ServerTls{});
  ASSERT_TRUE(listener);
  auto seen = get_job(*listener, listener->target(), ClientSecurity{});
  ASSERT_TRUE(seen.has_value());
  EXPECT_FALSE(seen->verified);
  EXPECT_EQ(seen->common_name, "");
}

// --- make_channel ------------------------------------------------------------------

TEST(MakeChannel, SendsTheBearerTokenInPlaintext) {
  auto listener = listen(ServerTls{});
  ASSERT_TRUE(listener);
  ClientSecurity security;
  security.token = "plain-token-0123456789";
  auto seen = get_job(*listener, listener->target(), security);
  ASSERT_TRUE(seen.has_value());
  EXPECT_THAT(seen->authorization, ::testing::ElementsAre("Bearer plain-token-0123456789"));

  auto anonymous = get_job(*listener, listener->target(), ClientSecurity{});
  ASSERT_TRUE(anonymous.has_value());
  EXPECT_THAT(anonymous->authorization, ::testing::IsEmpty());
}

TEST_F(Tls, SendsTheBearerTokenOverTls) {
  ServerTls tls;
  tls.cert_file = certs().server_cert;
  tls.key_file = certs().server_key;
  tls.client_ca_file = certs().ca;
  auto listener = listen(tls);
  ASSERT_TRUE(listener);
  ClientSecurity security = trusting(certs().ca);
  security.token = "tls-token-0123456789";
  auto seen = get_job(*listener, listener->target(), security);
  ASSERT_TRUE(seen.has_value());
  EXPECT_THAT(seen->authorization, ::testing::ElementsAre("Bearer tls-token-0123456789"));

  security = with_certificate(certs().ca, certs().client_cert, certs().client_key);
  security.token = "mtls-token-0123456789";
  seen = get_job(*listener, listener->target(), security);
  ASSERT_TRUE(seen.has_value());
  EXPECT_TRUE(seen->verified);
  EXPECT_THAT(seen->authorization, ::testing::ElementsAre("Bearer mtls-token-0123456789"));
}

void expect_channel_error(const ClientSecurity& security, const std::string& flag,
                          const std::string& path) {
  auto channel = make_channel("127.0.0.1:1", security);
  ASSERT_FALSE(channel.ok()) << "no error for " << flag;
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument) << flag;
  EXPECT_THAT(message_of(channel.status()), HasSubstr(flag));
  if (!path.empty()) {
    EXPECT_THAT(message_of(channel.status()), HasSubstr(path));
  }
}

TEST_F(Tls, MakeChannelErrorsNameTheFlag) {
  const std::string missing = certs().missing("absent.pem");
  const std::string text = certs().file("text.txt", "not a certificate\n");

  expect_channel_error(trusting(missing), "--tls-ca", missing);
  expect_channel_error(trusting(text), "--tls-ca", text);
  expect_channel_error(with_certificate(certs().ca, missing, certs().client_key), "--tls-cert",
                       missing);
  expect_channel_error(with_certificate(certs().ca, certs().client_cert, missing), "--tls-key",
                       missing);
  expect_channel_error(with_certificate(certs().ca, text, certs().client_key), "--tls-cert", text);

  // A certificate without its key and a key without its certificate, with and
  // without --tls-ca.
  expect_channel_error(with_certificate(certs().ca, certs().client_cert, ""), "--tls-key", "");
  expect_channel_error(with_certificate("", certs().client_cert, ""), "--tls-key", "");
  expect_channel_error(with_certificate(certs().ca, "", certs().client_key), "--tls-cert", "");
  expect_channel_error(with_certificate("", "", certs().client_key), "--tls-cert", "");

  // The good combinations.
  EXPECT_TRUE(make_channel("127.0.0.1:1", ClientSecurity{}).ok());
  EXPECT_TRUE(make_channel("127.0.0.1:1", trusting(certs().ca)).ok());
  EXPECT_TRUE(make_channel("127.0.0.1:1",
                           with_certificate(certs().ca, certs().client_cert, certs().client_key))
                  .ok());
}

/// Sets environment variables for one test and restores them after.
class ScopedEnvironment {
 public:
  void set(const char* name, const std::string& value) {
    const char* old = std::getenv(name);
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    ::setenv(name, value.c_str(), 1);
  }
  void unset(const char* name) {
    const char* old = std::getenv(name);
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    ::unsetenv(name);
  }
  ~ScopedEnvironment() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second) {
        ::setenv(it->first.c_str(), it->second->c_str(), 1);
      } else {
        ::unsetenv(it->first.c_str());
      }
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(ClientSecurity, EnvironmentFillsOnlyEmptyFields) {
  ScopedEnvironment environment;
  environment.set("TANDEM_TOKEN", "env-token");
  environment.set("TANDEM_TLS_CA", "/env/ca.pem");
  environment.set("TANDEM_TLS_CERT", "/env/cert.pem");
  environment.unset("TANDEM_TLS_KEY");

  const ClientSecurity from_env = ClientSecurity::from_environment();
  EXPECT_EQ(from_env.token, "env-token");
  EXPECT_EQ(from_env.tls_ca_file, "/env/ca.pem");
  EXPECT_EQ(from_env.tls_cert_file, "/env/cert.pem");
  EXPECT_EQ(from_env.tls_key_file, "");
  EXPECT_TRUE(from_env.tls());

  ClientSecurity given;
  given.token = "flag-token";
  given.tls_key_file = "/flag/key.pem";
  given.with_environment();
  EXPECT_EQ(given.token, "flag-token");
  EXPECT_EQ(given.tls_ca_file, "/env/ca.pem");
  EXPECT_EQ(given.tls_cert_file, "/env/cert.pem");
  EXPECT_EQ(given.tls_key_file, "/flag/key.pem");
}

TEST(ClientSecurity, TlsWhenAnyFileIsGiven) {
  EXPECT_FALSE(ClientSecurity{}.tls());
  ClientSecurity token_only;
  token_only.token = "x";
  EXPECT_FALSE(token_only.tls());
  EXPECT_TRUE(trusting("/ca.pem").tls());
  EXPECT_TRUE(with_certificate("", "/cert.pem", "/key.pem").tls());
}

}  // namespace
}  // namespace tandem::rpc
