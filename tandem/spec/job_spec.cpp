#include "tandem/spec/job_spec.h"

#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace tandem::spec {
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
  // protobuf JSON's own spellings too: a spec written by job_spec_json
  // (the rank's copy) reads back.
  static const std::regex kInfinity("[-+]?(\\.(inf|Inf|INF)|Infinity)");
  static const std::regex kNan("\\.(nan|NaN|NAN)|NaN");
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
      if (entry.second.size() == 0) {
        // A repeated field has no presence: an empty list would read as
        // absent, that is as the default.
        fail(where, entry.second, name,
             "is an empty list, which reads as the default; leave it out for the default, or "
             "give the values (for milestones: one past the last epoch for no step)");
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

tandem::v1::JobSpec read_job_spec(const std::string& text, const std::string& where) {
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

tandem::v1::JobSpec read_job_spec_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path + ": job spec not found");
  std::stringstream text;
  text << in.rdbuf();
  return read_job_spec(text.str(), path);
}

std::string job_spec_json(const tandem::v1::JobSpec& spec) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  const auto status = google::protobuf::util::MessageToJsonString(spec, &out, options);
  if (!status.ok()) throw std::runtime_error("job spec to JSON: " + std::string(status.message()));
  return out;
}

// ---------------------------------------------------------------------------
// Defaults and checks.

namespace {

using tandem::v1::DatasetSpec;
using tandem::v1::JobSpec;

[[noreturn]] void refuse(const std::string& where, const std::string& field,
                         const std::string& what) {
  throw std::invalid_argument(where + ": spec." + field + " " + what);
}

/// The fields of a data set that are given (kind excepted).
std::set<std::string> given_dataset_fields(const DatasetSpec& d) {
  std::set<std::string> given;
  if (!d.root().empty()) given.insert("root");
  if (!d.list().empty()) given.insert("list");
  if (!d.test_list().empty()) given.insert("test_list");
  if (d.has_shift()) given.insert("shift");
  if (d.has_images()) given.insert("images");
  if (d.has_test_images()) given.insert("test_images");
  return given;
}

/// A data set's layout and the fields its layout reads (before defaults).
void check_dataset(const DatasetSpec& d, const std::string& where, const std::string& field) {
  const auto only = [&](const std::set<std::string>& allowed) {
    for (const std::string& key : given_dataset_fields(d)) {
      if (!allowed.count(key)) {
        refuse(where, field + "." + key, "is not a field of a " + d.kind() + " data set");
      }
    }
  };
  if (is_reid_layout(d.kind())) {
    only({"root"});
    if (d.root().empty()) refuse(where, field + ".root", "is required");
  } else if (d.kind() == "image_list") {
    only({"root", "list", "test_list"});
    if (d.list().empty()) refuse(where, field + ".list", "is required for an image_list data set");
  } else if (d.kind() == "fashion_mnist_source") {
    only({"root", "images"});
  } else if (d.kind() == "fashion_mnist_target") {
    only({"root", "images", "test_images", "shift"});
  } else {
    refuse(where, field + ".kind",
           "must be one of market1501, dukemtmc, msmt17, msmt17-market-layout, folder, "
           "image_list, fashion_mnist_source, fashion_mnist_target; got '" +
               d.kind() + "'");
  }
}

/// A data set's ranges (after defaults).
void check_dataset_values(const DatasetSpec& d, const std::string& where,
                          const std::string& field) {
  if (d.kind() == "fashion_mnist_target") {
    if (d.shift() != "standard" && d.shift() != "hard") {
      refuse(where, field + ".shift", "must be standard or hard, got '" + d.shift() + "'");
    }
    if (d.test_images() < 1 || d.test_images() > 10000) {
      refuse(where, field + ".test_images",
             "must be in [1, 10000], got " + std::to_string(d.test_images()));
    }
  }
  if (d.has_images() && (d.images() < 1 || d.images() > 30000)) {
    refuse(where, field + ".images", "must be in [1, 30000], got " + std::to_string(d.images()));
  }
}

/// "classification" stands for the four classification kinds.
bool row_applies(const char* kinds, const std::string& kind) {
  std::istringstream names(kinds);
  std::string name;
  bool any = false;
  while (names >> name) {
    any = true;
    if (name == kind || (name == "classification" && is_classification_kind(kind))) return true;
  }
  return !any;
}

/// auto, cpu, cuda or cuda:N: the spelling worker::resolve_device accepts
/// (whether the host has that GPU is checked when the job starts).
bool is_device_name(const std::string& device) {
  if (device == "auto" || device == "cpu" || device == "cuda") return true;
  if (device.rfind("cuda:", 0) != 0) return false;
  const std::string digits = device.substr(5);
  return !digits.empty() && digits.size() <= 4 &&
         digits.find_first_not_of("0123456789") == std::string::npos;
}

/// The classification kinds' own checks (ranges of ClassificationOptions).
void check_classification(const JobSpec& s, const std::string& where) {
  if (!is_given(s.source())) refuse(where, "source", "is required for " + s.kind());
  if (!is_given(s.target())) refuse(where, "target", "is required for " + s.kind());
  if (s.source().kind() != "image_list" && s.source().kind() != "fashion_mnist_source") {
    refuse(where, "source.kind",
           "must be image_list or fashion_mnist_source for " + s.kind() + ", got '" +
               s.source().kind() + "'");
  }
  if (s.target().kind() != "image_list" && s.target().kind() != "fashion_mnist_target") {
    refuse(where, "target.kind",
           "must be image_list or fashion_mnist_target for " + s.kind() + ", got '" +
               s.target().kind() + "'");
  }
  if (!s.source().test_list().empty()) {
    refuse(where, "source.test_list", "is a field of the target only (its held-out test list)");
  }
  if (s.target().kind() == "image_list" && s.target().test_list().empty()) {
    refuse(where, "target.test_list",
           "is required: the held-out labelled target images the accuracy is measured on");
  }
  if (s.backbone() != "small") {
    refuse(where, "backbone", "must be small for " + s.kind() + ", got '" + s.backbone() + "'");
  }
  const auto in = [&](double v, double lo, double hi, bool hi_open, const char* field) {
    if (!(v >= lo && (hi_open ? v < hi : v <= hi))) {
      std::ostringstream range;
      range << "must be in [" << lo << ", " << hi << (hi_open ? ")" : "]") << ", got " << v;
      refuse(where, field, range.str());
    }
  };
  const auto at_least = [&](double v, double lo, const char* field) {
    if (!(v >= lo)) {
      std::ostringstream range;
      range << "must be >= " << lo << ", got " << v;
      refuse(where, field, range.str());
    }
  };
  const auto positive = [&](double v, const char* field) {
    if (!(v > 0 && std::isfinite(v))) {
      std::ostringstream range;
      range << "must be positive, got " << v;
      refuse(where, field, range.str());
    }
  };
  if (s.batch_size() < 2)
    refuse(where, "batch_size", "must be >= 2, got " + std::to_string(s.batch_size()));
  in(s.momentum(), 0, 1, true, "momentum");
  at_least(s.lr_gamma(), 0, "lr_gamma");
  at_least(s.lr_decay(), 0, "lr_decay");
  if (s.bottleneck_dim() < 1)
    refuse(where, "bottleneck_dim", "must be >= 1, got " + std::to_string(s.bottleneck_dim()));
  if (s.augment_shift() < 0)
    refuse(where, "augment_shift", "must be >= 0, got " + std::to_string(s.augment_shift()));
  in(s.augment_flip_probability(), 0, 1, false, "augment_flip_probability");
  in(s.augment_color_jitter(), 0, 1, true, "augment_color_jitter");
  in(s.augment_invert_probability(), 0, 1, false, "augment_invert_probability");
  if (s.unsupervised_warmup_iterations() < 0) {
    refuse(where, "unsupervised_warmup_iterations",
           "must be >= 0, got " + std::to_string(s.unsupervised_warmup_iterations()));
  }
  in(s.self_ensemble_alpha(), 0, 1, false, "self_ensemble_alpha");
  in(s.self_ensemble_confidence_threshold(), 0, 1, false, "self_ensemble_confidence_threshold");
  at_least(s.self_ensemble_consistency_weight(), 0, "self_ensemble_consistency_weight");
  at_least(s.self_ensemble_balance_weight(), 0, "self_ensemble_balance_weight");
  positive(s.mcc_temperature(), "mcc_temperature");
  at_least(s.mcc_trade_off(), 0, "mcc_trade_off");
  positive(s.afn_delta(), "afn_delta");
  at_least(s.afn_trade_off(), 0, "afn_trade_off");
  in(s.afn_dropout(), 0, 1, true, "afn_dropout");
}

/// Every check of a resolved spec that needs no data.
void check_values(const JobSpec& s, const std::string& where) {
  const auto positive = [&](int64_t v, const char* field) {
    if (v < 1) refuse(where, field, "must be >= 1, got " + std::to_string(v));
  };
  // Every number must be finite (.inf and .nan read as numbers).
  {
    const auto* descriptor = JobSpec::descriptor();
    const auto* reflection = s.GetReflection();
    for (int i = 0; i < descriptor->field_count(); ++i) {
      const auto* field = descriptor->field(i);
      if (field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_DOUBLE ||
          field->is_repeated() || !reflection->HasField(s, field))
        continue;
      const double value = reflection->GetDouble(s, field);
      if (!std::isfinite(value)) {
        std::ostringstream shown_value;
        shown_value << value;
        refuse(where, field->name(), "must be a finite number, got " + shown_value.str());
      }
    }
  }
  if (is_classification_kind(s.kind())) {
    check_classification(s, where);
  } else {
    for (const auto* d : {&s.source(), &s.target()}) {
      if (is_given(*d) && !is_reid_layout(d->kind())) {
        refuse(where, std::string(d == &s.source() ? "source" : "target") + ".kind",
               "must be a re-ID layout (market1501, dukemtmc, msmt17, msmt17-market-layout, "
               "folder) for " +
                   s.kind() + ", got '" + d->kind() + "'");
      }
    }
  }
  if (s.kind() == "pretrain" && !is_given(s.source()))
    refuse(where, "source", "is required for pretrain");
  if (s.kind() == "mmt" && !is_given(s.target())) refuse(where, "target", "is required for mmt");
  if (s.kind() == "evaluate" && !is_given(s.target()))
    refuse(where, "target", "is required for evaluate");
  if (s.kind() == "evaluate" && s.weights().empty())
    refuse(where, "weights", "is required for evaluate");
  static const std::set<std::string> backbones = {"small", "resnet18", "resnet50",
                                                  "resnet50_ibn_a"};
  if (!backbones.count(s.backbone())) {
    refuse(where, "backbone",
           "must be small, resnet18, resnet50 or resnet50_ibn_a, got '" + s.backbone() + "'");
  }
  positive(s.backbone_width(), "backbone_width");
  if (s.backbone_depth() < 1 || s.backbone_depth() > 8)
    refuse(where, "backbone_depth", "must be in [1, 8]");
  positive(s.height(), "height");
  positive(s.width(), "width");
  if (s.identities() < 2)
    refuse(where, "identities", "must be >= 2, got " + std::to_string(s.identities()));
  if (s.instances() < 2)
    refuse(where, "instances", "must be >= 2, got " + std::to_string(s.instances()));
  if (!(s.lr() > 0)) refuse(where, "lr", "must be positive, got " + std::to_string(s.lr()));
  if (s.weight_decay() < 0) refuse(where, "weight_decay", "must be >= 0");
  positive(s.epochs(), "epochs");
  positive(s.iters(), "iters");
  // Iteration counters of the rank events are 32-bit (rank_event.proto).
  if (s.iters() > std::numeric_limits<int32_t>::max() / s.epochs()) {
    refuse(where, "iters",
           "x epochs must be at most " + std::to_string(std::numeric_limits<int32_t>::max()) +
               " iterations in all, got " + std::to_string(s.epochs()) + " x " +
               std::to_string(s.iters()));
  }
  if (s.alpha() < 0 || s.alpha() > 1) refuse(where, "alpha", "must be in [0, 1]");
  if (s.soft_ce_weight() < 0 || s.soft_ce_weight() > 1)
    refuse(where, "soft_ce_weight", "must be in [0, 1]");
  if (s.soft_triplet_weight() < 0 || s.soft_triplet_weight() > 1) {
    refuse(where, "soft_triplet_weight", "must be in [0, 1]");
  }
  if (s.clustering() != "kmeans" && s.clustering() != "dbscan") {
    refuse(where, "clustering", "must be kmeans or dbscan, got '" + s.clustering() + "'");
  }
  positive(s.k(), "k");
  if (s.eps() < 0) refuse(where, "eps", "must be >= 0 (0: adaptive, from rho)");
  if (!(s.rho() > 0 && s.rho() < 1)) refuse(where, "rho", "must be in (0, 1)");
  positive(s.k1(), "k1");
  positive(s.k2(), "k2");
  positive(s.min_samples(), "min_samples");
  if (s.eval_every() < 0) refuse(where, "eval_every", "must be >= 0");
  positive(s.loader_threads(), "loader_threads");
  if (!is_device_name(s.device())) {
    refuse(where, "device",
           "must be auto, cpu, cuda or cuda:N (N a GPU index), got '" + s.device() + "'");
  }
  if (s.precision() != "fp32" && s.precision() != "bf16") {
    refuse(where, "precision", "must be fp32 or bf16, got '" + s.precision() + "'");
  }
  if (s.channels_last() && s.kind() != "mmt") {
    refuse(
        where, "channels_last",
        "is an mmt setting (its two-network step); " + s.kind() + " trains in the default layout");
  }
  if (s.bn_group_size() < 0) refuse(where, "bn_group_size", "must be >= 0 (0: no groups)");
  if (s.bn_group_size() > 0) {
    const bool classification = is_classification_kind(s.kind());
    const int64_t batch = classification ? s.batch_size() : s.identities() * s.instances();
    const int64_t group = s.bn_group_size();
    if (batch > group && batch % group != 0) {
      refuse(where, "bn_group_size",
             std::to_string(group) + " must divide the batch (" +
                 (classification ? "batch_size" : "identities x instances") + " = " +
                 std::to_string(batch) + ")");
    }
  }
  if (s.kind() == "mmt" && (s.init_1().empty() != s.init_2().empty())) {
    refuse(where, s.init_1().empty() ? "init_1" : "init_2", "must be given with the other init");
  }
}

}  // namespace

bool is_classification_kind(const std::string& kind) {
  return kind == "source_only" || kind == "self_ensemble" || kind == "mcc" || kind == "afn";
}

bool is_job_kind(const std::string& kind) {
  return kind == "pretrain" || kind == "mmt" || kind == "evaluate" || is_classification_kind(kind);
}

bool is_reid_layout(const std::string& kind) {
  return kind == "market1501" || kind == "dukemtmc" || kind == "msmt17" ||
         kind == "msmt17-market-layout" || kind == "folder";
}

bool is_given(const DatasetSpec& data) {
  return !data.kind().empty() || !data.root().empty();
}

const std::vector<FieldDefault>& job_spec_defaults() {
  // MMT's hyper-parameters (notes §2) for the re-ID kinds; the classification
  // kinds' where the methods differ (worker::ClassificationOptions, notes §6,
  // docs/training.md). Rows of one field: the first that applies wins.
  static const std::vector<FieldDefault> table = {
      {"seed", "", "1"},
      {"backbone", "classification", "\"small\""},
      {"backbone", "", "\"resnet50\""},
      {"backbone_width", "", "16"},
      {"backbone_depth", "", "1"},
      {"height", "classification", "32"},
      {"height", "", "256"},
      {"width", "classification", "32"},
      {"width", "", "128"},
      {"identities", "", "16"},
      {"instances", "", "4"},
      {"lr", "classification", "0.01"},
      {"lr", "", "3.5e-4"},
      {"weight_decay", "", "5e-4"},
      {"epochs", "pretrain", "80"},
      {"epochs", "classification", "10"},
      {"epochs", "", "40"},
      {"iters", "pretrain", "100"},
      {"iters", "classification", "150"},
      {"iters", "", "400"},
      {"warmup_epochs", "", "10"},
      {"warmup_factor", "", "0.01"},
      {"milestones", "", "[40, 70]"},
      {"target_bn", "", "true"},
      {"bn_group_size", "mmt", "16"},  // the reference's 16 images per GPU
      {"bn_group_size", "", "0"},
      {"loader_threads", "", "2"},
      {"eval_every", "", "1"},
      {"alpha", "", "0.999"},
      {"soft_ce_weight", "", "0.5"},
      {"soft_triplet_weight", "", "0.8"},
      {"clustering", "", "\"dbscan\""},
      {"k", "", "500"},
      {"eps", "", "0"},
      {"rho", "", "1.6e-3"},
      {"eps_every_epoch", "", "false"},
      {"k1", "", "20"},
      {"k2", "", "6"},
      {"min_samples", "", "4"},
      {"camera_standardise", "", "false"},
      {"batch_size", "", "32"},
      {"momentum", "", "0.9"},
      {"lr_gamma", "", "0.001"},
      {"lr_decay", "", "0.75"},
      {"bottleneck_dim", "", "256"},
      {"augment_shift", "", "2"},
      {"augment_flip_probability", "", "0.5"},
      {"augment_color_jitter", "", "0.2"},
      {"augment_invert_probability", "", "0"},
      {"unsupervised_warmup_iterations", "", "500"},
      {"self_ensemble_alpha", "", "0.99"},
      {"self_ensemble_confidence_threshold", "", "0.8"},
      {"self_ensemble_consistency_weight", "", "3"},
      {"self_ensemble_balance_weight", "", "0.01"},
      {"mcc_temperature", "", "2.5"},
      {"mcc_trade_off", "", "1"},
      {"afn_delta", "", "1"},
      {"afn_trade_off", "", "0.05"},
      {"afn_dropout", "", "0.5"},
      {"device", "", "\"auto\""},
      {"precision", "", "\"fp32\""},
      {"channels_last", "", "false"},
      {"deterministic", "", "false"},
      // Data sets: `kinds` names data set layouts here.
      {"dataset.shift", "fashion_mnist_target", "\"standard\""},
      {"dataset.images", "fashion_mnist_source fashion_mnist_target", "10000"},
      {"dataset.test_images", "fashion_mnist_target", "2000"},
  };
  return table;
}

const FieldDefault* default_for(const std::string& field, const std::string& kind) {
  if (!is_job_kind(kind)) return nullptr;
  for (const FieldDefault& row : job_spec_defaults()) {
    if (field == row.field && row_applies(row.kinds, kind)) return &row;
  }
  return nullptr;
}

JobSpec resolve_job_spec(const JobSpec& given, const std::string& where) {
  const std::string& kind = given.kind();
  if (!is_job_kind(kind)) {
    refuse(where, "kind",
           "must be pretrain, mmt, evaluate, source_only, self_ensemble, mcc or afn, got '" + kind +
               "'");
  }
  if (given.output_dir().empty()) refuse(where, "output_dir", "is required");
  // A data set with any field given is checked (its kind first).
  if (given.source().ByteSizeLong() > 0) check_dataset(given.source(), where, "source");
  if (given.target().ByteSizeLong() > 0) check_dataset(given.target(), where, "target");
  JobSpec spec = given;
  // -1, what older specs wrote for "the kind's default".
  if (spec.has_bn_group_size() && spec.bn_group_size() == -1) spec.clear_bn_group_size();
  // The defaults through the message's JSON mapping: a row fills its field
  // only when the spec leaves it out, the first row that applies winning.
  json resolved = json::parse(job_spec_json(spec));
  for (const FieldDefault& row : job_spec_defaults()) {
    const std::string field = row.field;
    if (field.rfind("dataset.", 0) == 0) {
      const std::string key = field.substr(8);
      for (const auto& [side, data] :
           {std::pair<const char*, const DatasetSpec*>{"source", &spec.source()},
            {"target", &spec.target()}}) {
        if (!is_given(*data) || !row_applies(row.kinds, data->kind())) continue;
        json& object = resolved[side];
        if (!object.contains(key)) object[key] = json::parse(row.value);
      }
      continue;
    }
    if (!row_applies(row.kinds, kind) || resolved.contains(field)) continue;
    resolved[field] = json::parse(row.value);
  }
  spec.Clear();
  const auto status = google::protobuf::util::JsonStringToMessage(resolved.dump(), &spec);
  if (!status.ok()) {
    throw std::logic_error("the job spec defaults: " + std::string(status.message()));
  }
  check_dataset_values(spec.source(), where, "source");
  check_dataset_values(spec.target(), where, "target");
  check_values(spec, where);
  return spec;
}

namespace {

/// What `tandem train` runs of a spec read from `where`.
JobSpec resolve_for_train(const JobSpec& given, const std::string& where) {
  if (given.has_world_size()) {
    refuse(where, "world_size",
           "is a field of the service's job spec that tandem train does not read");
  }
  return resolve_job_spec(given, where);
}

}  // namespace

JobSpec parse_job_spec(const std::string& text, const std::string& where) {
  return resolve_for_train(read_job_spec(text, where), where);
}

JobSpec load_job_spec(const std::string& path) {
  return resolve_for_train(read_job_spec_file(path), path);
}

}  // namespace tandem::spec
