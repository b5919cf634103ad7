// cli/spec_proto: job spec files as tandem::v1::JobSpec (YAML -> JSON ->
// protobuf's JSON mapping), checked against the proto's descriptor.
#include "tandem/client/spec_proto.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/run_tandem.h"

namespace tandem::client {
namespace {

namespace testing = ::tandem::cli::testing;

using google::protobuf::util::MessageDifferencer;

std::string error_of(const std::string& yaml) {
  try {
    job_spec_proto_from_yaml(yaml, "job.yaml");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

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
  const v1::JobSpec spec = job_spec_proto_from_yaml(kFullSpec, "job.yaml");
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
  EXPECT_TRUE(MessageDifferencer::Equals(spec, job_spec_proto_from_yaml(json, "job.json")));
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
  const v1::JobSpec spec = job_spec_proto_from_yaml(yaml, "job.yaml");
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
  EXPECT_EQ(error_of("kind: mmt\nidentites: 4\n"),
            "job.yaml:2: spec.identites is not a field of a job spec (did you mean identities?)");
  const std::string nested = error_of("kind: mmt\ntarget: {kind: market1501, rooot: /d}\n");
  EXPECT_NE(nested.find("job.yaml:2: spec.target.rooot is not a field of a data set"),
            std::string::npos)
      << nested;
  const std::string far = error_of("kind: mmt\nbogus_setting: 1\n");
  EXPECT_NE(far.find("spec.bogus_setting is not a field of a job spec"), std::string::npos) << far;
  EXPECT_NE(error_of("kind: mmt\nkind: pretrain\n").find("spec.kind is given twice"),
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
    const std::string error = error_of(yaml + "\n");
    EXPECT_NE(error.find(expected), std::string::npos) << yaml << " -> " << error;
  }
  EXPECT_NE(error_of("[1, 2]").find("job.yaml: a job spec is a mapping of fields"),
            std::string::npos);
  EXPECT_NE(error_of("kind: [").find("job.yaml: not valid YAML or JSON"), std::string::npos);
}

TEST(SpecProto, ScalarsAreTypedByTheirField) {
  // A plain number for a string field is its text; null is absent; YAML's
  // special floats are protobuf JSON's.
  const v1::JobSpec spec =
      job_spec_proto_from_yaml("output_dir: 2024\nepochs: ~\nlr:\neps: .inf\nrho: 1e-3\n", "j");
  EXPECT_EQ(spec.output_dir(), "2024");
  EXPECT_FALSE(spec.has_epochs());
  EXPECT_FALSE(spec.has_lr());
  EXPECT_TRUE(std::isinf(spec.eps()));
  EXPECT_DOUBLE_EQ(spec.rho(), 1e-3);
}

TEST(SpecProto, FromFileNamesTheFile) {
  const std::string path = testing::scratch_path("spec-proto.yaml");
  testing::write_file(path, "kind: pretrain\nidentities: x\n");
  try {
    job_spec_proto_from_file(path);
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2: spec.identities"), std::string::npos)
        << e.what();
  }
  std::filesystem::remove(path);
  EXPECT_THROW(job_spec_proto_from_file(path), std::invalid_argument);
}

/// The job specs the repository ships: *.yaml / *.yml files under deploy/ and
/// docs/ that are job specs (a top-level `kind:`), and the ```yaml blocks of
/// docs/*.md and README.md.
std::vector<std::pair<std::string, std::string>> shipped_specs() {
  namespace fs = std::filesystem;
  const fs::path root = TANDEM_SOURCE_DIR;
  std::vector<std::pair<std::string, std::string>> specs;
  const std::regex top_level_kind("(^|\n)kind:");
  for (const char* folder : {"deploy", "docs"}) {
    if (!fs::exists(root / folder)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root / folder)) {
      const auto ext = entry.path().extension();
      if (!entry.is_regular_file() || (ext != ".yaml" && ext != ".yml")) continue;
      const std::string text = testing::read_file(entry.path().string());
      if (std::regex_search(text, top_level_kind)) specs.emplace_back(entry.path().string(), text);
    }
  }
  std::vector<fs::path> markdown = {root / "README.md"};
  for (const auto& entry : fs::directory_iterator(root / "docs")) {
    if (entry.path().extension() == ".md") markdown.push_back(entry.path());
  }
  for (const auto& path : markdown) {
    std::istringstream in(testing::read_file(path.string()));
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
      const v1::JobSpec spec = job_spec_proto_from_yaml(text, where);
      EXPECT_FALSE(spec.kind().empty()) << where;
      EXPECT_FALSE(spec.output_dir().empty()) << where;
    } catch (const std::invalid_argument& e) {
      ADD_FAILURE() << e.what();
    }
  }
}

}  // namespace
}  // namespace tandem::client
