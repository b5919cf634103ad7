#include "tandem/cli/job_spec.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

namespace tandem::cli {
namespace {

[[noreturn]] void fail(const std::string& where, const std::string& field,
                       const std::string& what) {
  throw std::invalid_argument(where + ": spec." + field + " " + what);
}

template <typename T>
T scalar(const YAML::Node& node, const std::string& where, const std::string& field,
         const char* type) {
  if (!node.IsScalar()) fail(where, field, std::string("must be ") + type);
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    fail(where, field, std::string("must be ") + type + ", got '" + node.Scalar() + "'");
  }
}

DatasetSpec dataset(const YAML::Node& node, const std::string& where, const std::string& field) {
  if (!node.IsMap()) fail(where, field, "must be a mapping {kind: ..., root: ...}");
  DatasetSpec spec;
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    if (key == "kind") {
      spec.kind = scalar<std::string>(entry.second, where, field + ".kind", "a string");
    } else if (key == "root") {
      spec.root = scalar<std::string>(entry.second, where, field + ".root", "a string");
    } else {
      fail(where, field + "." + key, "is not a field (known: kind, root)");
    }
  }
  static const std::set<std::string> kinds = {"market1501", "dukemtmc", "msmt17",
                                              "msmt17-market-layout", "folder"};
  if (!kinds.count(spec.kind)) {
    fail(where, field + ".kind",
         "must be one of market1501, dukemtmc, msmt17, msmt17-market-layout, folder; got '" +
             spec.kind + "'");
  }
  if (spec.root.empty()) fail(where, field + ".root", "is required");
  return spec;
}

void validate(const JobSpec& s, const std::string& where) {
  const auto positive = [&](int64_t v, const char* field) {
    if (v < 1) fail(where, field, "must be >= 1, got " + std::to_string(v));
  };
  if (s.kind != "pretrain" && s.kind != "mmt" && s.kind != "evaluate") {
    fail(where, "kind", "must be pretrain, mmt or evaluate, got '" + s.kind + "'");
  }
  if (s.output_dir.empty()) fail(where, "output_dir", "is required");
  if (s.kind == "pretrain" && s.source.empty()) fail(where, "source", "is required for pretrain");
  if (s.kind == "mmt" && s.target.empty()) fail(where, "target", "is required for mmt");
  if (s.kind == "evaluate" && s.target.empty()) fail(where, "target", "is required for evaluate");
  if (s.kind == "evaluate" && s.weights.empty()) fail(where, "weights", "is required for evaluate");
  static const std::set<std::string> backbones = {"small", "resnet18", "resnet50",
                                                  "resnet50_ibn_a"};
  if (!backbones.count(s.backbone)) {
    fail(where, "backbone",
         "must be small, resnet18, resnet50 or resnet50_ibn_a, got '" + s.backbone + "'");
  }
  positive(s.backbone_width, "backbone_width");
  if (s.backbone_depth < 1 || s.backbone_depth > 8)
    fail(where, "backbone_depth", "must be in [1, 8]");
  positive(s.height, "height");
  positive(s.width, "width");
  if (s.identities < 2)
    fail(where, "identities", "must be >= 2, got " + std::to_string(s.identities));
  if (s.instances < 2) fail(where, "instances", "must be >= 2, got " + std::to_string(s.instances));
  if (!(s.lr > 0)) fail(where, "lr", "must be positive, got " + std::to_string(s.lr));
  if (s.weight_decay < 0) fail(where, "weight_decay", "must be >= 0");
  positive(s.epochs, "epochs");
  positive(s.iters, "iters");
  if (s.alpha < 0 || s.alpha > 1) fail(where, "alpha", "must be in [0, 1]");
  if (s.soft_ce_weight < 0 || s.soft_ce_weight > 1)
    fail(where, "soft_ce_weight", "must be in [0, 1]");
  if (s.soft_triplet_weight < 0 || s.soft_triplet_weight > 1) {
    fail(where, "soft_triplet_weight", "must be in [0, 1]");
  }
  if (s.clustering != "kmeans" && s.clustering != "dbscan") {
    fail(where, "clustering", "must be kmeans or dbscan, got '" + s.clustering + "'");
  }
  positive(s.k, "k");
  if (s.eps < 0) fail(where, "eps", "must be >= 0 (0: adaptive, from rho)");
  if (!(s.rho > 0 && s.rho < 1)) fail(where, "rho", "must be in (0, 1)");
  positive(s.k1, "k1");
  positive(s.k2, "k2");
  positive(s.min_samples, "min_samples");
  if (s.eval_every < 0) fail(where, "eval_every", "must be >= 0");
  positive(s.loader_threads, "loader_threads");
  if (s.kind == "mmt" && (s.init_1.empty() != s.init_2.empty())) {
    fail(where, s.init_1.empty() ? "init_1" : "init_2", "must be given with the other init");
  }
}

}  // namespace

JobSpec parse_job_spec(const std::string& text, const std::string& where) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument(where + ": not valid YAML or JSON: " + e.what());
  }
  if (!root.IsMap()) throw std::invalid_argument(where + ": a job spec is a mapping of fields");
  JobSpec s;
  using Setter = std::function<void(const YAML::Node&, const std::string&)>;
  const auto str = [&](std::string& out) {
    return Setter([&out, &where](const YAML::Node& n, const std::string& f) {
      out = scalar<std::string>(n, where, f, "a string");
    });
  };
  const auto i64 = [&](int64_t& out) {
    return Setter([&out, &where](const YAML::Node& n, const std::string& f) {
      out = scalar<int64_t>(n, where, f, "an integer");
    });
  };
  const auto f64 = [&](double& out) {
    return Setter([&out, &where](const YAML::Node& n, const std::string& f) {
      out = scalar<double>(n, where, f, "a number");
    });
  };
  const auto boolean = [&](bool& out) {
    return Setter([&out, &where](const YAML::Node& n, const std::string& f) {
      out = scalar<bool>(n, where, f, "true or false");
    });
  };
  int64_t seed = static_cast<int64_t>(s.seed);
  bool epochs_set = false, iters_set = false;
  const std::map<std::string, Setter> fields = {
      {"kind", str(s.kind)},
      {"output_dir", str(s.output_dir)},
      {"seed", i64(seed)},
      {"source",
       [&](const YAML::Node& n, const std::string& f) { s.source = dataset(n, where, f); }},
      {"target",
       [&](const YAML::Node& n, const std::string& f) { s.target = dataset(n, where, f); }},
      {"backbone", str(s.backbone)},
      {"backbone_width", i64(s.backbone_width)},
      {"backbone_depth", i64(s.backbone_depth)},
      {"init_1", str(s.init_1)},
      {"init_2", str(s.init_2)},
      {"weights", str(s.weights)},
      {"height", i64(s.height)},
      {"width", i64(s.width)},
      {"identities", i64(s.identities)},
      {"instances", i64(s.instances)},
      {"lr", f64(s.lr)},
      {"weight_decay", f64(s.weight_decay)},
      {"epochs",
       [&](const YAML::Node& n, const std::string& f) {
         s.epochs = scalar<int64_t>(n, where, f, "an integer");
         epochs_set = true;
       }},
      {"iters",
       [&](const YAML::Node& n, const std::string& f) {
         s.iters = scalar<int64_t>(n, where, f, "an integer");
         iters_set = true;
       }},
      {"warmup_epochs", i64(s.warmup_epochs)},
      {"target_bn", boolean(s.target_bn)},
      {"warmup_factor", f64(s.warmup_factor)},
      {"milestones",
       [&](const YAML::Node& n, const std::string& f) {
         if (!n.IsSequence()) fail(where, f, "must be a list of epochs");
         s.milestones.clear();
         for (size_t i = 0; i < n.size(); ++i) {
           s.milestones.push_back(
               scalar<int64_t>(n[i], where, f + "[" + std::to_string(i) + "]", "an integer"));
         }
       }},
      {"alpha", f64(s.alpha)},
      {"soft_ce_weight", f64(s.soft_ce_weight)},
      {"soft_triplet_weight", f64(s.soft_triplet_weight)},
      {"clustering", str(s.clustering)},
      {"k", i64(s.k)},
      {"eps", f64(s.eps)},
      {"rho", f64(s.rho)},
      {"k1", i64(s.k1)},
      {"k2", i64(s.k2)},
      {"min_samples", i64(s.min_samples)},
      {"eval_every", i64(s.eval_every)},
      {"loader_threads", i64(s.loader_threads)},
  };
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>();
    const auto field = fields.find(key);
    if (field == fields.end()) fail(where, key, "is not a field of a job spec");
    field->second(entry.second, key);
  }
  if (seed < 0) fail(where, "seed", "must be >= 0");
  s.seed = static_cast<uint64_t>(seed);
  if (!epochs_set) s.epochs = s.kind == "pretrain" ? 80 : 40;
  if (!iters_set) s.iters = s.kind == "pretrain" ? 100 : 400;
  validate(s, where);
  return s;
}

JobSpec load_job_spec(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path + ": job spec not found");
  std::stringstream text;
  text << in.rdbuf();
  return parse_job_spec(text.str(), path);
}

}  // namespace tandem::cli
