#include "tandem/rpc/auth.h"

#include <grpcpp/server_context.h>

#include <absl/strings/match.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace tandem::rpc {
namespace {

constexpr size_t kMinTokenLength = 16;
constexpr char kBearer[] = "Bearer ";

/// Equal strings, in time that depends only on their lengths.
bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char differ = a.size() == b.size() ? 0 : 1;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) differ |= static_cast<unsigned char>(a[i] ^ b[i]);
  return differ == 0;
}

/// What a role may do, for PERMISSION_DENIED messages.
const char* permission_text(Permission permission) {
  switch (permission) {
    case Permission::kRead: return "read jobs (role read, submit or admin)";
    case Permission::kSubmit: return "submit or change jobs (role submit or admin)";
    case Permission::kAdmin: return "change other principals' jobs (role admin)";
    case Permission::kWorker: return "connect as a worker (role worker)";
  }
  return "do this";
}

}  // namespace

const char* to_string(Role role) {
  switch (role) {
    case Role::kRead: return "read";
    case Role::kSubmit: return "submit";
    case Role::kAdmin: return "admin";
    case Role::kWorker: return "worker";
  }
  return "?";
}

std::optional<Role> parse_role(std::string_view word) {
  for (Role role : {Role::kRead, Role::kSubmit, Role::kAdmin, Role::kWorker}) {
    if (word == to_string(role)) return role;
  }
  return std::nullopt;
}

bool grants(Role role, Permission permission) {
  switch (permission) {
    case Permission::kRead:
      return role == Role::kRead || role == Role::kSubmit || role == Role::kAdmin;
    case Permission::kSubmit: return role == Role::kSubmit || role == Role::kAdmin;
    case Permission::kAdmin: return role == Role::kAdmin;
    case Permission::kWorker: return role == Role::kWorker;
  }
  return false;
}

absl::StatusOr<TokenTable> TokenTable::Parse(const std::string& text, const std::string& source) {
  TokenTable table;
  std::set<std::string> names;
  std::istringstream lines(text);
  int number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++number;
    const std::string where = source + ":" + std::to_string(number) + ": ";
    if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::string token, role_word, name, extra;
    if (!(words >> token)) continue;  // blank or comment
    if (!(words >> role_word)) {
      return absl::InvalidArgumentError(where + "expected `TOKEN ROLE [NAME]`, got one word");
    }
    words >> name;
    if (words >> extra) {
      return absl::InvalidArgumentError(where + "expected `TOKEN ROLE [NAME]`, got more words");
    }
    const auto role = parse_role(role_word);
    if (!role) {
      return absl::InvalidArgumentError(where + "unknown role '" + role_word +
                                        "' (admin, submit, read or worker)");
    }
    if (token.size() < kMinTokenLength) {
      return absl::InvalidArgumentError(
          where + "token of " + std::to_string(token.size()) + " characters; use at least " +
          std::to_string(kMinTokenLength) + " (e.g. `openssl rand -hex 32`)");
    }
    for (const Entry& entry : table.entries_) {
      if (entry.token == token) {
        return absl::InvalidArgumentError(where + "the same token as '" + entry.principal.name +
                                          "'");
      }
    }
    if (name.empty()) name = role_word + "@" + std::to_string(number);
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(where + "name '" + name + "' is given twice");
    }
    table.entries_.push_back(Entry{token, Principal{name, *role, true}});
  }
  return table;
}

absl::StatusOr<TokenTable> TokenTable::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError("--tokens: cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  auto table = Parse(text.str(), path);
  if (table.ok() && table->size() == 0) {
    return absl::InvalidArgumentError("--tokens: " + path + " names no token");
  }
  return table;
}

std::optional<Principal> TokenTable::find(std::string_view token) const {
  std::optional<Principal> found;
  for (const Entry& entry : entries_) {  // no early exit: constant time
    if (constant_time_equal(entry.token, token)) found = entry.principal;
  }
  return found;
}

absl::StatusOr<Principal> Authorizer::authorize(
    const std::multimap<std::string, std::string>& metadata, Permission needed) const {
  if (!tokens_) return Principal{};
  const auto header = metadata.find("authorization");
  if (header == metadata.end()) {
    return absl::UnauthenticatedError(
        "this server needs a token: send `authorization: Bearer TOKEN` (tandem --token or "
        "TANDEM_TOKEN)");
  }
  const std::string& value = header->second;
  // The scheme is case-insensitive (RFC 7235); the token is not.
  if (!absl::StartsWithIgnoreCase(value, kBearer)) {
    return absl::UnauthenticatedError("authorization: expected `Bearer TOKEN`");
  }
  const auto principal = tokens_->find(std::string_view(value).substr(sizeof(kBearer) - 1));
  if (!principal) return absl::UnauthenticatedError("authorization: unknown token");
  if (!grants(principal->role, needed)) {
    return absl::PermissionDeniedError("token '" + principal->name + "' has role " +
                                       to_string(principal->role) + ", which may not " +
                                       permission_text(needed));
  }
  return *principal;
}

absl::StatusOr<Principal> Authorizer::authorize(const grpc::ServerContext& context,
                                                Permission needed) const {
  std::multimap<std::string, std::string> metadata;
  const auto range = context.client_metadata().equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it) {
    metadata.emplace("authorization", std::string(it->second.data(), it->second.size()));
  }
  return authorize(metadata, needed);
}

}  // namespace tandem::rpc
