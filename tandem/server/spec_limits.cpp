#include "tandem/server/spec_limits.h"

#include <absl/strings/str_cat.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <cstring>
#include <string>

namespace tandem::server {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using Measure = SpecLimit::Measure;

/// Bytes of a path field: Linux's PATH_MAX.
constexpr int64_t kPathBytes = 4096;
/// Bytes of a name field (kinds, backbones, devices).
constexpr int64_t kNameBytes = 256;
/// Images of a data set: ten times ImageNet-21k.
constexpr int64_t kImages = 100'000'000;
/// Epochs of a schedule.
constexpr int64_t kEpochs = 10'000;
/// Iterations per epoch or of a warm-up.
constexpr int64_t kIterations = 1'000'000;
/// Images in one batch.
constexpr int64_t kBatch = 16'384;
/// The special field of the batch bound.
constexpr const char* kBatchField = "identities * instances";

/// The field `name` of `message`, or nullptr when `message` has none.
const FieldDescriptor* find_field(const Message& message, const std::string& name) {
  return message.GetDescriptor()->FindFieldByName(name);
}

/// The message holding the last field of `path` ("target.images": the
/// target DatasetSpec) and that field; the field is nullptr when `path`
/// does not name a field (a bug in the table, caught by the tests).
std::pair<const Message*, const FieldDescriptor*> resolve(const Message& root,
                                                          const std::string& path) {
  const Message* message = &root;
  std::string rest = path;
  for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
    const FieldDescriptor* field = find_field(*message, rest.substr(0, dot));
    if (field == nullptr || field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE ||
        field->is_repeated()) {
      return {message, nullptr};
    }
    message = &message->GetReflection()->GetMessage(*message, field);
  }
  return {message, find_field(*message, rest)};
}

/// The integer value of a singular field, or of entry `index` of a repeated
/// one. Unsigned values above int64's range read as its largest value.
int64_t integer(const Message& message, const FieldDescriptor* field, int index) {
  const auto* reflection = message.GetReflection();
  const bool repeated = field->is_repeated();
  const auto clamp = [](uint64_t value) {
    return value > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(value);
  };
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return repeated ? reflection->GetRepeatedInt32(message, field, index)
                      : reflection->GetInt32(message, field);
    case FieldDescriptor::CPPTYPE_INT64:
      return repeated ? reflection->GetRepeatedInt64(message, field, index)
                      : reflection->GetInt64(message, field);
    case FieldDescriptor::CPPTYPE_UINT32:
      return repeated ? reflection->GetRepeatedUInt32(message, field, index)
                      : reflection->GetUInt32(message, field);
    case FieldDescriptor::CPPTYPE_UINT64:
      return clamp(repeated ? reflection->GetRepeatedUInt64(message, field, index)
                            : reflection->GetUInt64(message, field));
    default: return 0;
  }
}

absl::Status above(const std::string& field, const std::string& what, int64_t max) {
  return absl::InvalidArgumentError(
      absl::StrCat("spec.", field, ": ", what, " the server's limit of ", max));
}

/// Checks one table entry against `spec`.
absl::Status check(const tandem::v1::JobSpec& spec, const SpecLimit& limit) {
  if (std::strcmp(limit.field, kBatchField) == 0) {
    // Both are within their own bounds already (checked earlier) and
    // positive (the spec validation refuses others): no overflow.
    if (!spec.has_identities() || !spec.has_instances() || spec.identities() <= 0 ||
        spec.instances() <= 0) {
      return absl::OkStatus();
    }
    const int64_t batch = spec.identities() * spec.instances();
    if (batch > limit.max) {
      return above(limit.field,
                   absl::StrCat(spec.identities(), " * ", spec.instances(), " = ", batch,
                                " images per batch, above"),
                   limit.max);
    }
    return absl::OkStatus();
  }
  const auto [message, field] = resolve(spec, limit.field);
  if (field == nullptr) {
    return absl::InternalError(
        absl::StrCat("spec limits: '", limit.field, "' is not a field of tandem.v1.JobSpec"));
  }
  const auto* reflection = message->GetReflection();
  switch (limit.measure) {
    case Measure::kBytes: {
      const std::string value = reflection->GetString(*message, field);
      if (static_cast<int64_t>(value.size()) > limit.max) {
        return above(limit.field, absl::StrCat(value.size(), " bytes, above"), limit.max);
      }
      if (const size_t nul = value.find('\0'); nul != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("spec.", limit.field, ": holds a NUL byte (at byte ", nul, ")"));
      }
      return absl::OkStatus();
    }
    case Measure::kEntries: {
      const int entries = reflection->FieldSize(*message, field);
      if (entries > limit.max) {
        return above(limit.field, absl::StrCat(entries, " entries, above"), limit.max);
      }
      return absl::OkStatus();
    }
    case Measure::kValue: {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection->FieldSize(*message, field); ++i) {
          const int64_t value = integer(*message, field, i);
          if (value > limit.max) {
            return above(absl::StrCat(limit.field, "[", i, "]"), absl::StrCat(value, " is above"),
                         limit.max);
          }
        }
        return absl::OkStatus();
      }
      if (field->has_presence() && !reflection->HasField(*message, field)) {
        return absl::OkStatus();  // unset: the kind's default
      }
      const int64_t value = integer(*message, field, 0);
      if (value > limit.max) return above(limit.field, absl::StrCat(value, " is above"), limit.max);
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<SpecLimit>& spec_limits() {
  static const std::vector<SpecLimit> limits = {
      // Names and paths.
      {"kind", Measure::kBytes, kNameBytes, "a job kind's name"},
      {"output_dir", Measure::kBytes, kPathBytes, "a path: Linux's PATH_MAX"},
      {"source.kind", Measure::kBytes, kNameBytes, "a data set kind's name"},
      {"source.root", Measure::kBytes, kPathBytes, "a path: Linux's PATH_MAX"},
      {"source.list", Measure::kBytes, kPathBytes, "a path: Linux's PATH_MAX"},
      {"source.test_list", Measure::kBytes, kPathBytes, "a path: Linux's PATH_MAX"},
      {"source.shift", Measure::kBytes, kNameBytes, "a shift's name"},
      {"target.kind", Measure::kBytes, kNameBytes, "a data set kind's name"},
      {"target.root", Measure::kBytes, kPathBytes, "a path: Linux's PATH_MAX"},
      {"target.list", Measure::kBytes, kPathBytes, "a path: Linux's PATH_MAX"},
      {"target.test_list", Measure::kBytes, kPathBytes, "a path: Linux's PATH_MAX"},
      {"target.shift", Measure::kBytes, kNameBytes, "a shift's name"},
      {"backbone", Measure::kBytes, kNameBytes, "a backbone's name"},
      {"init", Measure::kBytes, kPathBytes, "a path: Linux's PATH_MAX"},
      {"init_1", Measure::kBytes, kPathBytes, "a path: Linux's PATH_MAX"},
      {"init_2", Measure::kBytes, kPathBytes, "a path: Linux's PATH_MAX"},
      {"weights", Measure::kBytes, kPathBytes, "a path: Linux's PATH_MAX"},
      {"clustering", Measure::kBytes, kNameBytes, "an algorithm's name"},
      {"device", Measure::kBytes, kNameBytes, "a device's name"},
      {"precision", Measure::kBytes, kNameBytes, "a precision's name"},
      // Data sets.
      {"source.images", Measure::kValue, kImages, "ten times ImageNet-21k"},
      {"source.test_images", Measure::kValue, kImages, "ten times ImageNet-21k"},
      {"target.images", Measure::kValue, kImages, "ten times ImageNet-21k"},
      {"target.test_images", Measure::kValue, kImages, "ten times ImageNet-21k"},
      // Network and input.
      {"backbone_width", Measure::kValue, 512, "small's first-stage channels; ResNet's are 64"},
      {"backbone_depth", Measure::kValue, 64, "small's conv layers per stage"},
      {"height", Measure::kValue, 2048, "input pixels: re-ID uses 256, classification 32"},
      {"width", Measure::kValue, 2048, "input pixels: re-ID uses 128, classification 32"},
      // Batches and schedule.
      {"identities", Measure::kValue, 4096, "identities per batch (P; MMT uses 16)"},
      {"instances", Measure::kValue, 256, "images per identity in a batch (K; MMT uses 4)"},
      {kBatchField, Measure::kValue, kBatch, "images per batch (P × K)"},
      {"epochs", Measure::kValue, kEpochs, "epochs of a schedule"},
      {"iters", Measure::kValue, kIterations, "iterations per epoch"},
      {"warmup_epochs", Measure::kValue, kEpochs, "as epochs"},
      {"milestones", Measure::kEntries, 64, "learning-rate steps"},
      {"milestones", Measure::kValue, kEpochs, "each is an epoch"},
      {"bn_group_size", Measure::kValue, kBatch, "images per BatchNorm group: at most a batch"},
      {"loader_threads", Measure::kValue, 256, "threads per rank"},
      {"eval_every", Measure::kValue, kEpochs, "as epochs"},
      // Pseudo labels.
      {"k", Measure::kValue, 1'000'000, "k-means clusters"},
      {"k1", Measure::kValue, 1000, "k-reciprocal neighbours (MMT uses 30)"},
      {"k2", Measure::kValue, 1000, "query-expansion neighbours (MMT uses 6)"},
      {"min_samples", Measure::kValue, 100'000, "DBSCAN core-point neighbours"},
      // Classification kinds.
      {"batch_size", Measure::kValue, kBatch, "images per batch"},
      {"bottleneck_dim", Measure::kValue, 65'536, "feature width"},
      {"augment_shift", Measure::kValue, 2048, "pixels: at most an input side"},
      {"unsupervised_warmup_iterations", Measure::kValue, kIterations, "as iters"},
      // Service.
      {"world_size", Measure::kValue, 1024, "data-parallel ranks of one job"},
  };
  return limits;
}

absl::Status check_spec_limits(const tandem::v1::JobSpec& spec) {
  for (const SpecLimit& limit : spec_limits()) {
    if (absl::Status status = check(spec, limit); !status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace tandem::server
