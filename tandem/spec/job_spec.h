// The job spec: tandem.v1.JobSpec (proto/tandem/v1/job_spec.proto) is the
// one schema of a Tandem job, for `tandem train`, `tandem submit`, the
// server and the ranks. Spec files are YAML (or JSON, which is YAML) written
// as the message's protobuf JSON mapping with the proto field names as keys;
// they are read against the message's descriptor, so a typo or a wrong-typed
// value is an error naming the file, the line and the field. Two steps:
//
//   read_job_spec: text -> the message, only what the file says (absent
//     fields stay absent). What `tandem submit` sends.
//   resolve_job_spec: every absent field gets its kind's default (one table,
//     job_spec.cpp, MMT's hyper-parameters for the re-ID kinds, notes §2, and
//     the methods' for the classification kinds), then every check that
//     needs no data runs. What every job runner reads: each optional field
//     of a resolved spec is present.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include <tandem/v1/job_spec.pb.h>

namespace YAML {  // NOLINT(readability-identifier-naming): yaml-cpp's namespace
class Node;
}  // namespace YAML

namespace tandem::spec {

/// The spec in `text`; `where` (a file name) starts every error message.
/// Throws std::invalid_argument for invalid YAML, an unknown key
/// (`job.yaml:3: spec.identites is not a field of a job spec (did you mean
/// identities?)`) or a wrong-typed value (`job.yaml:4: spec.lr must be a
/// number, got 'fast'`). Values are not range-checked here.
tandem::v1::JobSpec read_job_spec(const std::string& text, const std::string& where);

/// The same from a file; a missing file is std::invalid_argument naming it.
tandem::v1::JobSpec read_job_spec_file(const std::string& path);

/// `given` with every absent field set to its kind's default, checked: kinds,
/// data set layouts and the fields each reads, ranges, combinations. Throws
/// std::invalid_argument "WHERE: spec.FIELD ..." naming the first problem.
/// world_size is left as given (the service's field; ranks never read it).
tandem::v1::JobSpec resolve_job_spec(const tandem::v1::JobSpec& given, const std::string& where);

/// read_job_spec + resolve_job_spec: the spec `tandem train` runs. A spec
/// that sets world_size (the service's field) is refused, naming the field.
tandem::v1::JobSpec parse_job_spec(const std::string& text, const std::string& where);

/// The same from a file.
tandem::v1::JobSpec load_job_spec(const std::string& path);

/// The protobuf JSON of `spec` on one line, proto field names as keys.
std::string job_spec_json(const tandem::v1::JobSpec& spec);

/// The JSON that `node` stands for as a `schema` message: scalars typed by
/// the field they fill (integers, numbers, booleans, strings), sequences as
/// arrays, mappings as objects, a null value as null (absent). Errors as
/// read_job_spec's, with `path` ("spec") before the field names.
nlohmann::json yaml_to_proto_json(const YAML::Node& node,
                                  const google::protobuf::Descriptor& schema,
                                  const std::string& where, const std::string& path = "spec");

/// True for source_only, self_ensemble, mcc and afn.
bool is_classification_kind(const std::string& kind);

/// True for a job kind: pretrain, mmt, evaluate or a classification kind.
bool is_job_kind(const std::string& kind);

/// True for a re-ID data set layout: market1501, dukemtmc, msmt17,
/// msmt17-market-layout, folder.
bool is_reid_layout(const std::string& kind);

/// True when a data set is given (a kind or a root).
bool is_given(const tandem::v1::DatasetSpec& data);

/// One row of the defaults table: the value `field` takes when a spec of
/// `kinds` leaves it out ("" every kind, "classification" the four
/// classification kinds, else one kind's name). `value` is JSON text.
struct FieldDefault {
  const char* field;  // a JobSpec field, or "source."/"target." + a DatasetSpec field
  const char* kinds;
  const char* value;
};

/// The table, kind-specific rows before the general one of the same field.
const std::vector<FieldDefault>& job_spec_defaults();

/// The row that gives JobSpec field `field` its default for a job of `kind`,
/// or null when `kind` is not a job kind or no row applies.
const FieldDefault* default_for(const std::string& field, const std::string& kind);

}  // namespace tandem::spec
