#include "tandem/server/spec_limits.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

namespace tandem::server {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using Measure = SpecLimit::Measure;

/// The message holding the last field of `path` ("target.images") and it.
std::pair<Message*, const FieldDescriptor*> mutable_field(Message& root, const std::string& path) {
  Message* message = &root;
  std::string rest = path;
  for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
    const FieldDescriptor* field = message->GetDescriptor()->FindFieldByName(rest.substr(0, dot));
    message = message->GetReflection()->MutableMessage(message, field);
  }
  return {message, message->GetDescriptor()->FindFieldByName(rest)};
}

/// `spec` with `limit`'s field at `value` (a value, entries or bytes).
void set_to(tandem::v1::JobSpec& spec, const SpecLimit& limit, int64_t value) {
  if (std::string(limit.field) == "identities * instances") {
    spec.set_identities(value / 8);
    spec.set_instances(8);
    return;
  }
  auto [message, field] = mutable_field(spec, limit.field);
  ASSERT_NE(field, nullptr) << limit.field;
  const auto* reflection = message->GetReflection();
  switch (limit.measure) {
    case Measure::kBytes:
      reflection->SetString(message, field, std::string(static_cast<size_t>(value), 'a'));
      break;
    case Measure::kEntries:
      reflection->ClearField(message, field);
      for (int64_t i = 0; i < value; ++i) reflection->AddInt64(message, field, 1);
      break;
    case Measure::kValue:
      if (field->is_repeated()) {
        reflection->ClearField(message, field);
        reflection->AddInt64(message, field, value);
      } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
        reflection->SetInt32(message, field, static_cast<int32_t>(value));
      } else {
        reflection->SetInt64(message, field, value);
      }
      break;
  }
}

/// The path of every integer and string field of `descriptor`, recursing
/// into message fields ("target.images").
void size_fields(const Descriptor* descriptor, const std::string& prefix,
                 std::set<std::string>& out) {
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    const std::string path = prefix + field->name();
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_MESSAGE:
        size_fields(field->message_type(), path + ".", out);
        break;
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64:
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64:
      case FieldDescriptor::CPPTYPE_STRING: out.insert(path); break;
      default: break;
    }
  }
}

TEST(SpecLimits, TheTableCoversEveryIntegerAndStringField) {
  std::set<std::string> fields;
  size_fields(tandem::v1::JobSpec::descriptor(), "", fields);
  fields.erase("seed");  // any seed is fine
  std::set<std::string> covered;
  for (const SpecLimit& limit : spec_limits()) {
    EXPECT_GT(limit.max, 0) << limit.field;
    EXPECT_GT(std::string(limit.reason).size(), 0U) << limit.field;
    covered.insert(limit.field);
  }
  for (const std::string& field : fields) {
    EXPECT_EQ(covered.count(field), 1U) << "spec." << field << " has no limit in spec_limits()";
  }
  EXPECT_EQ(covered.count("identities * instances"), 1U);
  // The values the issue names.
  const auto max_of = [](const std::string& field) {
    for (const SpecLimit& limit : spec_limits()) {
      if (field == limit.field && limit.measure != Measure::kEntries) return limit.max;
    }
    return int64_t{-1};
  };
  EXPECT_EQ(max_of("height"), 2048);
  EXPECT_EQ(max_of("width"), 2048);
  EXPECT_EQ(max_of("identities"), 4096);
  EXPECT_EQ(max_of("instances"), 256);
  EXPECT_EQ(max_of("identities * instances"), 16384);
  EXPECT_EQ(max_of("epochs"), 10000);
  EXPECT_EQ(max_of("iters"), 1000000);
  EXPECT_EQ(max_of("world_size"), 1024);
  EXPECT_EQ(max_of("output_dir"), 4096);
  EXPECT_EQ(max_of("kind"), 256);
  EXPECT_EQ(max_of("target.images"), 100000000);
}

TEST(SpecLimits, UnsetFieldsAndEveryFieldAtItsLimitAreAccepted) {
  EXPECT_TRUE(check_spec_limits(tandem::v1::JobSpec()).ok());
  for (const SpecLimit& limit : spec_limits()) {
    tandem::v1::JobSpec spec;
    set_to(spec, limit, limit.max);
    EXPECT_TRUE(check_spec_limits(spec).ok()) << limit.field << ": " << check_spec_limits(spec);
  }
  // A realistic MMT spec.
  tandem::v1::JobSpec spec;
  spec.set_kind("mmt");
  spec.set_output_dir("/jobs/mmt-duke-to-market");
  spec.mutable_target()->set_kind("market1501");
  spec.mutable_target()->set_root("/data/market1501");
  spec.set_height(256);
  spec.set_width(128);
  spec.set_identities(16);
  spec.set_instances(4);
  spec.set_epochs(40);
  spec.set_iters(400);
  spec.add_milestones(20);
  spec.add_milestones(30);
  spec.set_k1(30);
  spec.set_k2(6);
  spec.set_world_size(4);
  EXPECT_TRUE(check_spec_limits(spec).ok()) << check_spec_limits(spec);
  // Lower bounds are the spec validation's.
  spec.set_height(-5);
  spec.set_identities(-3);
  spec.set_instances(-1000000);
  EXPECT_TRUE(check_spec_limits(spec).ok()) << check_spec_limits(spec);
}

TEST(SpecLimits, EveryFieldAboveItsLimitIsRefusedNamingTheFieldAndTheLimit) {
  for (const SpecLimit& limit : spec_limits()) {
    tandem::v1::JobSpec spec;
    // The batch: 8 instances of one identity more than the limit allows.
    const bool batch = std::string(limit.field) == "identities * instances";
    set_to(spec, limit, batch ? limit.max + 8 : limit.max + 1);
    const absl::Status status = check_spec_limits(spec);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << limit.field;
    const std::string message(status.message());
    EXPECT_EQ(message.rfind(std::string("spec.") + limit.field, 0), 0U) << message;
    EXPECT_NE(message.find("above the server's limit of " + std::to_string(limit.max)),
              std::string::npos)
        << message;
  }
}

TEST(SpecLimits, MessagesNameNestedFieldsEntriesAndBytes) {
  tandem::v1::JobSpec spec;
  spec.set_height(100000);
  EXPECT_EQ(check_spec_limits(spec).message(),
            "spec.height: 100000 is above the server's limit of 2048");
  spec = {};
  spec.mutable_target()->set_images(200000000);
  EXPECT_EQ(check_spec_limits(spec).message(),
            "spec.target.images: 200000000 is above the server's limit of 100000000");
  spec = {};
  spec.add_milestones(40);
  spec.add_milestones(20000);
  EXPECT_EQ(check_spec_limits(spec).message(),
            "spec.milestones[1]: 20000 is above the server's limit of 10000");
  spec = {};
  spec.set_output_dir(std::string(5000, 'x'));
  EXPECT_EQ(check_spec_limits(spec).message(),
            "spec.output_dir: 5000 bytes, above the server's limit of 4096");
  spec = {};
  spec.set_identities(4096);
  spec.set_instances(256);
  EXPECT_EQ(check_spec_limits(spec).message(),
            "spec.identities * instances: 4096 * 256 = 1048576 images per batch, above the "
            "server's limit of 16384");
  spec = {};
  spec.set_world_size(1 << 30);
  EXPECT_EQ(check_spec_limits(spec).message(),
            "spec.world_size: 1073741824 is above the server's limit of 1024");
}

TEST(SpecLimits, NulBytesInStringsAreRefused) {
  tandem::v1::JobSpec spec;
  spec.set_output_dir(std::string("/jobs/a\0/../../etc", 18));
  absl::Status status = check_spec_limits(spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "spec.output_dir: holds a NUL byte (at byte 7)");
  spec = {};
  spec.mutable_source()->set_root(std::string("/data\0x", 7));
  status = check_spec_limits(spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message().rfind("spec.source.root: holds a NUL byte", 0), 0U) << status;
  spec = {};
  spec.set_device(std::string("cuda\0", 5));
  EXPECT_EQ(check_spec_limits(spec).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tandem::server
