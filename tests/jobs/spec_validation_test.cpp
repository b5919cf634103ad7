// What the server checks before it accepts a job, in process on a tiny
// rendered data set (16 ids: 8 train ids, 3 cameras, 3 images per camera).
#include "tandem/jobs/spec_validation.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tandem/worker/data/synth.h"

namespace tandem::jobs {
namespace {

namespace fs = std::filesystem;
namespace v1 = tandem::v1;

const fs::path& tiny_data() {
  static const fs::path dir = [] {
    const fs::path d =
        fs::temp_directory_path() / ("tandem-spec-validation-" + std::to_string(::getpid()));
    fs::remove_all(d);
    worker::SynthOptions options;
    options.ids = 16;
    options.cameras = 3;
    options.images_per_camera = 3;
    options.height = 32;
    options.width = 16;
    worker::render_market_dataset(d.string(), options);
    return d;
  }();
  return dir;
}

v1::JobSpec mmt() {
  v1::JobSpec spec;
  spec.set_kind("mmt");
  spec.mutable_target()->set_kind("market1501");
  spec.mutable_target()->set_root(tiny_data().string());
  spec.set_identities(4);
  spec.set_instances(4);
  spec.set_clustering("kmeans");
  spec.set_k(8);
  spec.set_world_size(2);  // the service's field, never the ranks'
  return spec;
}

void expect_invalid(const v1::JobSpec& spec, const std::string& field) {
  const absl::Status status = validate_submitted_spec(spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(field), std::string::npos) << status;
}

TEST(SpecValidation, AcceptsAGoodSpecWithoutAnOutputDir) {
  EXPECT_TRUE(validate_submitted_spec(mmt()).ok()) << validate_submitted_spec(mmt());
}

TEST(SpecValidation, NamesTheFieldOfEveryRule) {
  v1::JobSpec spec = mmt();
  spec.set_lr(-1);
  expect_invalid(spec, "spec.lr");

  spec = mmt();
  spec.set_k(1000);
  expect_invalid(spec, "spec.k: 1000 clusters, but the target has only");

  spec = mmt();
  spec.set_identities(64);
  expect_invalid(spec, "spec.identities");

  spec = mmt();
  spec.mutable_target()->set_root((tiny_data() / "nope").string());
  expect_invalid(spec, "spec.target.root");

  spec = mmt();
  spec.set_init_1("/nonexistent/a.pt");
  spec.set_init_2("/nonexistent/b.pt");
  expect_invalid(spec, "spec.init_1");

  spec = mmt();
  spec.set_kind("pretrain");
  *spec.mutable_source() = spec.target();
  spec.set_identities(9);  // 8 train ids
  expect_invalid(spec, "spec.identities: 9 identities per batch, but the source has only 8");

  v1::JobSpec list;
  list.set_kind("source_only");
  list.mutable_source()->set_kind("image_list");
  list.mutable_source()->set_list("/nonexistent/source.txt");
  list.mutable_target()->set_kind("fashion_mnist_target");
  expect_invalid(list, "spec.source.list");
}

}  // namespace
}  // namespace tandem::jobs
