// Job spec files as the wire message: YAML (or JSON, which is YAML) ->
// protobuf JSON -> tandem::v1::JobSpec with protobuf's JSON mapping, the proto
// field names being the keys (docs/protocol.md). The proto is the only
// schema: keys and value types are checked against its descriptor, so a typo
// or a wrong-typed value is an error naming the file, the line and the field.
// Values are not range-checked here; the service validates them.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include <tandem/v1/job_spec.pb.h>

namespace YAML {  // NOLINT(readability-identifier-naming): yaml-cpp's namespace
class Node;
}  // namespace YAML

namespace tandem::client {

/// The spec in `text`; `where` (a file name) starts every error message.
/// Throws std::invalid_argument for invalid YAML, an unknown key
/// (`job.yaml:3: spec.identites is not a field of a job spec (did you mean
/// identities?)`) or a wrong-typed value (`job.yaml:4: spec.lr must be a
/// number, got 'fast'`).
tandem::v1::JobSpec job_spec_proto_from_yaml(const std::string& text, const std::string& where);

/// The same from a file; a missing file is std::invalid_argument naming it.
tandem::v1::JobSpec job_spec_proto_from_file(const std::string& path);

/// The protobuf JSON of `spec` on one line, proto field names as keys.
std::string job_spec_json(const tandem::v1::JobSpec& spec);

/// The JSON that `node` stands for as a `schema` message: scalars typed by
/// the field they fill (integers, numbers, booleans, strings), sequences as
/// arrays, mappings as objects, a null value as null (absent). Errors as
/// job_spec_proto_from_yaml's, with `path` ("spec") before the field names.
nlohmann::json yaml_to_proto_json(const YAML::Node& node,
                                  const google::protobuf::Descriptor& schema,
                                  const std::string& where, const std::string& path = "spec");

}  // namespace tandem::client
