// Bearer tokens with roles for the job service (docs/security.md).
//
// `tandem server --tokens FILE` reads one `TOKEN ROLE [NAME]` per line
// (`#` comments, blank lines ignored). Clients send
// `authorization: Bearer TOKEN`. Roles:
//   read    GetJob, ListJobs, WatchJob, Rank
//   submit  read + SubmitJob; CancelJob and DeleteJob of its own jobs
//   admin   everything (any job's CancelJob and DeleteJob)
//   worker  WorkerControl.Connect only
// The health service stays open. Without --tokens every call is the
// anonymous admin (the loopback default).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <absl/status/statusor.h>

namespace grpc {
class ServerContext;
}  // namespace grpc

namespace tandem::rpc {

enum class Role { kRead, kSubmit, kAdmin, kWorker };

/// "read", "submit", "admin", "worker".
const char* to_string(Role role);
/// Inverse of to_string; nullopt for another word.
std::optional<Role> parse_role(std::string_view word);

/// What one RPC needs.
enum class Permission {
  kRead,    // job state, events, rankings
  kSubmit,  // new jobs; cancelling or deleting one's own
  kAdmin,   // cancelling or deleting anyone's job
  kWorker,  // the workers' control stream
};

/// Whether `role` holds `permission` (admin holds submit and read, submit
/// holds read; worker holds only worker).
bool grants(Role role, Permission permission);

/// Who made a call.
struct Principal {
  /// The token's NAME (default "ROLE@LINE", e.g. "submit@3"), or
  /// "anonymous" when the server has no tokens.
  std::string name = "anonymous";
  Role role = Role::kAdmin;
  /// False for the anonymous principal of a server without tokens.
  bool authenticated = false;
};

class TokenTable {
 public:
  /// Parses the file's text; INVALID_ARGUMENT naming `source`:LINE for a
  /// line that is not `TOKEN ROLE [NAME]`, an unknown role, a token shorter
  /// than 16 characters, or a token or name given twice.
  static absl::StatusOr<TokenTable> Parse(const std::string& text, const std::string& source);
  /// Reads and parses a file; also refuses an empty table.
  static absl::StatusOr<TokenTable> Load(const std::string& path);

  /// The token's principal, compared in constant time against every entry;
  /// nullopt when unknown.
  std::optional<Principal> find(std::string_view token) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string token;
    Principal principal;
  };
  std::vector<Entry> entries_;
};

/// Checks calls against a token table (or lets everyone in without one).
class Authorizer {
 public:
  /// No tokens: every call is the anonymous admin.
  Authorizer() = default;
  explicit Authorizer(TokenTable tokens) : tokens_(std::move(tokens)) {}

  bool enabled() const { return tokens_.has_value(); }

  /// The caller, from the `authorization: Bearer TOKEN` metadata.
  /// UNAUTHENTICATED when the header is missing, malformed or names an
  /// unknown token; PERMISSION_DENIED (naming the role and what it lacks)
  /// when the token's role does not grant `needed`.
  absl::StatusOr<Principal> authorize(const std::multimap<std::string, std::string>& metadata,
                                      Permission needed) const;
  /// As above, reading the call's metadata.
  absl::StatusOr<Principal> authorize(const grpc::ServerContext& context, Permission needed) const;

 private:
  std::optional<TokenTable> tokens_;
};

}  // namespace tandem::rpc
