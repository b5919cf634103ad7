// spec/job_spec: job spec files as tandem::v1::JobSpec (YAML -> JSON ->
// protobuf's JSON mapping, checked against the proto's descriptor), the
// defaults table and the checks that need no data (resolve_job_spec), and
// parse_job_spec, what `tandem train` runs. No LibTorch here: the defaults
// compared with the classification trainers' are in jobs/train_jobs_test.cpp.
#include "tandem/spec/job_spec.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <tandem/v1/job_spec.pb.h>

namespace tandem::spec {
namespace {

namespace fs = std::filesystem;

using google::protobuf::util::MessageDifferencer;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::string scratch_path(const std::string& name) {
  return (fs::temp_directory_path() / ("tandem-spec-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

/// The error of read_job_spec (the file as written, no defaults), or "".
std::string read_error_of(const std::string& yaml) {
  try {
    read_job_spec(yaml, "job.yaml");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

/// The error of parse_job_spec (read, then resolved), or "".
std::string error_of(const std::string& yaml) {
  try {
    parse_job_spec(yaml, "job.yaml");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

/// True when `message` is "job.yaml: spec.WHAT..." (a resolve error) or
/// "job.yaml:LINE: spec.WHAT..." (a read error: an unknown key or a
/// wrong-typed value, with the line).
bool names_field(const std::string& message, const std::string& what) {
  const size_t at = message.find(": spec." + what);
  if (at == std::string::npos) return false;
  static const std::regex where("job\\.yaml(:[0-9]+)?");
  return std::regex_match(message.substr(0, at), where);
}

// ---------------------------------------------------------------------------
// Reading: the file as written (read_job_spec).

const char* const kFullSpec = R"(kind: mmt
output_dir: runs/duke-mmt
seed: 7
source: {kind: market1501, root: /data/market}
target:
  kind: fashion_mnist_target
  root: /data/fm
  shift: hard
  images: 5000
  test_images: 1000
backbone: resnet50_ibn_a
init_1: runs/pre-1/model.pt
init_2: "runs/pre-2/model.pt"
height: 256
width: 128
identities: 16
instances: 4
lr: 3.5e-4
weight_decay: 0.0005
epochs: 40
iters: 400
milestones: [40, 70]
target_bn: false
bn_group_size: 0
alpha: 0.999
clustering: kmeans
k: 0x1f4
eps: 0
rho: 1.6e-3
eps_every_epoch: true
camera_standardise: yes
afn_dropout: .5
world_size: 4
)";

TEST(SpecProto, FullSpecRoundTrips) {
  const v1::JobSpec spec = read_job_spec(kFullSpec, "job.yaml");
  EXPECT_EQ(spec.kind(), "mmt");
  EXPECT_EQ(spec.output_dir(), "runs/duke-mmt");
  EXPECT_EQ(spec.seed(), 7u);
  EXPECT_EQ(spec.source().kind(), "market1501");
  EXPECT_EQ(spec.source().root(), "/data/market");
  EXPECT_EQ(spec.target().shift(), "hard");
  EXPECT_EQ(spec.target().images(), 5000);
  EXPECT_EQ(spec.target().test_images(), 1000);
  EXPECT_EQ(spec.init_2(), "runs/pre-2/model.pt");
  EXPECT_DOUBLE_EQ(spec.lr(), 3.5e-4);
  EXPECT_EQ(spec.identities(), 16);
  EXPECT_EQ(spec.milestones().size(), 2);
  EXPECT_EQ(spec.milestones(1), 70);
  ASSERT_TRUE(spec.has_target_bn());
  EXPECT_FALSE(spec.target_bn());
  ASSERT_TRUE(spec.has_bn_group_size());  // presence: 0 given is not absent
  EXPECT_EQ(spec.bn_group_size(), 0);
  ASSERT_TRUE(spec.has_eps());
  EXPECT_EQ(spec.k(), 500);
  EXPECT_TRUE(spec.eps_every_epoch());
  EXPECT_TRUE(spec.camera_standardise());
  EXPECT_DOUBLE_EQ(spec.afn_dropout(), 0.5);
  EXPECT_EQ(spec.world_size(), 4);
  EXPECT_FALSE(spec.has_epochs() && spec.epochs() != 40);
  EXPECT_FALSE(spec.has_momentum());  // absent: the kind's default

  // job_spec_json is one line of protobuf JSON that reads back as the same
  // message, through protobuf and through the YAML path (JSON is YAML).
  const std::string json = job_spec_json(spec);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  EXPECT_NE(json.find("\"bn_group_size\":"), std::string::npos) << json;
  v1::JobSpec from_json;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &from_json).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(spec, from_json));
  EXPECT_TRUE(MessageDifferencer::Equals(spec, read_job_spec(json, "job.json")));
}

// A value of the right type for every field of the schema.
std::string sample_value(const google::protobuf::FieldDescriptor& field) {
  using F = google::protobuf::FieldDescriptor;
  if (field.is_repeated()) return "[1, 2]";
  switch (field.cpp_type()) {
    case F::CPPTYPE_STRING: return "x";
    case F::CPPTYPE_BOOL: return "true";
    case F::CPPTYPE_DOUBLE:
    case F::CPPTYPE_FLOAT: return "0.5";
    case F::CPPTYPE_MESSAGE: return "{kind: market1501, root: /data, images: 3}";
    default: return "3";
  }
}

TEST(SpecProto, EveryFieldOfTheSchemaIsReadWithItsName) {
  const auto* schema = v1::JobSpec::descriptor();
  std::string yaml;
  for (int i = 0; i < schema->field_count(); ++i) {
    yaml += schema->field(i)->name() + ": " + sample_value(*schema->field(i)) + "\n";
  }
  const v1::JobSpec spec = read_job_spec(yaml, "job.yaml");
  const auto* reflection = spec.GetReflection();
  for (int i = 0; i < schema->field_count(); ++i) {
    const auto* field = schema->field(i);
    if (field->is_repeated()) {
      EXPECT_EQ(reflection->FieldSize(spec, field), 2) << field->name();
    } else {
      EXPECT_TRUE(reflection->HasField(spec, field)) << field->name();
    }
  }
}

TEST(SpecProto, UnknownKeyIsNamed) {
  EXPECT_EQ(read_error_of("kind: mmt\nidentites: 4\n"),
            "job.yaml:2: spec.identites is not a field of a job spec (did you mean identities?)");
  const std::string nested = read_error_of("kind: mmt\ntarget: {kind: market1501, rooot: /d}\n");
  EXPECT_NE(nested.find("job.yaml:2: spec.target.rooot is not a field of a data set"),
            std::string::npos)
      << nested;
  const std::string far = read_error_of("kind: mmt\nbogus_setting: 1\n");
  EXPECT_NE(far.find("spec.bogus_setting is not a field of a job spec"), std::string::npos) << far;
  EXPECT_NE(read_error_of("kind: mmt\nkind: pretrain\n").find("spec.kind is given twice"),
            std::string::npos);
}

TEST(SpecProto, WrongTypedValueIsNamed) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"identities: sixteen", "job.yaml:1: spec.identities must be an integer, got 'sixteen'"},
      {"identities: 1.5", "spec.identities must be an integer, got '1.5'"},
      {"lr: fast", "spec.lr must be a number, got 'fast'"},
      {"target_bn: maybe", "spec.target_bn must be true or false, got 'maybe'"},
      {"milestones: [40, x]", "spec.milestones[1] must be an integer, got 'x'"},
      {"milestones: 40", "spec.milestones must be a list, got '40'"},
      {"source: market1501", "spec.source must be a mapping of data set fields, got 'market1501'"},
      {"target: {kind: folder, images: many}", "spec.target.images must be an integer, got 'many'"},
      {"seed: -1", "spec.seed must be an integer >= 0, got '-1'"},
      {"world_size: 99999999999", "spec.world_size must be a 32-bit integer, got '99999999999'"},
      {"epochs: 99999999999999999999", "spec.epochs must be an integer"},
      {"kind: [mmt]", "spec.kind must be a string, got a list"},
  };
  for (const auto& [yaml, expected] : cases) {
    const std::string error = read_error_of(yaml + "\n");
    EXPECT_NE(error.find(expected), std::string::npos) << yaml << " -> " << error;
  }
  EXPECT_NE(read_error_of("[1, 2]").find("job.yaml: a job spec is a mapping of fields"),
            std::string::npos);
  EXPECT_NE(read_error_of("kind: [").find("job.yaml: not valid YAML or JSON"), std::string::npos);
}

TEST(SpecProto, ScalarsAreTypedByTheirField) {
  // A plain number for a string field is its text; null is absent; YAML's
  // special floats are protobuf JSON's.
  const v1::JobSpec spec =
      read_job_spec("output_dir: 2024\nepochs: ~\nlr:\neps: .inf\nrho: 1e-3\n", "j");
  EXPECT_EQ(spec.output_dir(), "2024");
  EXPECT_FALSE(spec.has_epochs());
  EXPECT_FALSE(spec.has_lr());
  EXPECT_TRUE(std::isinf(spec.eps()));
  EXPECT_DOUBLE_EQ(spec.rho(), 1e-3);
}

TEST(SpecProto, FromFileNamesTheFile) {
  const std::string path = scratch_path("spec-proto.yaml");
  write_file(path, "kind: pretrain\nidentities: x\n");
  try {
    read_job_spec_file(path);
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2: spec.identities"), std::string::npos)
        << e.what();
  }
  std::filesystem::remove(path);
  EXPECT_THROW(read_job_spec_file(path), std::invalid_argument);
}

TEST(SpecProto, LoadJobSpecResolvesAFileAndNamesIt) {
  const std::string path = scratch_path("load.yaml");
  write_file(path, "kind: pretrain\noutput_dir: o\nsource: {kind: market1501, root: /d}\n");
  const v1::JobSpec spec = load_job_spec(path);
  EXPECT_EQ(spec.epochs(), 80);  // resolved: the kind's defaults are in
  write_file(path,
             "kind: pretrain\noutput_dir: o\nsource: {kind: market1501, root: /d}\n"
             "identities: 1\n");
  try {
    load_job_spec(path);
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": spec.identities must be >= 2"),
              std::string::npos)
        << e.what();
  }
  write_file(path,
             "kind: pretrain\noutput_dir: o\nsource: {kind: market1501, root: /d}\n"
             "world_size: 2\n");
  try {
    load_job_spec(path);
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": spec.world_size is a field of the service's"),
              std::string::npos)
        << e.what();
  }
  std::filesystem::remove(path);
  EXPECT_THROW(load_job_spec(path), std::invalid_argument);
}

/// The job specs the repository ships: *.yaml / *.yml files under deploy/ and
/// docs/ that are job specs (a top-level `kind:`), and the ```yaml blocks of
/// docs/*.md and README.md.
std::vector<std::pair<std::string, std::string>> shipped_specs() {
  const fs::path root = TANDEM_SOURCE_DIR;
  std::vector<std::pair<std::string, std::string>> specs;
  const std::regex top_level_kind("(^|\n)kind:");
  for (const char* folder : {"deploy", "docs"}) {
    if (!fs::exists(root / folder)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root / folder)) {
      const auto ext = entry.path().extension();
      if (!entry.is_regular_file() || (ext != ".yaml" && ext != ".yml")) continue;
      const std::string text = read_file(entry.path().string());
      if (std::regex_search(text, top_level_kind)) specs.emplace_back(entry.path().string(), text);
    }
  }
  std::vector<fs::path> markdown = {root / "README.md"};
  for (const auto& entry : fs::directory_iterator(root / "docs")) {
    if (entry.path().extension() == ".md") markdown.push_back(entry.path());
  }
  for (const auto& path : markdown) {
    std::istringstream in(read_file(path.string()));
    std::string line, block;
    bool inside = false;
    int block_line = 0, line_number = 0;
    while (std::getline(in, line)) {
      ++line_number;
      if (!inside && line == "```yaml") {
        inside = true;
        block.clear();
        block_line = line_number + 1;
      } else if (inside && line == "```") {
        inside = false;
        if (std::regex_search(block, top_level_kind)) {
          specs.emplace_back(path.string() + " (block at line " + std::to_string(block_line) + ")",
                             block);
        }
      } else if (inside) {
        block += line + "\n";
      }
    }
  }
  return specs;
}

TEST(SpecProto, EverySpecInTheRepositoryConverts) {
  const auto specs = shipped_specs();
  EXPECT_GE(specs.size(), 2u) << "docs/training.md has two example specs";
  for (const auto& [where, text] : specs) {
    try {
      const v1::JobSpec spec = read_job_spec(text, where);
      EXPECT_FALSE(spec.kind().empty()) << where;
      EXPECT_FALSE(spec.output_dir().empty()) << where;
    } catch (const std::invalid_argument& e) {
      ADD_FAILURE() << e.what();
    }
  }
}

// ---------------------------------------------------------------------------
// Resolving: the defaults table and the checks (parse_job_spec,
// resolve_job_spec). The re-ID kinds' fields first, then the classification
// kinds' (source_only, self_ensemble, mcc, afn).

TEST(JobSpec, DefaultsByKindAndErrorsNameTheField) {
  const v1::JobSpec mmt = parse_job_spec(
      "kind: mmt\noutput_dir: out\ntarget: {kind: market1501, root: /data}\n", "job.yaml");
  EXPECT_EQ(mmt.epochs(), 40);
  EXPECT_EQ(mmt.iters(), 400);
  EXPECT_DOUBLE_EQ(mmt.alpha(), 0.999);
  EXPECT_DOUBLE_EQ(mmt.soft_triplet_weight(), 0.8);
  EXPECT_EQ(mmt.clustering(), "dbscan");
  const v1::JobSpec pretrain = parse_job_spec(
      R"({"kind": "pretrain", "output_dir": "o", "source": {"kind": "folder", "root": "/s"}})",
      "job.json");
  EXPECT_EQ(pretrain.epochs(), 80);
  EXPECT_EQ(pretrain.iters(), 100);

  const std::string base = "kind: mmt\noutput_dir: out\ntarget: {kind: market1501, root: /d}\n";
  EXPECT_NE(
      error_of(base + "identities: 1\n").find("job.yaml: spec.identities must be >= 2, got 1"),
      std::string::npos);
  EXPECT_NE(error_of(base + "lr: -1\n").find("spec.lr must be positive"), std::string::npos);
  EXPECT_NE(error_of(base + "lr: fast\n").find("spec.lr must be a number, got 'fast'"),
            std::string::npos);
  EXPECT_NE(error_of(base + "learning_rate: 1\n").find("spec.learning_rate is not a field"),
            std::string::npos);
  EXPECT_NE(
      error_of(base + "clustering: spectral\n").find("spec.clustering must be kmeans or dbscan"),
      std::string::npos);
  EXPECT_NE(error_of("kind: mmt\noutput_dir: o\n").find("spec.target is required"),
            std::string::npos);
  EXPECT_NE(error_of("kind: mmt\noutput_dir: o\ntarget: {kind: cuhk, root: /d}\n")
                .find("spec.target.kind must be one of"),
            std::string::npos);
  EXPECT_NE(error_of("kind: finetune\noutput_dir: o\n").find("spec.kind must be pretrain, mmt"),
            std::string::npos);
  EXPECT_NE(error_of("kind: evaluate\noutput_dir: o\ntarget: {kind: market1501, root: /d}\n")
                .find("spec.weights is required for evaluate"),
            std::string::npos);
  EXPECT_NE(error_of(base + "backbone_depth: 9\n").find("spec.backbone_depth must be in [1, 8]"),
            std::string::npos);
  EXPECT_NE(error_of(base + "target_bn: maybe\n").find("spec.target_bn must be true or false"),
            std::string::npos);
  EXPECT_NE(
      error_of(base + "eps_every_epoch: 2\n").find("spec.eps_every_epoch must be true or false"),
      std::string::npos);
  EXPECT_TRUE(parse_job_spec(base + "eps_every_epoch: true\n", "job.yaml").eps_every_epoch());
  EXPECT_NE(error_of("[1, 2]").find("a job spec is a mapping"), std::string::npos);
  EXPECT_NE(error_of("kind: [").find("not valid YAML"), std::string::npos);
}

TEST(JobSpec, DevicePrecisionAndLayoutFields) {
  const std::string base = "kind: mmt\noutput_dir: out\ntarget: {kind: market1501, root: /d}\n";
  const v1::JobSpec defaults = parse_job_spec(base, "job.yaml");
  EXPECT_EQ(defaults.device(), "auto");
  EXPECT_EQ(defaults.precision(), "fp32");
  EXPECT_FALSE(defaults.channels_last());
  EXPECT_FALSE(defaults.deterministic());
  const v1::JobSpec gpu = parse_job_spec(
      base + "device: cuda:1\nprecision: bf16\nchannels_last: true\ndeterministic: true\n",
      "job.yaml");
  EXPECT_EQ(gpu.device(), "cuda:1");
  EXPECT_EQ(gpu.precision(), "bf16");
  EXPECT_TRUE(gpu.channels_last());
  EXPECT_TRUE(gpu.deterministic());
  for (const char* device : {"cpu", "cuda", "auto", "cuda:0", "cuda:15"}) {
    EXPECT_EQ(error_of(base + "device: " + device + "\n"), "") << device;
  }
  for (const char* device : {"gpu", "cuda:", "cuda:-1", "cuda:x", "CUDA", "cuda:12345", "mps"}) {
    EXPECT_NE(error_of(base + "device: '" + device + "'\n")
                  .find("spec.device must be auto, cpu, cuda or cuda:N (N a GPU index), got '" +
                        std::string(device) + "'"),
              std::string::npos)
        << device;
  }
  EXPECT_NE(
      error_of(base + "precision: fp16\n").find("spec.precision must be fp32 or bf16, got 'fp16'"),
      std::string::npos);
  EXPECT_NE(error_of(base + "deterministic: sometimes\n")
                .find("spec.deterministic must be true or false"),
            std::string::npos);
  EXPECT_NE(error_of("kind: pretrain\noutput_dir: o\nsource: {kind: market1501, root: /d}\n"
                     "channels_last: true\n")
                .find("spec.channels_last is an mmt setting"),
            std::string::npos);
}

TEST(JobSpec, BatchNormGroupsByKind) {
  // MMT normalises over groups of 16 by default (the reference's images per
  // GPU); every other kind over the whole batch; a spec built in code that
  // gives -1 (what older specs wrote for "the kind's default") gets the same
  // defaults from resolve_job_spec.
  const v1::JobSpec mmt = parse_job_spec(
      "kind: mmt\noutput_dir: out\ntarget: {kind: market1501, root: /data}\n", "job.yaml");
  EXPECT_EQ(mmt.bn_group_size(), 16);
  const v1::JobSpec pretrain = parse_job_spec(
      "kind: pretrain\noutput_dir: out\nsource: {kind: market1501, root: /data}\n", "job.yaml");
  EXPECT_EQ(pretrain.bn_group_size(), 0);
  v1::JobSpec in_code;
  in_code.set_kind("mmt");
  in_code.set_output_dir("out");
  in_code.mutable_source()->set_kind("market1501");
  in_code.mutable_source()->set_root("/data");
  in_code.mutable_target()->set_kind("market1501");
  in_code.mutable_target()->set_root("/data");
  in_code.set_bn_group_size(-1);
  EXPECT_EQ(resolve_job_spec(in_code, "in code").bn_group_size(), 16);
  in_code.set_kind("pretrain");
  EXPECT_EQ(resolve_job_spec(in_code, "in code").bn_group_size(), 0);
  EXPECT_NE(error_of("kind: mmt\noutput_dir: out\ntarget: {kind: market1501, root: /data}\n"
                     "identities: 6\ninstances: 4\n")
                .find("spec.bn_group_size 16 must divide the batch (identities x instances = 24)"),
            std::string::npos);
}

/// A minimal valid spec of `kind`, every optional field left out.
v1::JobSpec minimal_spec(const std::string& kind) {
  v1::JobSpec spec;
  spec.set_kind(kind);
  spec.set_output_dir("out");
  if (is_classification_kind(kind)) {
    spec.mutable_source()->set_kind("fashion_mnist_source");
    spec.mutable_target()->set_kind("fashion_mnist_target");
    return spec;
  }
  if (kind == "pretrain") {
    spec.mutable_source()->set_kind("market1501");
    spec.mutable_source()->set_root("/data");
    return spec;
  }
  spec.mutable_target()->set_kind("market1501");
  spec.mutable_target()->set_root("/data");
  if (kind == "evaluate") spec.set_weights("model.pt");
  return spec;
}

const std::vector<std::string> kKinds = {"pretrain",      "mmt", "evaluate", "source_only",
                                         "self_ensemble", "mcc", "afn"};

TEST(JobSpecDefaults, EveryOptionalFieldGetsAValueForEveryKind) {
  // Each scalar with presence (`optional` in job_spec.proto) is present in a
  // resolved spec, whatever the kind: the job runners read them all. Only
  // world_size, the service's field, stays as given.
  const auto* schema = v1::JobSpec::descriptor();
  for (const std::string& kind : kKinds) {
    SCOPED_TRACE(kind);
    const v1::JobSpec given = minimal_spec(kind);
    const v1::JobSpec resolved = resolve_job_spec(given, "job.yaml");
    const auto* reflection = resolved.GetReflection();
    int optional_fields = 0;
    for (int i = 0; i < schema->field_count(); ++i) {
      const auto* field = schema->field(i);
      if (field->is_repeated() || !field->has_presence() ||
          field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
        continue;
      }
      ++optional_fields;
      EXPECT_FALSE(reflection->HasField(given, field)) << field->name() << " was given";
      if (field->name() == "world_size") {
        EXPECT_FALSE(reflection->HasField(resolved, field)) << "the service's field";
      } else {
        EXPECT_TRUE(reflection->HasField(resolved, field)) << field->name() << " has no default";
      }
    }
    EXPECT_GT(optional_fields, 50) << "job_spec.proto's scalars are `optional`";
    EXPECT_EQ(resolved.milestones_size(), 2);  // the repeated field: [40, 70]
    // What the spec gives is kept.
    EXPECT_EQ(resolved.kind(), kind);
    EXPECT_EQ(resolved.output_dir(), "out");
    EXPECT_EQ(resolved.source().kind(), given.source().kind());
    EXPECT_EQ(resolved.target().kind(), given.target().kind());
    EXPECT_EQ(resolved.weights(), given.weights());
  }
}

TEST(JobSpecDefaults, EveryRowOfTheTableNamesAField) {
  for (const FieldDefault& row : job_spec_defaults()) {
    const std::string field = row.field;
    if (field.rfind("dataset.", 0) == 0) {
      EXPECT_NE(v1::DatasetSpec::descriptor()->FindFieldByName(field.substr(8)), nullptr) << field;
    } else {
      EXPECT_NE(v1::JobSpec::descriptor()->FindFieldByName(field), nullptr) << field;
    }
  }
}

TEST(JobSpecDefaults, KindSpecificRows) {
  std::map<std::string, v1::JobSpec> resolved;
  for (const std::string& kind : kKinds) {
    resolved[kind] = resolve_job_spec(minimal_spec(kind), "job.yaml");
  }
  // epochs x iters: pretrain 80 x 100, mmt and evaluate 40 x 400, the
  // classification kinds 10 x 150.
  EXPECT_EQ(resolved["pretrain"].epochs(), 80);
  EXPECT_EQ(resolved["pretrain"].iters(), 100);
  EXPECT_EQ(resolved["mmt"].epochs(), 40);
  EXPECT_EQ(resolved["mmt"].iters(), 400);
  EXPECT_EQ(resolved["evaluate"].epochs(), 40);
  for (const char* kind : {"source_only", "self_ensemble", "mcc", "afn"}) {
    SCOPED_TRACE(kind);
    const v1::JobSpec& s = resolved[kind];
    EXPECT_EQ(s.epochs(), 10);
    EXPECT_EQ(s.iters(), 150);
    EXPECT_DOUBLE_EQ(s.lr(), 0.01);
    EXPECT_EQ(s.backbone(), "small");
    EXPECT_EQ(s.height(), 32);
    EXPECT_EQ(s.width(), 32);
    EXPECT_EQ(s.bn_group_size(), 0);
    // The data sets' defaults (by layout).
    EXPECT_EQ(s.source().images(), 10000);
    EXPECT_FALSE(s.source().has_shift()) << "a field of the target layout only";
    EXPECT_EQ(s.target().shift(), "standard");
    EXPECT_EQ(s.target().images(), 10000);
    EXPECT_EQ(s.target().test_images(), 2000);
  }
  for (const char* kind : {"pretrain", "mmt", "evaluate"}) {
    SCOPED_TRACE(kind);
    const v1::JobSpec& s = resolved[kind];
    EXPECT_DOUBLE_EQ(s.lr(), 3.5e-4);
    EXPECT_EQ(s.backbone(), "resnet50");
    EXPECT_EQ(s.height(), 256);
    EXPECT_EQ(s.width(), 128);
    EXPECT_FALSE(s.target().has_images()) << "no defaults for a re-ID layout";
    EXPECT_EQ(s.bn_group_size(), std::string(kind) == "mmt" ? 16 : 0);
  }
  // A given value wins over every row; an empty list is the default list
  // (a repeated field has no presence).
  v1::JobSpec given = minimal_spec("mmt");
  given.set_epochs(3);
  given.set_bn_group_size(0);
  given.set_lr(0.5);
  const v1::JobSpec s = resolve_job_spec(given, "job.yaml");
  EXPECT_EQ(s.epochs(), 3);
  EXPECT_EQ(s.bn_group_size(), 0);
  EXPECT_DOUBLE_EQ(s.lr(), 0.5);
  // An empty list would read as absent (repeated fields have no presence),
  // that is as the default: refused, saying so.
  EXPECT_THROW(
      {
        try {
          read_job_spec("kind: mmt\nmilestones: []\n", "job.yaml");
        } catch (const std::invalid_argument& e) {
          EXPECT_NE(std::string(e.what()).find(
                        "job.yaml:2: spec.milestones is an empty list, which reads as the default"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      std::invalid_argument);
}

TEST(JobSpecDefaults, NumbersMustBeFiniteAndSurviveTheRanksCopy) {
  const std::string base = "kind: mmt\noutput_dir: out\ntarget: {kind: market1501, root: /d}\n";
  for (const char* field : {"eps", "weight_decay", "alpha", "warmup_factor", "lr"}) {
    for (const char* value : {".inf", "-.inf", ".nan"}) {
      try {
        parse_job_spec(base + field + ": " + value + "\n", "job.yaml");
        ADD_FAILURE() << field << ": " << value << " was accepted";
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(
            std::string(e.what()).find(std::string("spec.") + field + " must be a finite number"),
            std::string::npos)
            << e.what();
      }
    }
  }
  // What job_spec_json writes for them (protobuf's spellings) reads back.
  v1::JobSpec special;
  special.set_kind("mmt");
  special.set_eps(std::numeric_limits<double>::infinity());
  special.set_lr(-std::numeric_limits<double>::infinity());
  special.set_rho(std::numeric_limits<double>::quiet_NaN());
  const v1::JobSpec back = read_job_spec(job_spec_json(special), "rank-0.spec.json");
  EXPECT_TRUE(std::isinf(back.eps()) && back.eps() > 0);
  EXPECT_TRUE(std::isinf(back.lr()) && back.lr() < 0);
  EXPECT_TRUE(std::isnan(back.rho()));
}

TEST(JobSpecDefaults, IterationsInAllFitTheEventsCounters) {
  const std::string base = "kind: mmt\noutput_dir: out\ntarget: {kind: market1501, root: /d}\n";
  EXPECT_NO_THROW(parse_job_spec(base + "epochs: 1\niters: 2147483647\n", "job.yaml"));
  try {
    parse_job_spec(base + "epochs: 2\niters: 2147483647\n", "job.yaml");
    ADD_FAILURE() << "2 x 2147483647 iterations were accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("spec.iters x epochs must be at most 2147483647"),
              std::string::npos)
        << e.what();
  }
}

TEST(JobSpecDefaults, ADataSetWithAnyFieldGivenIsChecked) {
  // The old parser checked a data set whenever it was given: a list or an
  // image count without a kind is still an error naming the kind.
  for (const char* data : {"{list: x.txt}", "{images: 5}"}) {
    try {
      parse_job_spec(std::string("kind: pretrain\noutput_dir: o\nsource: {kind: market1501, "
                                 "root: /s}\ntarget: ") +
                         data + "\n",
                     "job.yaml");
      ADD_FAILURE() << data << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("spec.target.kind must be one of"), std::string::npos)
          << e.what();
    }
  }
}

TEST(JobSpecDefaults, ResolvingIsIdempotent) {
  for (const std::string& kind : kKinds) {
    SCOPED_TRACE(kind);
    const v1::JobSpec once = resolve_job_spec(minimal_spec(kind), "job.yaml");
    const v1::JobSpec twice = resolve_job_spec(once, "job.yaml");
    EXPECT_TRUE(MessageDifferencer::Equals(once, twice)) << once.ShortDebugString() << "\n"
                                                         << twice.ShortDebugString();
  }
  // A spec with fields given too, the -1 of "the kind's default" among them.
  v1::JobSpec given = minimal_spec("mmt");
  given.set_epochs(3);
  given.add_milestones(2);
  given.set_bn_group_size(-1);
  given.set_clustering("kmeans");
  const v1::JobSpec once = resolve_job_spec(given, "job.yaml");
  EXPECT_TRUE(MessageDifferencer::Equals(once, resolve_job_spec(once, "job.yaml")))
      << once.ShortDebugString();
  EXPECT_EQ(once.epochs(), 3);
  ASSERT_EQ(once.milestones_size(), 1);
  EXPECT_EQ(once.milestones(0), 2);
  EXPECT_EQ(once.bn_group_size(), 16);
}

TEST(JobSpecDefaults, KindsAndDataSets) {
  for (const char* kind : {"source_only", "self_ensemble", "mcc", "afn"}) {
    EXPECT_TRUE(is_classification_kind(kind)) << kind;
  }
  for (const char* kind : {"pretrain", "mmt", "evaluate", "", "dann"}) {
    EXPECT_FALSE(is_classification_kind(kind)) << kind;
  }
  for (const char* kind : {"pretrain", "mmt", "evaluate", "source_only", "afn"}) {
    EXPECT_TRUE(is_job_kind(kind)) << kind;
  }
  for (const char* kind : {"", "dann", "market1501"}) EXPECT_FALSE(is_job_kind(kind)) << kind;
  for (const char* layout :
       {"market1501", "dukemtmc", "msmt17", "msmt17-market-layout", "folder"}) {
    EXPECT_TRUE(is_reid_layout(layout)) << layout;
  }
  for (const char* layout : {"image_list", "fashion_mnist_source", "cuhk", ""}) {
    EXPECT_FALSE(is_reid_layout(layout)) << layout;
  }
  v1::DatasetSpec data;
  EXPECT_FALSE(is_given(data));
  data.set_kind("fashion_mnist_source");
  EXPECT_TRUE(is_given(data));
  data.Clear();
  data.set_root("/data");
  EXPECT_TRUE(is_given(data));
}

TEST(JobSpecDefaults, DefaultForGivesTheRowThatApplies) {
  // What `tandem status` shows as a job's planned epochs, without a copy of
  // the table.
  const auto value = [](const char* field, const char* kind) -> std::string {
    const FieldDefault* row = default_for(field, kind);
    return row == nullptr ? "(none)" : row->value;
  };
  EXPECT_EQ(value("epochs", "pretrain"), "80");
  EXPECT_EQ(value("epochs", "mmt"), "40");
  EXPECT_EQ(value("epochs", "afn"), "10");
  EXPECT_EQ(value("lr", "mcc"), "0.01");
  EXPECT_EQ(value("lr", "mmt"), "3.5e-4");
  EXPECT_EQ(value("bn_group_size", "mmt"), "16");
  EXPECT_EQ(value("bn_group_size", "source_only"), "0");
  EXPECT_EQ(value("epochs", "finetune"), "(none)");
  EXPECT_EQ(value("world_size", "mmt"), "(none)");
  EXPECT_EQ(value("no_such_field", "mmt"), "(none)");
}

// ---------------------------------------------------------------------------
// The classification kinds' fields (source_only, self_ensemble, mcc, afn).

const std::string kFashion =
    "output_dir: out\nsource: {kind: fashion_mnist_source}\ntarget: {kind: fashion_mnist_target}\n";

// A value of the right type for a field of the wire schema.
std::string one_sample_value(const google::protobuf::FieldDescriptor& field) {
  using F = google::protobuf::FieldDescriptor;
  if (field.is_repeated()) return "[1]";
  switch (field.cpp_type()) {
    case F::CPPTYPE_STRING: return "x";
    case F::CPPTYPE_BOOL: return "true";
    case F::CPPTYPE_DOUBLE:
    case F::CPPTYPE_FLOAT: return "0.5";
    case F::CPPTYPE_MESSAGE: return "{kind: market1501, root: /data}";
    default: return "1";
  }
}

TEST(JobSpecSchema, EveryFieldOfTheWireSchemaIsReadAndNoOtherKeyIs) {
  // proto/tandem/v1/job_spec.proto is the schema; parse_job_spec refuses any
  // key it lacks, and this test fails for a schema field that tandem train
  // does not read (only world_size is the service's alone).
  const auto* schema = tandem::v1::JobSpec::descriptor();
  const std::string base = "kind: mmt\noutput_dir: out\ntarget: {kind: market1501, root: /data}\n";
  for (int i = 0; i < schema->field_count(); ++i) {
    const auto& field = *schema->field(i);
    if (field.name() == "kind" || field.name() == "output_dir" || field.name() == "target")
      continue;
    const std::string error = error_of(base + field.name() + ": " + one_sample_value(field) + "\n");
    EXPECT_EQ(error.find("is not a field of a job spec"), std::string::npos) << error;
    if (field.name() == "world_size") {
      EXPECT_NE(error.find("spec.world_size is a field of the service's job spec that tandem "
                           "train does not read"),
                std::string::npos)
          << error;
    } else {
      EXPECT_EQ(error.find("does not read"), std::string::npos) << field.name() << ": " << error;
    }
  }
  const auto* dataset = tandem::v1::DatasetSpec::descriptor();
  for (int i = 0; i < dataset->field_count(); ++i) {
    const std::string error = error_of(
        "kind: mmt\noutput_dir: out\ntarget: {kind: market1501, "
        "root: /data, " +
        dataset->field(i)->name() + ": " + one_sample_value(*dataset->field(i)) + "}\n");
    EXPECT_EQ(error.find("is not a field of a data set"), std::string::npos) << error;
  }
  EXPECT_NE(error_of(base + "identites: 4\n").find("spec.identites is not a field of a job spec"),
            std::string::npos);
}

TEST(ClassificationJobSpec, ReadsEveryFieldAndTheDataSets) {
  const v1::JobSpec s = parse_job_spec(
      "kind: mcc\noutput_dir: o\nsource: {kind: image_list, list: /d/a.txt, root: /d}\n"
      "target: {kind: image_list, list: /d/w.txt, test_list: /d/w_test.txt}\n"
      "height: 64\nwidth: 48\nlr: 0.02\nepochs: 3\niters: 7\nbatch_size: 8\nmomentum: 0.5\n"
      "lr_gamma: 0.002\nlr_decay: 0.5\nbottleneck_dim: 64\naugment_shift: 1\n"
      "augment_flip_probability: 0\naugment_color_jitter: 0.1\naugment_invert_probability: 0.25\n"
      "unsupervised_warmup_iterations: 5\nself_ensemble_alpha: 0.9\n"
      "self_ensemble_confidence_threshold: 0.7\nself_ensemble_consistency_weight: 2\n"
      "self_ensemble_balance_weight: 0.1\nmcc_temperature: 3\nmcc_trade_off: 0.5\n"
      "afn_delta: 0.5\nafn_trade_off: 0.01\nafn_dropout: 0.25\n",
      "job.yaml");
  EXPECT_EQ(s.source().list(), "/d/a.txt");
  EXPECT_EQ(s.source().root(), "/d");
  EXPECT_EQ(s.target().test_list(), "/d/w_test.txt");
  EXPECT_EQ(s.height(), 64);
  EXPECT_EQ(s.width(), 48);
  EXPECT_EQ(s.lr(), 0.02);
  EXPECT_EQ(s.epochs(), 3);
  EXPECT_EQ(s.iters(), 7);
  EXPECT_EQ(s.batch_size(), 8);
  EXPECT_EQ(s.momentum(), 0.5);
  EXPECT_EQ(s.lr_gamma(), 0.002);
  EXPECT_EQ(s.lr_decay(), 0.5);
  EXPECT_EQ(s.bottleneck_dim(), 64);
  EXPECT_EQ(s.augment_shift(), 1);
  EXPECT_EQ(s.augment_flip_probability(), 0.0);
  EXPECT_EQ(s.augment_color_jitter(), 0.1);
  EXPECT_EQ(s.augment_invert_probability(), 0.25);
  EXPECT_EQ(s.unsupervised_warmup_iterations(), 5);
  EXPECT_EQ(s.self_ensemble_alpha(), 0.9);
  EXPECT_EQ(s.self_ensemble_confidence_threshold(), 0.7);
  EXPECT_EQ(s.self_ensemble_consistency_weight(), 2.0);
  EXPECT_EQ(s.self_ensemble_balance_weight(), 0.1);
  EXPECT_EQ(s.mcc_temperature(), 3.0);
  EXPECT_EQ(s.mcc_trade_off(), 0.5);
  EXPECT_EQ(s.afn_delta(), 0.5);
  EXPECT_EQ(s.afn_trade_off(), 0.01);
  EXPECT_EQ(s.afn_dropout(), 0.25);

  const v1::JobSpec f = parse_job_spec(
      "kind: afn\noutput_dir: o\nsource: {kind: fashion_mnist_source, images: 300, root: /f}\n"
      "target: {kind: fashion_mnist_target, images: 200, test_images: 100, shift: hard}\n",
      "job.yaml");
  EXPECT_EQ(f.source().images(), 300);
  EXPECT_EQ(f.source().root(), "/f");
  EXPECT_EQ(f.target().images(), 200);
  EXPECT_EQ(f.target().test_images(), 100);
  EXPECT_EQ(f.target().shift(), "hard");
}

/// One field set to a bad value, and the start of the message it must give
/// (after "job.yaml: spec." or, for a read error, "job.yaml:LINE: spec.").
struct BadField {
  std::string name;
  std::string yaml;
  std::string message;
};

class ClassificationJobSpecField : public ::testing::TestWithParam<BadField> {};

TEST_P(ClassificationJobSpecField, BadValueIsAnErrorNamingTheField) {
  const BadField& c = GetParam();
  const std::string message = error_of("kind: self_ensemble\n" + kFashion + c.yaml);
  EXPECT_TRUE(names_field(message, c.message)) << c.yaml << " gave: " << message;
  // And the field alone, well set, is accepted (the base spec is valid).
  EXPECT_EQ(error_of("kind: self_ensemble\n" + kFashion), "");
}

INSTANTIATE_TEST_SUITE_P(
    EveryField, ClassificationJobSpecField,
    ::testing::Values(
        BadField{"batch_size", "batch_size: 1\n", "batch_size must be >= 2, got 1"},
        BadField{"batch_size_type", "batch_size: many\n",
                 "batch_size must be an integer, got 'many'"},
        BadField{"momentum", "momentum: 1\n", "momentum must be in [0, 1), got 1"},
        BadField{"lr_gamma", "lr_gamma: -0.1\n", "lr_gamma must be >= 0, got -0.1"},
        BadField{"lr_decay", "lr_decay: -1\n", "lr_decay must be >= 0, got -1"},
        BadField{"bottleneck_dim", "bottleneck_dim: 0\n", "bottleneck_dim must be >= 1, got 0"},
        BadField{"augment_shift", "augment_shift: -1\n", "augment_shift must be >= 0, got -1"},
        BadField{"augment_flip_probability", "augment_flip_probability: 1.5\n",
                 "augment_flip_probability must be in [0, 1], got 1.5"},
        BadField{"augment_color_jitter", "augment_color_jitter: 1\n",
                 "augment_color_jitter must be in [0, 1), got 1"},
        BadField{"augment_invert_probability", "augment_invert_probability: -0.5\n",
                 "augment_invert_probability must be in [0, 1], got -0.5"},
        BadField{"unsupervised_warmup_iterations", "unsupervised_warmup_iterations: -3\n",
                 "unsupervised_warmup_iterations must be >= 0, got -3"},
        BadField{"self_ensemble_alpha", "self_ensemble_alpha: 1.5\n",
                 "self_ensemble_alpha must be in [0, 1], got 1.5"},
        BadField{"self_ensemble_confidence_threshold", "self_ensemble_confidence_threshold: 2\n",
                 "self_ensemble_confidence_threshold must be in [0, 1], got 2"},
        BadField{"self_ensemble_consistency_weight", "self_ensemble_consistency_weight: -1\n",
                 "self_ensemble_consistency_weight must be >= 0, got -1"},
        BadField{"self_ensemble_balance_weight", "self_ensemble_balance_weight: -0.01\n",
                 "self_ensemble_balance_weight must be >= 0, got -0.01"},
        BadField{"mcc_temperature", "mcc_temperature: 0\n", "mcc_temperature must be positive"},
        BadField{"mcc_trade_off", "mcc_trade_off: -1\n", "mcc_trade_off must be >= 0, got -1"},
        BadField{"afn_delta", "afn_delta: 0\n", "afn_delta must be positive"},
        BadField{"afn_trade_off", "afn_trade_off: -0.05\n",
                 "afn_trade_off must be >= 0, got -0.05"},
        BadField{"afn_dropout", "afn_dropout: 1\n", "afn_dropout must be in [0, 1), got 1"},
        BadField{"backbone", "backbone: resnet50\n",
                 "backbone must be small for self_ensemble, got 'resnet50'"}),
    [](const ::testing::TestParamInfo<BadField>& info) { return info.param.name; });

/// Data-set fields: a whole spec each (the data sets are the part that varies).
class ClassificationDatasetField : public ::testing::TestWithParam<BadField> {};

TEST_P(ClassificationDatasetField, BadValueIsAnErrorNamingTheField) {
  const BadField& c = GetParam();
  const std::string message = error_of(c.yaml);
  EXPECT_TRUE(names_field(message, c.message)) << c.yaml << " gave: " << message;
}

INSTANTIATE_TEST_SUITE_P(
    EveryField, ClassificationDatasetField,
    ::testing::Values(
        BadField{"list_required",
                 "kind: mcc\noutput_dir: o\nsource: {kind: image_list, root: /d}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.list is required for an image_list data set"},
        BadField{"test_list_required",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source}\n"
                 "target: {kind: image_list, list: /d/t.txt}\n",
                 "target.test_list is required"},
        BadField{"test_list_of_the_source",
                 "kind: mcc\noutput_dir: o\n"
                 "source: {kind: image_list, list: /d/s.txt, test_list: /d/x.txt}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.test_list is a field of the target only"},
        BadField{"list_type",
                 "kind: mcc\noutput_dir: o\nsource: {kind: image_list, list: [a, b]}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.list must be a string"},
        BadField{"shift",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source}\n"
                 "target: {kind: fashion_mnist_target, shift: sideways}\n",
                 "target.shift must be standard or hard, got 'sideways'"},
        BadField{"shift_of_the_source",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source, shift: hard}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.shift is not a field of a fashion_mnist_source data set"},
        BadField{"images",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source, images: 0}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.images must be in [1, 30000], got 0"},
        BadField{"images_too_many",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source}\n"
                 "target: {kind: fashion_mnist_target, images: 30001}\n",
                 "target.images must be in [1, 30000], got 30001"},
        BadField{"test_images",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source}\n"
                 "target: {kind: fashion_mnist_target, test_images: 10001}\n",
                 "target.test_images must be in [1, 10000], got 10001"},
        BadField{"images_of_an_image_list",
                 "kind: mcc\noutput_dir: o\nsource: {kind: image_list, list: /s.txt, images: 5}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.images is not a field of a image_list data set"},
        BadField{"unknown_dataset_field",
                 "kind: mcc\noutput_dir: o\nsource: {kind: fashion_mnist_source, count: 5}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.count is not a field"},
        BadField{"source_required",
                 "kind: afn\noutput_dir: o\ntarget: {kind: fashion_mnist_target}\n",
                 "source is required for afn"},
        BadField{"target_required",
                 "kind: afn\noutput_dir: o\nsource: {kind: fashion_mnist_source}\n",
                 "target is required for afn"},
        BadField{"source_kind",
                 "kind: afn\noutput_dir: o\nsource: {kind: market1501, root: /m}\n"
                 "target: {kind: fashion_mnist_target}\n",
                 "source.kind must be image_list or fashion_mnist_source for afn"},
        BadField{"target_kind",
                 "kind: afn\noutput_dir: o\nsource: {kind: fashion_mnist_source}\n"
                 "target: {kind: fashion_mnist_source}\n",
                 "target.kind must be image_list or fashion_mnist_target for afn"},
        BadField{"reid_kind_rejects_classification_data",
                 "kind: mmt\noutput_dir: o\ntarget: {kind: fashion_mnist_target}\n",
                 "target.kind must be a re-ID layout"},
        BadField{"reid_dataset_rejects_list",
                 "kind: mmt\noutput_dir: o\ntarget: {kind: market1501, root: /m, list: /l}\n",
                 "target.list is not a field of a market1501 data set"},
        BadField{"unknown_kind", "kind: dann\noutput_dir: o\n",
                 "kind must be pretrain, mmt, evaluate, source_only, self_ensemble, mcc or afn"}),
    [](const ::testing::TestParamInfo<BadField>& info) { return info.param.name; });

}  // namespace
}  // namespace tandem::spec
