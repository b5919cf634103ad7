#include "tandem/client/spec_proto.h"

#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace tandem::client {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

/// "job.yaml:7" for a node read from line 7, else "job.yaml".
std::string location(const std::string& where, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null() || mark.line < 0) return where;
  return where + ":" + std::to_string(mark.line + 1);
}

[[noreturn]] void fail(const std::string& where, const YAML::Node& node, const std::string& path,
                       const std::string& what) {
  throw std::invalid_argument(location(where, node) + ": " + path + " " + what);
}

/// What a message is called in errors.
std::string message_noun(const Descriptor& schema) {
  if (schema.full_name() == "tandem.v1.JobSpec") return "a job spec";
  if (schema.full_name() == "tandem.v1.DatasetSpec") return "a data set";
  return "a " + schema.name();
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

/// " (did you mean identities?)" for a near miss; for a small message the
/// list of its fields instead.
std::string unknown_key_hint(const Descriptor& schema, const std::string& key) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, key.size() / 4) + 1;
  for (int i = 0; i < schema.field_count(); ++i) {
    const std::string& name = schema.field(i)->name();
    const size_t distance = edit_distance(key, name);
    if (distance < best_distance) {
      best = name;
      best_distance = distance;
    }
  }
  if (!best.empty()) return " (did you mean " + best + "?)";
  if (schema.field_count() > 12) return "";
  std::string known;
  for (int i = 0; i < schema.field_count(); ++i) {
    known += (i ? ", " : "") + schema.field(i)->name();
  }
  return " (known: " + known + ")";
}

std::string shown(const YAML::Node& node) {
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "nothing";
}

/// YAML 1.2 core integers: decimal, 0x hexadecimal, 0o octal, signed.
bool parse_integer(const std::string& text, bool is_unsigned, json& out) {
  static const std::regex kInteger("[-+]?([0-9]+|0x[0-9a-fA-F]+|0o[0-7]+)");
  if (!std::regex_match(text, kInteger)) return false;
  std::string digits = text;
  const bool negative = !digits.empty() && digits[0] == '-';
  if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) digits.erase(0, 1);
  int base = 10;
  if (digits.rfind("0x", 0) == 0) {
    base = 16;
    digits.erase(0, 2);
  } else if (digits.rfind("0o", 0) == 0) {
    base = 8;
    digits.erase(0, 2);
  }
  errno = 0;
  const unsigned long long magnitude = std::strtoull(digits.c_str(), nullptr, base);
  if (errno == ERANGE) return false;
  if (is_unsigned) {
    if (negative && magnitude != 0) return false;
    out = static_cast<uint64_t>(magnitude);
    return true;
  }
  const auto limit = static_cast<unsigned long long>(std::numeric_limits<int64_t>::max());
  if (magnitude > limit + (negative ? 1 : 0)) return false;
  out = negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
  return true;
}

/// YAML 1.2 core floats (integers included); infinities and NaN become
/// protobuf JSON's "Infinity", "-Infinity" and "NaN".
bool parse_number(const std::string& text, json& out) {
  static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  static const std::regex kInfinity("[-+]?\\.(inf|Inf|INF)");
  static const std::regex kNan("\\.(nan|NaN|NAN)");
  if (std::regex_match(text, kInfinity)) {
    out = text[0] == '-' ? "-Infinity" : "Infinity";
    return true;
  }
  if (std::regex_match(text, kNan)) {
    out = "NaN";
    return true;
  }
  if (!std::regex_match(text, kFloat)) return false;
  out = std::strtod(text.c_str(), nullptr);
  return true;
}

json value_json(const YAML::Node& node, const FieldDescriptor& field, const std::string& where,
                const std::string& path);

json message_json(const YAML::Node& node, const Descriptor& schema, const std::string& where,
                  const std::string& path) {
  if (!node.IsMap()) {
    fail(where, node, path,
         "must be a mapping of " + message_noun(schema).substr(2) + " fields, got " + shown(node));
  }
  json object = json::object();
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) fail(where, entry.first, path, "has a key that is not a name");
    const std::string key = entry.first.Scalar();
    const std::string name = path + "." + key;
    const FieldDescriptor* field = schema.FindFieldByName(key);
    if (field == nullptr) {
      fail(where, entry.first, name,
           "is not a field of " + message_noun(schema) + unknown_key_hint(schema, key));
    }
    if (object.contains(key)) fail(where, entry.first, name, "is given twice");
    if (entry.second.IsNull()) {
      object[key] = nullptr;  // absent: the default
    } else if (field->is_map()) {
      if (!entry.second.IsMap()) fail(where, entry.second, name, "must be a mapping");
      json map = json::object();
      for (const auto& item : entry.second) {
        const std::string item_key = item.first.as<std::string>();
        map[item_key] = value_json(item.second, *field->message_type()->map_value(), where,
                                   name + "." + item_key);
      }
      object[key] = std::move(map);
    } else if (field->is_repeated()) {
      if (!entry.second.IsSequence()) {
        fail(where, entry.second, name, "must be a list, got " + shown(entry.second));
      }
      json array = json::array();
      for (size_t i = 0; i < entry.second.size(); ++i) {
        array.push_back(
            value_json(entry.second[i], *field, where, name + "[" + std::to_string(i) + "]"));
      }
      object[key] = std::move(array);
    } else {
      object[key] = value_json(entry.second, *field, where, name);
    }
  }
  return object;
}

/// What a value of `field` must be, for errors.
std::string expected_value(const FieldDescriptor& field) {
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
    case FieldDescriptor::CPPTYPE_ENUM: return "a string";
    case FieldDescriptor::CPPTYPE_BOOL: return "true or false";
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: return "a number";
    case FieldDescriptor::CPPTYPE_INT32: return "a 32-bit integer";
    case FieldDescriptor::CPPTYPE_UINT32: return "a 32-bit integer >= 0";
    case FieldDescriptor::CPPTYPE_UINT64: return "an integer >= 0";
    case FieldDescriptor::CPPTYPE_INT64: return "an integer";
    case FieldDescriptor::CPPTYPE_MESSAGE: break;
  }
  return "a mapping";
}

/// One value of `field` (an element, for a repeated field).
json value_json(const YAML::Node& node, const FieldDescriptor& field, const std::string& where,
                const std::string& path) {
  using F = FieldDescriptor;
  if (field.cpp_type() == F::CPPTYPE_MESSAGE) {
    return message_json(node, *field.message_type(), where, path);
  }
  if (node.IsNull()) return nullptr;
  if (!node.IsScalar()) {
    fail(where, node, path, "must be " + expected_value(field) + ", got " + shown(node));
  }
  const std::string& text = node.Scalar();
  json out;
  bool ok = true;
  switch (field.cpp_type()) {
    case F::CPPTYPE_STRING:
    case F::CPPTYPE_ENUM: out = text; break;  // enums by name
    case F::CPPTYPE_BOOL: {
      bool value = false;
      ok = YAML::convert<bool>::decode(node, value);
      out = value;
      break;
    }
    case F::CPPTYPE_DOUBLE:
    case F::CPPTYPE_FLOAT: ok = parse_number(text, out); break;
    case F::CPPTYPE_INT64:
    case F::CPPTYPE_UINT64:
      ok = parse_integer(text, field.cpp_type() == F::CPPTYPE_UINT64, out);
      break;
    case F::CPPTYPE_INT32:
    case F::CPPTYPE_UINT32: {
      const bool is_unsigned = field.cpp_type() == F::CPPTYPE_UINT32;
      ok = parse_integer(text, is_unsigned, out);
      if (ok) {
        const double value = out.get<double>();
        ok = value >= (is_unsigned ? 0.0 : std::numeric_limits<int32_t>::min()) &&
             value <= (is_unsigned ? std::numeric_limits<uint32_t>::max()
                                   : std::numeric_limits<int32_t>::max());
      }
      break;
    }
    case F::CPPTYPE_MESSAGE: ok = false; break;
  }
  if (!ok) fail(where, node, path, "must be " + expected_value(field) + ", got " + shown(node));
  return out;
}

}  // namespace

nlohmann::json yaml_to_proto_json(const YAML::Node& node, const Descriptor& schema,
                                  const std::string& where, const std::string& path) {
  return message_json(node, schema, where, path);
}

tandem::v1::JobSpec job_spec_proto_from_yaml(const std::string& text, const std::string& where) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument(where + ": not valid YAML or JSON: " + e.what());
  }
  if (!root.IsMap()) throw std::invalid_argument(where + ": a job spec is a mapping of fields");
  const json object = yaml_to_proto_json(root, *tandem::v1::JobSpec::descriptor(), where);
  tandem::v1::JobSpec spec;
  const auto status = google::protobuf::util::JsonStringToMessage(object.dump(), &spec);
  // The walk above checked every key and type; protobuf's own check is the
  // backstop.
  if (!status.ok()) throw std::invalid_argument(where + ": " + std::string(status.message()));
  return spec;
}

tandem::v1::JobSpec job_spec_proto_from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path + ": job spec not found");
  std::stringstream text;
  text << in.rdbuf();
  return job_spec_proto_from_yaml(text.str(), path);
}

std::string job_spec_json(const tandem::v1::JobSpec& spec) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  const auto status = google::protobuf::util::MessageToJsonString(spec, &out, options);
  if (!status.ok()) throw std::runtime_error("job spec to JSON: " + std::string(status.message()));
  return out;
}

}  // namespace tandem::client
