#include "tandem/jobs/spec_validation.h"

#include <filesystem>
#include <stdexcept>
#include <string>

#include "tandem/spec/job_spec.h"
#include "tandem/worker/data/reid_dataset.h"

namespace tandem::jobs {
namespace {

namespace fs = std::filesystem;

using tandem::v1::DatasetSpec;
using tandem::v1::JobSpec;

absl::Status invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError("spec." + field + ": " + what);
}

absl::Status check_file(const std::string& field, const std::string& path) {
  if (path.empty() || fs::is_regular_file(path)) return absl::OkStatus();
  return invalid(field, path + " does not exist (on the server's file system)");
}

/// Loads a re-ID data set the spec names, mapping its errors to the field.
absl::Status load(const std::string& field, const DatasetSpec& data, worker::ReidDataset& out) {
  if (!fs::is_directory(data.root())) {
    return invalid(field + ".root", data.root() + " is not a folder (on the server's file system)");
  }
  try {
    out = worker::load_reid_dataset(worker::parse_reid_dataset_kind(data.kind()), data.root());
  } catch (const std::exception& error) {
    return invalid(field, error.what());
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status validate_submitted_spec(const tandem::v1::JobSpec& submitted) {
  JobSpec given = submitted;
  if (given.output_dir().empty()) given.set_output_dir("(assigned by the server)");
  JobSpec spec;
  try {
    spec = tandem::spec::resolve_job_spec(given, "submitted job");
  } catch (const std::invalid_argument& error) {
    // "submitted job: spec.lr must be positive, got -1"
    std::string message = error.what();
    const std::string prefix = "submitted job: ";
    if (message.rfind(prefix, 0) == 0) message = message.substr(prefix.size());
    return absl::InvalidArgumentError(message);
  }
  for (const auto& [field, path] : {std::pair<const char*, const std::string&>{"init", spec.init()},
                                    {"init_1", spec.init_1()},
                                    {"init_2", spec.init_2()},
                                    {"weights", spec.weights()}}) {
    if (const absl::Status status = check_file(field, path); !status.ok()) return status;
  }
  if (tandem::spec::is_classification_kind(spec.kind())) {
    for (const auto& [field, data] :
         {std::pair<const char*, const DatasetSpec&>{"source", spec.source()},
          {"target", spec.target()}}) {
      if (data.kind() == "image_list") {
        if (auto s = check_file(std::string(field) + ".list", data.list()); !s.ok()) return s;
        if (auto s = check_file(std::string(field) + ".test_list", data.test_list()); !s.ok())
          return s;
      }
    }
    return absl::OkStatus();
  }
  const int64_t batch = spec.identities() * spec.instances();
  if (tandem::spec::is_given(spec.source()) && tandem::spec::is_reid_layout(spec.source().kind())) {
    worker::ReidDataset source;
    if (auto s = load("source", spec.source(), source); !s.ok()) return s;
    if (spec.kind() == "pretrain" && spec.identities() > source.num_train_ids) {
      return invalid("identities", std::to_string(spec.identities()) +
                                       " identities per batch, but the source has only " +
                                       std::to_string(source.num_train_ids));
    }
  }
  if (tandem::spec::is_given(spec.target()) && tandem::spec::is_reid_layout(spec.target().kind())) {
    worker::ReidDataset target;
    if (auto s = load("target", spec.target(), target); !s.ok()) return s;
    const auto images = static_cast<int64_t>(target.train.size());
    if (spec.kind() == "mmt" && spec.clustering() == "kmeans" && spec.k() > images) {
      return invalid("k", std::to_string(spec.k()) + " clusters, but the target has only " +
                              std::to_string(images) + " train images");
    }
    if (spec.kind() == "mmt" && batch > images) {
      return invalid("identities", std::to_string(spec.identities()) + " x " +
                                       std::to_string(spec.instances()) +
                                       " images per batch, but the target has only " +
                                       std::to_string(images) + " train images");
    }
    if (target.query.empty() || target.gallery.empty()) {
      return invalid("target",
                     spec.target().root() + " has no query or gallery images to evaluate on");
    }
  }
  return absl::OkStatus();
}

}  // namespace tandem::jobs
