#include "tandem/cli/job_spec.h"

#include <tandem/v1/job_spec.pb.h>

#include <yaml-cpp/yaml.h>

#include <cmath>
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

const std::set<std::string>& reid_dataset_kinds() {
  static const std::set<std::string> kinds = {"market1501", "dukemtmc", "msmt17",
                                              "msmt17-market-layout", "folder"};
  return kinds;
}

// The keys of a spec are the field names of the wire schema,
// proto/tandem/v1/job_spec.proto: a key the proto does not have is refused
// here, so cli::JobSpec can never grow a field the schema lacks
// (tests/cli/train_command_test.cpp checks the other direction).
bool in_schema(const google::protobuf::Descriptor* schema, const std::string& key) {
  return schema->FindFieldByName(key) != nullptr;
}

DatasetSpec dataset(const YAML::Node& node, const std::string& where, const std::string& field) {
  if (!node.IsMap()) fail(where, field, "must be a mapping {kind: ..., root: ...}");
  DatasetSpec spec;
  std::set<std::string> given;
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    const std::string name = field + "." + key;
    if (!in_schema(tandem::v1::DatasetSpec::descriptor(), key)) {
      fail(where, name,
           "is not a field (known: kind, root, list, test_list, shift, images, test_images)");
    }
    if (key == "kind") {
      spec.kind = scalar<std::string>(entry.second, where, name, "a string");
    } else if (key == "root") {
      spec.root = scalar<std::string>(entry.second, where, name, "a string");
    } else if (key == "list") {
      spec.list = scalar<std::string>(entry.second, where, name, "a string");
    } else if (key == "test_list") {
      spec.test_list = scalar<std::string>(entry.second, where, name, "a string");
    } else if (key == "shift") {
      spec.shift = scalar<std::string>(entry.second, where, name, "a string");
    } else if (key == "images") {
      spec.images = scalar<int64_t>(entry.second, where, name, "an integer");
    } else if (key == "test_images") {
      spec.test_images = scalar<int64_t>(entry.second, where, name, "an integer");
    } else {
      fail(where, name,
           "is not a field (known: kind, root, list, test_list, shift, images, test_images)");
    }
    given.insert(key);
  }
  // The fields each kind reads; any other one given is a mistake.
  const auto only = [&](const std::set<std::string>& allowed) {
    for (const std::string& key : given) {
      if (key != "kind" && !allowed.count(key)) {
        fail(where, field + "." + key, "is not a field of a " + spec.kind + " data set");
      }
    }
  };
  if (reid_dataset_kinds().count(spec.kind)) {
    only({"root"});
    if (spec.root.empty()) fail(where, field + ".root", "is required");
  } else if (spec.kind == "image_list") {
    only({"root", "list", "test_list"});
    if (spec.list.empty()) fail(where, field + ".list", "is required for an image_list data set");
  } else if (spec.kind == "fashion_mnist_source") {
    only({"root", "images"});
  } else if (spec.kind == "fashion_mnist_target") {
    only({"root", "images", "test_images", "shift"});
    if (spec.shift != "standard" && spec.shift != "hard") {
      fail(where, field + ".shift", "must be standard or hard, got '" + spec.shift + "'");
    }
    if (spec.test_images < 1 || spec.test_images > 10000) {
      fail(where, field + ".test_images",
           "must be in [1, 10000], got " + std::to_string(spec.test_images));
    }
  } else {
    fail(where, field + ".kind",
         "must be one of market1501, dukemtmc, msmt17, msmt17-market-layout, folder, "
         "image_list, fashion_mnist_source, fashion_mnist_target; got '" +
             spec.kind + "'");
  }
  if (spec.images < 1 || spec.images > 30000) {
    fail(where, field + ".images", "must be in [1, 30000], got " + std::to_string(spec.images));
  }
  return spec;
}

/// The classification kinds' own checks (ranges of ClassificationOptions).
void validate_classification(const JobSpec& s, const std::string& where) {
  if (s.source.empty()) fail(where, "source", "is required for " + s.kind);
  if (s.target.empty()) fail(where, "target", "is required for " + s.kind);
  if (s.source.kind != "image_list" && s.source.kind != "fashion_mnist_source") {
    fail(where, "source.kind",
         "must be image_list or fashion_mnist_source for " + s.kind + ", got '" + s.source.kind +
             "'");
  }
  if (s.target.kind != "image_list" && s.target.kind != "fashion_mnist_target") {
    fail(where, "target.kind",
         "must be image_list or fashion_mnist_target for " + s.kind + ", got '" + s.target.kind +
             "'");
  }
  if (!s.source.test_list.empty()) {
    fail(where, "source.test_list", "is a field of the target only (its held-out test list)");
  }
  if (s.target.kind == "image_list" && s.target.test_list.empty()) {
    fail(where, "target.test_list",
         "is required: the held-out labelled target images the accuracy is measured on");
  }
  if (s.backbone != "small") {
    fail(where, "backbone", "must be small for " + s.kind + ", got '" + s.backbone + "'");
  }
  const auto in = [&](double v, double lo, double hi, bool hi_open, const char* field) {
    if (!(v >= lo && (hi_open ? v < hi : v <= hi))) {
      std::ostringstream range;
      range << "must be in [" << lo << ", " << hi << (hi_open ? ")" : "]") << ", got " << v;
      fail(where, field, range.str());
    }
  };
  const auto at_least = [&](double v, double lo, const char* field) {
    if (!(v >= lo)) {
      std::ostringstream range;
      range << "must be >= " << lo << ", got " << v;
      fail(where, field, range.str());
    }
  };
  const auto positive = [&](double v, const char* field) {
    if (!(v > 0 && std::isfinite(v))) {
      std::ostringstream range;
      range << "must be positive, got " << v;
      fail(where, field, range.str());
    }
  };
  if (s.batch_size < 2)
    fail(where, "batch_size", "must be >= 2, got " + std::to_string(s.batch_size));
  in(s.momentum, 0, 1, true, "momentum");
  at_least(s.lr_gamma, 0, "lr_gamma");
  at_least(s.lr_decay, 0, "lr_decay");
  if (s.bottleneck_dim < 1)
    fail(where, "bottleneck_dim", "must be >= 1, got " + std::to_string(s.bottleneck_dim));
  if (s.augment_shift < 0)
    fail(where, "augment_shift", "must be >= 0, got " + std::to_string(s.augment_shift));
  in(s.augment_flip_probability, 0, 1, false, "augment_flip_probability");
  in(s.augment_color_jitter, 0, 1, true, "augment_color_jitter");
  in(s.augment_invert_probability, 0, 1, false, "augment_invert_probability");
  if (s.unsupervised_warmup_iterations < 0) {
    fail(where, "unsupervised_warmup_iterations",
         "must be >= 0, got " + std::to_string(s.unsupervised_warmup_iterations));
  }
  in(s.self_ensemble_alpha, 0, 1, false, "self_ensemble_alpha");
  in(s.self_ensemble_confidence_threshold, 0, 1, false, "self_ensemble_confidence_threshold");
  at_least(s.self_ensemble_consistency_weight, 0, "self_ensemble_consistency_weight");
  at_least(s.self_ensemble_balance_weight, 0, "self_ensemble_balance_weight");
  positive(s.mcc_temperature, "mcc_temperature");
  at_least(s.mcc_trade_off, 0, "mcc_trade_off");
  positive(s.afn_delta, "afn_delta");
  at_least(s.afn_trade_off, 0, "afn_trade_off");
  in(s.afn_dropout, 0, 1, true, "afn_dropout");
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

void validate(const JobSpec& s, const std::string& where) {
  const auto positive = [&](int64_t v, const char* field) {
    if (v < 1) fail(where, field, "must be >= 1, got " + std::to_string(v));
  };
  if (s.kind != "pretrain" && s.kind != "mmt" && s.kind != "evaluate" &&
      !is_classification_kind(s.kind)) {
    fail(where, "kind",
         "must be pretrain, mmt, evaluate, source_only, self_ensemble, mcc or afn, got '" + s.kind +
             "'");
  }
  if (s.output_dir.empty()) fail(where, "output_dir", "is required");
  if (is_classification_kind(s.kind)) {
    validate_classification(s, where);
  } else {
    for (const auto* d : {&s.source, &s.target}) {
      if (!d->empty() && !reid_dataset_kinds().count(d->kind)) {
        fail(where, std::string(d == &s.source ? "source" : "target") + ".kind",
             "must be a re-ID layout (market1501, dukemtmc, msmt17, msmt17-market-layout, "
             "folder) for " +
                 s.kind + ", got '" + d->kind + "'");
      }
    }
  }
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
  if (!is_device_name(s.device)) {
    fail(where, "device",
         "must be auto, cpu, cuda or cuda:N (N a GPU index), got '" + s.device + "'");
  }
  if (s.precision != "fp32" && s.precision != "bf16") {
    fail(where, "precision", "must be fp32 or bf16, got '" + s.precision + "'");
  }
  if (s.channels_last && s.kind != "mmt") {
    fail(where, "channels_last",
         "is an mmt setting (its two-network step); " + s.kind + " trains in the default layout");
  }
  if (s.bn_group_size < -1) fail(where, "bn_group_size", "must be >= 0 (0: no groups)");
  if (resolved_bn_group_size(s) > 0) {
    const bool classification = is_classification_kind(s.kind);
    const int64_t batch = classification ? s.batch_size : s.identities * s.instances;
    const int64_t group = resolved_bn_group_size(s);
    if (batch > group && batch % group != 0) {
      fail(where, "bn_group_size",
           std::to_string(group) + " must divide the batch (" +
               (classification ? "batch_size" : "identities x instances") + " = " +
               std::to_string(batch) + ")");
    }
  }
  if (s.kind == "mmt" && (s.init_1.empty() != s.init_2.empty())) {
    fail(where, s.init_1.empty() ? "init_1" : "init_2", "must be given with the other init");
  }
}

}  // namespace

int64_t resolved_bn_group_size(const JobSpec& spec) {
  if (spec.bn_group_size >= 0) return spec.bn_group_size;
  return spec.kind == "mmt" ? 16 : 0;  // the reference's 16 images per GPU
}

bool is_classification_kind(const std::string& kind) {
  return kind == "source_only" || kind == "self_ensemble" || kind == "mcc" || kind == "afn";
}

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
      {"init", str(s.init)},
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
      {"eps_every_epoch", boolean(s.eps_every_epoch)},
      {"camera_standardise", boolean(s.camera_standardise)},
      {"k1", i64(s.k1)},
      {"k2", i64(s.k2)},
      {"min_samples", i64(s.min_samples)},
      {"eval_every", i64(s.eval_every)},
      {"loader_threads", i64(s.loader_threads)},
      {"bn_group_size", i64(s.bn_group_size)},
      {"device", str(s.device)},
      {"precision", str(s.precision)},
      {"channels_last", boolean(s.channels_last)},
      {"deterministic", boolean(s.deterministic)},
      {"batch_size", i64(s.batch_size)},
      {"momentum", f64(s.momentum)},
      {"lr_gamma", f64(s.lr_gamma)},
      {"lr_decay", f64(s.lr_decay)},
      {"bottleneck_dim", i64(s.bottleneck_dim)},
      {"augment_shift", i64(s.augment_shift)},
      {"augment_flip_probability", f64(s.augment_flip_probability)},
      {"augment_color_jitter", f64(s.augment_color_jitter)},
      {"augment_invert_probability", f64(s.augment_invert_probability)},
      {"unsupervised_warmup_iterations", i64(s.unsupervised_warmup_iterations)},
      {"self_ensemble_alpha", f64(s.self_ensemble_alpha)},
      {"self_ensemble_confidence_threshold", f64(s.self_ensemble_confidence_threshold)},
      {"self_ensemble_consistency_weight", f64(s.self_ensemble_consistency_weight)},
      {"self_ensemble_balance_weight", f64(s.self_ensemble_balance_weight)},
      {"mcc_temperature", f64(s.mcc_temperature)},
      {"mcc_trade_off", f64(s.mcc_trade_off)},
      {"afn_delta", f64(s.afn_delta)},
      {"afn_trade_off", f64(s.afn_trade_off)},
      {"afn_dropout", f64(s.afn_dropout)},
  };
  std::set<std::string> given;
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>();
    if (!in_schema(tandem::v1::JobSpec::descriptor(), key)) {
      fail(where, key, "is not a field of a job spec");
    }
    const auto field = fields.find(key);
    if (field == fields.end()) {
      fail(where, key, "is a field of the service's job spec that tandem train does not read");
    }
    field->second(entry.second, key);
    given.insert(key);
  }
  if (seed < 0) fail(where, "seed", "must be >= 0");
  s.seed = static_cast<uint64_t>(seed);
  if (is_classification_kind(s.kind)) {
    // The classification trainer's defaults (ClassificationOptions) where
    // they differ from MMT's.
    if (!epochs_set) s.epochs = 10;
    if (!iters_set) s.iters = 150;
    epochs_set = iters_set = true;
    if (!given.count("lr")) s.lr = 0.01;
    if (!given.count("backbone")) s.backbone = "small";
    if (!given.count("height")) s.height = 32;
    if (!given.count("width")) s.width = 32;
  }
  s.bn_group_size = resolved_bn_group_size(s);
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
