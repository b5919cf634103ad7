#include "tandem/rpc/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

namespace tandem::rpc {
namespace {

using ::testing::HasSubstr;

// 16+ character tokens, distinct.
const std::string kAdminToken = "admin-token-0123456789";
const std::string kSubmitToken = "submit-token-0123456789";
const std::string kReadToken = "read-token-0123456789ab";
const std::string kWorkerToken = "worker-token-0123456789";

std::string message_of(const absl::Status& status) {
  return std::string(status.message());
}

TokenTable parse_ok(const std::string& text) {
  auto table = TokenTable::Parse(text, "tokens.txt");
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *std::move(table) : TokenTable();
}

absl::Status parse_error(const std::string& text) {
  auto table = TokenTable::Parse(text, "tokens.txt");
  EXPECT_FALSE(table.ok()) << "accepted:\n" << text;
  if (table.ok()) return absl::OkStatus();
  EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
  return table.status();
}

TEST(Role, ToStringAndParseRoundTrip) {
  for (Role role : {Role::kRead, Role::kSubmit, Role::kAdmin, Role::kWorker}) {
    const auto parsed = parse_role(to_string(role));
    ASSERT_TRUE(parsed.has_value()) << to_string(role);
    EXPECT_EQ(*parsed, role);
  }
  EXPECT_STREQ(to_string(Role::kRead), "read");
  EXPECT_STREQ(to_string(Role::kSubmit), "submit");
  EXPECT_STREQ(to_string(Role::kAdmin), "admin");
  EXPECT_STREQ(to_string(Role::kWorker), "worker");
  EXPECT_FALSE(parse_role("Admin").has_value());
  EXPECT_FALSE(parse_role("root").has_value());
  EXPECT_FALSE(parse_role("").has_value());
}

TEST(Grants, EveryRoleTimesEveryPermission) {
  struct Case {
    Role role;
    Permission permission;
    bool granted;
  };
  const Case cases[] = {
      {Role::kRead, Permission::kRead, true},     {Role::kRead, Permission::kSubmit, false},
      {Role::kRead, Permission::kAdmin, false},   {Role::kRead, Permission::kWorker, false},
      {Role::kSubmit, Permission::kRead, true},   {Role::kSubmit, Permission::kSubmit, true},
      {Role::kSubmit, Permission::kAdmin, false}, {Role::kSubmit, Permission::kWorker, false},
      {Role::kAdmin, Permission::kRead, true},    {Role::kAdmin, Permission::kSubmit, true},
      {Role::kAdmin, Permission::kAdmin, true},   {Role::kAdmin, Permission::kWorker, false},
      {Role::kWorker, Permission::kRead, false},  {Role::kWorker, Permission::kSubmit, false},
      {Role::kWorker, Permission::kAdmin, false}, {Role::kWorker, Permission::kWorker, true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(grants(c.role, c.permission), c.granted)
        << to_string(c.role) << " x permission " << static_cast<int>(c.permission);
  }
}

TEST(TokenTableParse, ReadsLinesSkippingCommentsAndBlankLines) {
  const TokenTable table = parse_ok(
      "# the deployment's tokens\n"
      "\n" +
      kAdminToken + " admin alice\n" +               // line 3
      "   \t  \n" +                                  // line 4: blank
      kSubmitToken + " submit   # a comment\n" +     // line 5
      "  " + kReadToken + "\tread\tdashboard  \n" +  // line 6
      kWorkerToken + " worker\r\n");                 // line 7, CRLF
  EXPECT_EQ(table.size(), 4u);

  const auto admin = table.find(kAdminToken);
  ASSERT_TRUE(admin.has_value());
  EXPECT_EQ(admin->name, "alice");
  EXPECT_EQ(admin->role, Role::kAdmin);
  EXPECT_TRUE(admin->authenticated);

  const auto submit = table.find(kSubmitToken);
  ASSERT_TRUE(submit.has_value());
  EXPECT_EQ(submit->name, "submit@5");  // default NAME: ROLE@LINE
  EXPECT_EQ(submit->role, Role::kSubmit);
  EXPECT_TRUE(submit->authenticated);

  const auto read = table.find(kReadToken);
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->name, "dashboard");
  EXPECT_EQ(read->role, Role::kRead);

  const auto worker = table.find(kWorkerToken);
  ASSERT_TRUE(worker.has_value());
  EXPECT_EQ(worker->name, "worker@7");
  EXPECT_EQ(worker->role, Role::kWorker);
}

TEST(TokenTableParse, EmptyTextIsAnEmptyTable) {
  EXPECT_EQ(parse_ok("").size(), 0u);
  EXPECT_EQ(parse_ok("# nothing\n\n   \n").size(), 0u);
}

TEST(TokenTableParse, OneWordNamesSourceAndLine) {
  const absl::Status error = parse_error("# header\n" + kAdminToken + "\n");
  EXPECT_THAT(message_of(error), HasSubstr("tokens.txt:2"));
  EXPECT_THAT(message_of(error), HasSubstr("TOKEN ROLE [NAME]"));
}

TEST(TokenTableParse, ExtraWordsNameSourceAndLine) {
  const absl::Status error =
      parse_error(kAdminToken + " admin alice\n" + kReadToken + " read bob extra\n");
  EXPECT_THAT(message_of(error), HasSubstr("tokens.txt:2"));
  EXPECT_THAT(message_of(error), HasSubstr("TOKEN ROLE [NAME]"));
}

TEST(TokenTableParse, UnknownRoleNamesSourceLineAndRole) {
  const absl::Status error = parse_error("\n\n" + kAdminToken + " superuser\n");
  EXPECT_THAT(message_of(error), HasSubstr("tokens.txt:3"));
  EXPECT_THAT(message_of(error), HasSubstr("unknown role 'superuser'"));
  // Role words are exact.
  EXPECT_THAT(message_of(parse_error(kAdminToken + " ADMIN\n")), HasSubstr("tokens.txt:1"));
}

TEST(TokenTableParse, ShortTokenNamesSourceAndLine) {
  const absl::Status error = parse_error("0123456789abcde read\n");  // 15 characters
  EXPECT_THAT(message_of(error), HasSubstr("tokens.txt:1"));
  EXPECT_THAT(message_of(error), HasSubstr("15 characters"));
  EXPECT_THAT(message_of(error), HasSubstr("at least 16"));
  // Exactly 16 is enough.
  EXPECT_EQ(parse_ok("0123456789abcdef read\n").size(), 1u);
}

TEST(TokenTableParse, DuplicateTokenNamesSourceAndLine) {
  const absl::Status error =
      parse_error(kAdminToken + " admin alice\n# x\n" + kAdminToken + " read bob\n");
  EXPECT_THAT(message_of(error), HasSubstr("tokens.txt:3"));
  EXPECT_THAT(message_of(error), HasSubstr("same token"));
  // The message names the earlier entry, never the token itself.
  EXPECT_THAT(message_of(error), HasSubstr("alice"));
  EXPECT_THAT(message_of(error), ::testing::Not(HasSubstr(kAdminToken)));
}

TEST(TokenTableParse, DuplicateNameNamesSourceAndLine) {
  const absl::Status error =
      parse_error(kAdminToken + " admin alice\n" + kReadToken + " read alice\n");
  EXPECT_THAT(message_of(error), HasSubstr("tokens.txt:2"));
  EXPECT_THAT(message_of(error), HasSubstr("'alice'"));
  // A given name may also clash with a default one.
  const absl::Status clash = parse_error(kAdminToken + " admin\n" + kReadToken + " read admin@1\n");
  EXPECT_THAT(message_of(clash), HasSubstr("tokens.txt:2"));
  EXPECT_THAT(message_of(clash), HasSubstr("'admin@1'"));
}

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "tandem-auth-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code error;
    std::filesystem::remove_all(path_, error);
  }
  std::string file(const std::string& name, const std::string& text) const {
    const std::string path = (path_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

TEST(TokenTableLoad, ReadsAFile) {
  TempDir dir;
  const std::string path =
      dir.file("tokens", kAdminToken + " admin alice\n" + kReadToken + " read\n");
  auto table = TokenTable::Load(path);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 2u);
  ASSERT_TRUE(table->find(kReadToken).has_value());
  EXPECT_EQ(table->find(kReadToken)->name, "read@2");
}

TEST(TokenTableLoad, MissingFileIsInvalidNamingFlagAndPath) {
  TempDir dir;
  const std::string path = dir.path("no-such-tokens");
  auto table = TokenTable::Load(path);
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(message_of(table.status()), HasSubstr("--tokens"));
  EXPECT_THAT(message_of(table.status()), HasSubstr(path));
}

TEST(TokenTableLoad, EmptyFileIsRefused) {
  TempDir dir;
  for (const std::string& text : {std::string(), std::string("# only a comment\n\n")}) {
    const std::string path = dir.file("empty", text);
    auto table = TokenTable::Load(path);
    ASSERT_FALSE(table.ok()) << "accepted: '" << text << "'";
    EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(message_of(table.status()), HasSubstr(path));
    EXPECT_THAT(message_of(table.status()), HasSubstr("no token"));
  }
}

TEST(TokenTableLoad, ParseErrorsNameThePath) {
  TempDir dir;
  const std::string path = dir.file("bad", kAdminToken + " admin\nshort read\n");
  auto table = TokenTable::Load(path);
  ASSERT_FALSE(table.ok());
  EXPECT_THAT(message_of(table.status()), HasSubstr(path + ":2"));
}

TEST(TokenTableFind, KnownUnknownAndPrefixes) {
  const TokenTable table = parse_ok(kAdminToken + " admin alice\n" + kReadToken + " read bob\n");
  ASSERT_TRUE(table.find(kAdminToken).has_value());
  EXPECT_EQ(table.find(kAdminToken)->name, "alice");
  ASSERT_TRUE(table.find(kReadToken).has_value());
  EXPECT_EQ(table.find(kReadToken)->name, "bob");

  EXPECT_FALSE(table.find("unknown-token-0123456789").has_value());
  EXPECT_FALSE(table.find("").has_value());
  // A prefix, an extension and a one-character change of a real token.
  EXPECT_FALSE(table.find(kAdminToken.substr(0, kAdminToken.size() - 1)).has_value());
  EXPECT_FALSE(table.find(kAdminToken.substr(0, 16)).has_value());
  EXPECT_FALSE(table.find(kAdminToken + "x").has_value());
  std::string changed = kAdminToken;
  changed.back() = changed.back() == 'x' ? 'y' : 'x';
  EXPECT_FALSE(table.find(changed).has_value());
}

// --- Authorizer ---------------------------------------------------------------

using Metadata = std::multimap<std::string, std::string>;

Metadata bearer(const std::string& token) {
  return {{"authorization", "Bearer " + token}};
}

Authorizer make_authorizer() {
  return Authorizer(parse_ok(kAdminToken + " admin alice\n" + kSubmitToken + " submit sam\n" +
                             kReadToken + " read rita\n" + kWorkerToken + " worker wendy\n"));
}

TEST(Authorizer, DisabledIsTheAnonymousAdmin) {
  const Authorizer authorizer;
  EXPECT_FALSE(authorizer.enabled());
  for (Permission permission :
       {Permission::kRead, Permission::kSubmit, Permission::kAdmin, Permission::kWorker}) {
    auto principal = authorizer.authorize(Metadata{}, permission);
    ASSERT_TRUE(principal.ok()) << principal.status();
    EXPECT_EQ(principal->name, "anonymous");
    EXPECT_EQ(principal->role, Role::kAdmin);
    EXPECT_FALSE(principal->authenticated);
  }
  // Even with a header it does not look at.
  auto principal = authorizer.authorize(bearer("whatever"), Permission::kSubmit);
  ASSERT_TRUE(principal.ok());
  EXPECT_FALSE(principal->authenticated);
}

TEST(Authorizer, EnabledWithATable) {
  EXPECT_TRUE(make_authorizer().enabled());
  // Even an empty table switches authentication on.
  const Authorizer empty{TokenTable()};
  EXPECT_TRUE(empty.enabled());
  EXPECT_EQ(empty.authorize(bearer(kAdminToken), Permission::kRead).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(Authorizer, MissingHeaderIsUnauthenticated) {
  const Authorizer authorizer = make_authorizer();
  auto principal = authorizer.authorize(Metadata{}, Permission::kRead);
  EXPECT_EQ(principal.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(message_of(principal.status()), HasSubstr("Bearer"));
  // Another header does not count.
  auto other = authorizer.authorize(Metadata{{"x-token", kAdminToken}}, Permission::kRead);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(Authorizer, MalformedHeaderIsUnauthenticated) {
  const Authorizer authorizer = make_authorizer();
  for (const std::string& value :
       {std::string("Basic x"), "Basic " + kAdminToken, kAdminToken, std::string("Bearer"),
        std::string("Bearer "), "Bearer  " + kAdminToken}) {
    auto principal = authorizer.authorize(Metadata{{"authorization", value}}, Permission::kRead);
    EXPECT_EQ(principal.status().code(), absl::StatusCode::kUnauthenticated) << value;
  }
}

TEST(Authorizer, UnknownTokenIsUnauthenticated) {
  const Authorizer authorizer = make_authorizer();
  auto principal = authorizer.authorize(bearer("unknown-token-0123456789"), Permission::kRead);
  EXPECT_EQ(principal.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(message_of(principal.status()), HasSubstr("unknown token"));
  // A prefix of a real token is unknown too.
  EXPECT_EQ(
      authorizer.authorize(bearer(kAdminToken.substr(0, 16)), Permission::kRead).status().code(),
      absl::StatusCode::kUnauthenticated);
}

TEST(Authorizer, ReadTokenMayNotSubmit) {
  const Authorizer authorizer = make_authorizer();
  auto principal = authorizer.authorize(bearer(kReadToken), Permission::kSubmit);
  EXPECT_EQ(principal.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(message_of(principal.status()), HasSubstr("role read"));
  EXPECT_THAT(message_of(principal.status()), HasSubstr("rita"));
  EXPECT_THAT(message_of(principal.status()), ::testing::Not(HasSubstr(kReadToken)));

  auto read = authorizer.authorize(bearer(kReadToken), Permission::kRead);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->name, "rita");
  EXPECT_EQ(read->role, Role::kRead);
  EXPECT_TRUE(read->authenticated);
}

TEST(Authorizer, WorkerTokenMayNotRead) {
  const Authorizer authorizer = make_authorizer();
  auto principal = authorizer.authorize(bearer(kWorkerToken), Permission::kRead);
  EXPECT_EQ(principal.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(message_of(principal.status()), HasSubstr("role worker"));

  auto worker = authorizer.authorize(bearer(kWorkerToken), Permission::kWorker);
  ASSERT_TRUE(worker.ok()) << worker.status();
  EXPECT_EQ(worker->name, "wendy");
  EXPECT_EQ(worker->role, Role::kWorker);
}

TEST(Authorizer, SubmitTokenMayNotAdminister) {
  const Authorizer authorizer = make_authorizer();
  EXPECT_TRUE(authorizer.authorize(bearer(kSubmitToken), Permission::kRead).ok());
  EXPECT_TRUE(authorizer.authorize(bearer(kSubmitToken), Permission::kSubmit).ok());
  auto admin = authorizer.authorize(bearer(kSubmitToken), Permission::kAdmin);
  EXPECT_EQ(admin.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(message_of(admin.status()), HasSubstr("role submit"));
}

TEST(Authorizer, AdminMayDoAllButWork) {
  const Authorizer authorizer = make_authorizer();
  for (Permission permission : {Permission::kRead, Permission::kSubmit, Permission::kAdmin}) {
    auto principal = authorizer.authorize(bearer(kAdminToken), permission);
    ASSERT_TRUE(principal.ok()) << principal.status();
    EXPECT_EQ(principal->name, "alice");
    EXPECT_EQ(principal->role, Role::kAdmin);
    EXPECT_TRUE(principal->authenticated);
  }
  auto worker = authorizer.authorize(bearer(kAdminToken), Permission::kWorker);
  EXPECT_EQ(worker.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(message_of(worker.status()), HasSubstr("role admin"));
}

}  // namespace
}  // namespace tandem::rpc
