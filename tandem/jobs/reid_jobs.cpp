// The re-ID job runners (train_jobs.h) that `tandem train` and the worker's
// ranks run. Kinds: pretrain
// (supervised source training) and mmt (Mutual Mean-Teaching on the target,
// pseudo labels from clustering/). Prints one line per epoch (losses,
// clusters, throughput, mAP / rank-1), appends one JSON object per epoch to
// OUTPUT_DIR/events.jsonl, and writes weights atomically (state dicts Python
// loads): pretrain → model.pt; mmt → teacher_1.pt, teacher_2.pt and best.pt
// (the better teacher at its best evaluation), then the ranking export of
// the final model (pretrain) or of best.pt (mmt): gallery and query
// features (gallery_features.pt, query_features.pt) with their paths
// (gallery.txt, query.txt) and ranking.json naming the weights and the
// model, for the ranking service. After every epoch the full
// state goes to OUTPUT_DIR/checkpoint.pt (atomically); running the same spec
// again resumes after the last finished epoch, bit-identical to a run that
// was never interrupted (all randomness is derived from (seed, epoch)).
#include "tandem/jobs/train_jobs.h"

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include "tandem/clustering/clustering_client.h"
#include "tandem/clustering/evaluation.h"
#include "tandem/clustering/label_agreement.h"
#include "tandem/clustering/pseudo_labels.h"
#include "tandem/jobs/job_progress.h"
#include "tandem/methods/atomic_file.h"
#include "tandem/methods/models/reidentifier.h"
#include "tandem/methods/models/resnet.h"
#include "tandem/methods/models/weights.h"
#include "tandem/methods/serialization.h"
#include "tandem/spec/job_spec.h"
#include "tandem/worker/data/reid_dataset.h"
#include "tandem/worker/device.h"
#include "tandem/worker/distributed.h"
#include "tandem/worker/train/checkpoint.h"
#include "tandem/worker/train/mmt_trainer.h"
#include "tandem/worker/train/pretrain_trainer.h"

namespace tandem::jobs {
namespace {
namespace fs = std::filesystem;
using methods::models::ReIdentifier;

using Parallel = std::shared_ptr<const worker::DataParallel>;

bool is_leader(const Parallel& parallel) {
  return !parallel || parallel->rank() == 0;
}

}  // namespace

c10::Device prepare_job_device(const JobSpec& spec) {
  const int64_t local_rank = worker::distributed_options_from_process_env().local_rank;
  const c10::Device device = worker::resolve_device(spec.device(), local_rank);
  worker::make_current(device);
  worker::configure_backends(spec.deterministic());
  return device;
}

ReIdentifier make_model(const JobSpec& spec, int64_t classes) {
  namespace m = methods::models;
  torch::manual_seed(spec.seed());
  if (spec.backbone() == "small") {
    m::SmallReidNet net(
        m::SmallReidNetOptions().width(spec.backbone_width()).depth(spec.backbone_depth()));
    const int64_t features = net->out_features();
    return ReIdentifier(torch::nn::AnyModule(net), features, classes);
  }
  m::ReidResNet net = spec.backbone() == "resnet18"   ? m::reid_resnet18()
                      : spec.backbone() == "resnet50" ? m::reid_resnet50()
                                                      : m::resnet50_ibn_a();
  const int64_t features = net->out_features();
  return ReIdentifier(torch::nn::AnyModule(net), features, classes);
}

namespace {

struct Split {
  std::shared_ptr<const worker::ImageSource> source;
  torch::Tensor pids, cameras;
  std::vector<int64_t> pid_list, camera_list;
};

Split split_of(const std::vector<worker::ReidSample>& samples) {
  Split split;
  std::vector<std::string> paths;
  for (const auto& sample : samples) {
    paths.push_back(sample.path);
    split.pid_list.push_back(sample.pid);
    split.camera_list.push_back(sample.camera);
  }
  split.source = std::make_shared<worker::FileImageSource>(std::move(paths));
  split.pids = torch::tensor(split.pid_list, torch::kInt64);
  split.cameras = torch::tensor(split.camera_list, torch::kInt64);
  return split;
}

struct Evaluation {
  double map = 0, rank1 = 0, rank5 = 0;
};

/// Every rank embeds its shard of query and gallery (collective).
Evaluation evaluate(ReIdentifier& model, const Split& query, const Split& gallery,
                    const JobSpec& spec, const Parallel& parallel = nullptr) {
  const worker::ImageTransform test(worker::TransformOptions::test(spec.height(), spec.width()));
  const torch::Tensor q = worker::extract_features(model, query.source, test, 64,
                                                   spec.loader_threads(), parallel.get());
  const torch::Tensor g = worker::extract_features(model, gallery.source, test, 64,
                                                   spec.loader_threads(), parallel.get());
  // The distances on the model's device (features come back to the host).
  const auto parameters = model->parameters();
  const torch::Device device =
      parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
  const auto metrics = clustering::evaluate_features(q.to(device), g.to(device), query.pids,
                                                     query.cameras, gallery.pids, gallery.cameras);
  Evaluation out;
  out.map = 100 * metrics.mean_ap;
  out.rank1 = metrics.cmc.empty() ? 0 : 100 * metrics.cmc[0];
  out.rank5 = metrics.cmc.size() > 4 ? 100 * metrics.cmc[4] : out.rank1;
  return out;
}

bool evaluate_now(const JobSpec& spec, int64_t epoch) {
  const bool last = epoch + 1 == spec.epochs();
  return last || (spec.eval_every() > 0 && (epoch + 1) % spec.eval_every() == 0);
}

void save_weights(ReIdentifier& model, const fs::path& path) {
  methods::save_state_dict(methods::models::weights_of(*model), path.string());
}

/// OUTPUT_DIR/checkpoint.pt: the full state after the last finished epoch.
fs::path checkpoint_path(const JobSpec& spec) {
  return fs::path(spec.output_dir()) / "checkpoint.pt";
}

/// The checkpoint to resume from, if the output folder has one of this kind.
std::optional<worker::StateDict> resume_state(const JobSpec& spec, double kind_code) {
  const fs::path path = checkpoint_path(spec);
  if (!fs::exists(path)) return std::nullopt;
  worker::StateDict state = methods::load_state_dict(path.string());
  TORCH_CHECK(worker::get_meta(state, "kind") == kind_code, path.string(),
              " is a checkpoint of another job kind; use a new output_dir");
  return state;
}

/// Writes `text` to `path` atomically and durably (methods::write_file_atomically).
void write_text_atomically(const fs::path& path, const std::string& text) {
  methods::write_file_atomically(path.string(), text);
}

/// One split of the ranking export: the L2-normalised features of `model`
/// with their ids and cameras (OUTPUT_DIR/<name>_features.pt, a torch.save
/// dict features/pids/cameras) and the image paths, one per line, in the
/// same order (OUTPUT_DIR/<name>.txt).
void export_split(ReIdentifier& model, const std::vector<worker::ReidSample>& samples,
                  const JobSpec& spec, const std::string& name) {
  const Split split = split_of(samples);
  const worker::ImageTransform test(worker::TransformOptions::test(spec.height(), spec.width()));
  worker::StateDict state;
  state.insert("features",
               worker::extract_features(model, split.source, test, 64, spec.loader_threads()));
  state.insert("pids", split.pids);
  state.insert("cameras", split.cameras);
  methods::save_state_dict(state, (fs::path(spec.output_dir()) / (name + "_features.pt")).string());
  std::string list;
  for (const auto& sample : samples) list += sample.path + "\n";
  write_text_atomically(fs::path(spec.output_dir()) / (name + ".txt"), list);
}

/// Export for the ranking service (server/ranking_index.h,
/// jobs/image_embedder.h): the gallery (gallery_features.pt, gallery.txt) and
/// the query set (query_features.pt, query.txt) of `data` embedded with
/// `model`, then OUTPUT_DIR/ranking.json naming `weights` (the file `model`'s
/// weights are, relative to OUTPUT_DIR when inside it) and what rebuilds the
/// model (backbone, widths, seed, input size). ranking.json is removed first
/// and written last: it marks a complete export.
void export_ranking(ReIdentifier& model, const worker::ReidDataset& data, const JobSpec& spec,
                    const fs::path& weights) {
  const fs::path marker = fs::path(spec.output_dir()) / "ranking.json";
  fs::remove(marker);
  export_split(model, data.gallery, spec, "gallery");
  export_split(model, data.query, spec, "query");
  const fs::path dir = fs::absolute(spec.output_dir()).lexically_normal();
  const fs::path absolute = fs::absolute(weights).lexically_normal();
  const fs::path relative = absolute.lexically_relative(dir);
  const bool inside = !relative.empty() && *relative.begin() != "..";
  const nlohmann::ordered_json ranking = {{"kind", spec.kind()},
                                          {"dataset", data.root},
                                          {"weights", (inside ? relative : absolute).string()},
                                          {"backbone", spec.backbone()},
                                          {"backbone_width", spec.backbone_width()},
                                          {"backbone_depth", spec.backbone_depth()},
                                          {"seed", spec.seed()},
                                          {"height", spec.height()},
                                          {"width", spec.width()},
                                          {"gallery", "gallery_features.pt"},
                                          {"gallery_paths", "gallery.txt"},
                                          {"query", "query_features.pt"},
                                          {"query_paths", "query.txt"}};
  write_text_atomically(marker, ranking.dump(2) + "\n");
}

worker::TransformOptions train_transform(const JobSpec& spec) {
  worker::TransformOptions options = worker::TransformOptions::train(spec.height(), spec.width());
  // Pad 10 of 256 × 128 scaled to the input size (at least 1 pixel).
  options.pad = std::max<int64_t>(1, spec.height() * 10 / 256);
  return options;
}

}  // namespace

JobResult pretrain_job(const JobSpec& spec, bool quiet, const Parallel& parallel) {
  const c10::Device device = prepare_job_device(spec);
  JobResult result;
  fs::create_directories(spec.output_dir());
  const bool leader = is_leader(parallel);
  quiet = quiet || !leader;
  std::ostream null_stream(nullptr);
  std::ostream& log = leader ? std::cout : null_stream;
  const auto source = worker::load_reid_dataset(
      worker::parse_reid_dataset_kind(spec.source().kind()), spec.source().root());
  const Split train = split_of(source.train);
  std::optional<worker::ReidDataset> target;
  if (tandem::spec::is_given(spec.target())) {
    target = worker::load_reid_dataset(worker::parse_reid_dataset_kind(spec.target().kind()),
                                       spec.target().root());
  }
  const auto& eval_data = target ? *target : source;
  const Split query = split_of(eval_data.query), gallery = split_of(eval_data.gallery);
  worker::PretrainOptions options;
  options.epochs = spec.epochs();
  options.iters = spec.iters();
  options.num_identities = spec.identities();
  options.num_instances = spec.instances();
  options.lr = spec.lr();
  options.weight_decay = spec.weight_decay();
  options.warmup_epochs = spec.warmup_epochs();
  options.warmup_factor = spec.warmup_factor();
  options.milestones.assign(spec.milestones().begin(), spec.milestones().end());
  options.train_transform = train_transform(spec);
  options.loader_threads = spec.loader_threads();
  options.seed = spec.seed();
  options.bn_group_size = spec.bn_group_size();
  options.data_parallel = parallel;
  options.device = device;
  options.bf16 = spec.precision() == "bf16";
  EventLog events = leader ? EventLog(fs::path(spec.output_dir()) / "events.jsonl") : EventLog();
  JobProgress progress(spec, events, quiet);
  options.on_iteration = [&progress](const worker::IterationProgress& p) { progress(p); };
  ReIdentifier initial = make_model(spec, source.num_train_ids);
  if (!spec.init().empty()) {
    auto weights = methods::load_state_dict(spec.init());
    weights.erase("head.weight");  // the source's classes are new
    const auto report = methods::models::load_weights(*initial, weights);
    TORCH_CHECK(!report.loaded.empty(), spec.init(), ": no weight matches the ", spec.backbone(),
                " backbone of the spec (", report.summary(), ")");
    log << "tandem train: " << spec.init() << ": " << report.summary() << std::endl;
  }
  worker::PretrainTrainer trainer(initial, train.source, train.pid_list, train.camera_list,
                                  options);
  // The target's train images, unlabelled, for BatchNorm's statistics (not
  // when the "target" is the source itself, as for an oracle).
  if (spec.target_bn() && target &&
      fs::weakly_canonical(spec.target().root()) != fs::weakly_canonical(spec.source().root())) {
    trainer.set_target_bn_source(split_of(target->train).source);
  }
  int64_t first_epoch = 0;
  if (const auto state = resume_state(spec, 0)) {
    worker::load_module_state(*trainer.model(), *state, "model");
    worker::load_adam_state(trainer.optimizer(), *state, "adam");
    first_epoch = static_cast<int64_t>(worker::get_meta(*state, "epoch"));
    trainer.synchronise();
    log << "tandem train: resuming from " << checkpoint_path(spec).string() << " after epoch "
        << first_epoch << std::endl;
  }
  log << "tandem train: pretrain on " << source.root << " (" << source.train.size() << " images, "
      << source.num_train_ids << " ids), " << spec.epochs() << " epochs x " << spec.iters()
      << " iterations, evaluated on " << (target ? "the target " : "the source ") << eval_data.root
      << std::endl;
  for (int64_t epoch = first_epoch; epoch < spec.epochs(); ++epoch) {
    events.phase("train", epoch);
    const auto stats = trainer.train_epoch(epoch);
    RankEvent event;
    event.set_event("epoch");
    event.set_kind("pretrain");
    event.set_epoch(static_cast<int32_t>(epoch));
    event.set_lr(stats.lr);
    event.set_ce(stats.ce);
    event.set_triplet(stats.triplet);
    event.set_train_accuracy(stats.train_accuracy);
    event.set_images_per_second(stats.train_images_per_second);
    std::ostringstream line;
    line << std::fixed << std::setprecision(3) << "epoch " << epoch + 1 << "/" << spec.epochs()
         << "  lr " << std::setprecision(6) << stats.lr << std::setprecision(3) << "  ce "
         << stats.ce << "  triplet " << stats.triplet << "  train acc "
         << 100 * stats.train_accuracy << "%  " << std::setprecision(0)
         << stats.train_images_per_second << " img/s";
    if (evaluate_now(spec, epoch)) {
      events.phase("evaluate", epoch);
      const Evaluation e = evaluate(trainer.model(), query, gallery, spec, parallel);
      result = {e.map, e.rank1};
      event.add_map(e.map);
      event.add_rank1(e.rank1);
      event.add_rank5(e.rank5);
      line << std::setprecision(1) << "  mAP " << e.map << "  rank-1 " << e.rank1;
    }
    if (!leader) continue;  // rank 0 writes the output folder
    events.phase("checkpoint", epoch);
    save_weights(trainer.model(), fs::path(spec.output_dir()) / "model.pt");
    worker::StateDict state;
    worker::set_meta(state, "kind", 0);
    worker::set_meta(state, "epoch", static_cast<double>(epoch + 1));
    worker::add_module_state(state, "model", *trainer.model());
    worker::add_adam_state(state, "adam", trainer.optimizer());
    // The epoch's event before its checkpoint: a job killed in between
    // trains the epoch again (its event comes twice, the later one counts)
    // instead of losing it.
    event.set_checkpoint(checkpoint_path(spec).string());
    events.write(event);
    methods::save_state_dict(state, checkpoint_path(spec).string());  // atomic
    if (!quiet) std::cout << line.str() << std::endl;
  }
  if (!leader) return result;
  // The target's query/gallery, or the source's when the job has no target
  // (what it was evaluated on).
  export_ranking(trainer.model(), eval_data, spec, fs::path(spec.output_dir()) / "model.pt");
  std::cout << "tandem train: wrote " << (fs::path(spec.output_dir()) / "model.pt").string()
            << " and the ranking export of " << eval_data.root << std::endl;
  return result;
}

JobResult mmt_job(const JobSpec& spec, bool quiet, const Parallel& parallel,
                  const std::string& clustering_service) {
  const c10::Device device = prepare_job_device(spec);
  JobResult result;
  fs::create_directories(spec.output_dir());
  const bool leader = is_leader(parallel);
  quiet = quiet || !leader;
  std::ostream null_stream(nullptr);
  std::ostream& log = leader ? std::cout : null_stream;
  const auto target = worker::load_reid_dataset(
      worker::parse_reid_dataset_kind(spec.target().kind()), spec.target().root());
  const Split train = split_of(target.train), query = split_of(target.query),
              gallery = split_of(target.gallery);
  // Two differently initialised models: the pretrain jobs' weights (head
  // rows are replaced by the centroids every epoch anyway).
  std::vector<ReIdentifier> models;
  for (const std::string* init : {&spec.init_1(), &spec.init_2()}) {
    JobSpec seeded = spec;
    seeded.set_seed(spec.seed() + models.size());
    ReIdentifier model = make_model(seeded, 1);
    if (!init->empty()) {
      const auto report = methods::models::load_weights(*model, methods::load_state_dict(*init));
      log << "tandem train: " << *init << ": " << report.summary() << std::endl;
    }
    models.push_back(model);
  }
  clustering::PseudoLabelOptions cluster_options;
  if (spec.clustering() == "kmeans") {
    cluster_options.algorithm = clustering::PseudoLabelOptions::Algorithm::kKMeans;
    cluster_options.kmeans.k = spec.k();
    cluster_options.kmeans.seed = static_cast<int>(spec.seed());
  } else {
    cluster_options.algorithm = clustering::PseudoLabelOptions::Algorithm::kDbscan;
    cluster_options.jaccard.k1 = spec.k1();
    cluster_options.jaccard.k2 = spec.k2();
    cluster_options.dbscan.min_samples = spec.min_samples();
    if (spec.eps() > 0) {
      cluster_options.rho = std::nullopt;
      cluster_options.dbscan.eps = spec.eps();
    } else {
      cluster_options.rho = spec.rho();  // MMT's adaptive eps
    }
  }
  // MMT computes the adaptive eps at epoch 0 only and reuses it
  // (spec.eps_every_epoch: recomputed from each epoch's features instead).
  auto fixed_eps = std::make_shared<double>(0.0);
  const bool eps_every_epoch = spec.eps_every_epoch();
  // Agreement with the data set's own train ids (never used for training):
  // tells a user on a labelled benchmark how good the pseudo labels are.
  auto agreement = std::make_shared<clustering::LabelAgreement>();
  const torch::Tensor true_ids = train.pids;
  // spec.camera_standardise: cluster the features with each camera's style
  // removed; the heads start from the raw features' cluster means.
  const torch::Tensor cameras = spec.camera_standardise() ? train.cameras : torch::Tensor();
  // With a clustering service (`tandem cluster`), rank 0 sends it the
  // features instead of clustering in this process (the same computation).
  clustering::ClusteringClientOptions service;
  service.target = clustering_service;
  service.job_id = spec.output_dir();
  const auto pseudo_labels = [cluster_options, fixed_eps, agreement, true_ids, eps_every_epoch,
                              cameras, service](const torch::Tensor& features, int64_t) mutable {
    clustering::PseudoLabelOptions options = cluster_options;
    if (*fixed_eps > 0 && !eps_every_epoch) {
      options.rho = std::nullopt;
      options.dbscan.eps = *fixed_eps;
    }
    const torch::Tensor input =
        cameras.defined() ? clustering::standardise_per_camera(features, cameras) : features;
    auto result = service.target.empty() ? clustering::pseudo_labels(input, options)
                                         : clustering::cluster_remote(input, options, service);
    if (cameras.defined()) {
      result.centroids =
          clustering::cluster_means(features, result.labels, result.centroids.size(0));
    }
    if (options.algorithm == clustering::PseudoLabelOptions::Algorithm::kDbscan)
      *fixed_eps = result.eps;
    *agreement = clustering::label_agreement(result.labels, true_ids);
    worker::PseudoLabels out;
    out.labels = result.labels;
    out.centroids = result.centroids;
    out.eps = result.eps;
    return out;
  };
  worker::MmtOptions options;
  options.epochs = spec.epochs();
  options.iters = spec.iters();
  options.num_identities = spec.identities();
  options.num_instances = spec.instances();
  options.lr = spec.lr();
  options.weight_decay = spec.weight_decay();
  options.alpha = spec.alpha();
  options.soft_ce_weight = spec.soft_ce_weight();
  options.soft_triplet_weight = spec.soft_triplet_weight();
  options.train_transform = train_transform(spec);
  options.loader_threads = spec.loader_threads();
  options.seed = spec.seed();
  options.bn_group_size = spec.bn_group_size();
  options.data_parallel = parallel;
  options.device = device;
  options.bf16 = spec.precision() == "bf16";
  options.channels_last = spec.channels_last();
  EventLog events = leader ? EventLog(fs::path(spec.output_dir()) / "events.jsonl") : EventLog();
  JobProgress progress(spec, events, quiet);
  options.on_iteration = [&progress](const worker::IterationProgress& p) { progress(p); };
  options.on_phase = [&events](const std::string& phase, int64_t epoch) {
    events.phase(phase, epoch);
  };
  worker::MmtTrainer trainer(models[0], models[1], train.source, train.camera_list, options,
                             pseudo_labels);
  int64_t first_epoch = 0;
  double best_map = -1;
  if (const auto state = resume_state(spec, 1)) {
    // Heads have the saved number of clusters; make room, then copy all.
    const torch::Tensor head = worker::state_entry(*state, "student_1.head.weight").to(device);
    for (int which : {0, 1}) {
      trainer.student(which)->reset_classifier(torch::zeros_like(head));
      trainer.teacher(which).module()->reset_classifier(torch::zeros_like(head));
      const std::string n = std::to_string(which + 1);
      worker::load_module_state(*trainer.student(which), *state, "student_" + n);
      worker::load_module_state(*trainer.teacher(which).module(), *state, "teacher_" + n);
      trainer.teacher(which).set_step(static_cast<int64_t>(worker::get_meta(*state, "step_" + n)));
    }
    first_epoch = static_cast<int64_t>(worker::get_meta(*state, "epoch"));
    *fixed_eps = worker::get_meta(*state, "eps");
    best_map = worker::get_meta(*state, "best_map");
    trainer.synchronise();
    log << "tandem train: resuming from " << checkpoint_path(spec).string() << " after epoch "
        << first_epoch << std::endl;
  }
  log << "tandem train: mmt on " << target.root << " (" << target.train.size()
      << " unlabelled images), " << spec.clustering() << ", " << spec.epochs() << " epochs x "
      << spec.iters() << " iterations";
  if (parallel) log << ", " << parallel->world_size() << " ranks";
  log << std::endl;
  for (int64_t epoch = first_epoch; epoch < spec.epochs(); ++epoch) {
    const auto stats = trainer.train_epoch(epoch);
    RankEvent event;
    event.set_event("epoch");
    event.set_kind("mmt");
    event.set_epoch(static_cast<int32_t>(epoch));
    event.set_clusters(static_cast<int32_t>(stats.clusters));
    event.set_noise(static_cast<int32_t>(stats.noise));
    event.set_eps(stats.eps);
    auto* agreement_of_labels = event.mutable_pseudo_labels();
    agreement_of_labels->set_pair_precision(agreement->pair_precision);
    agreement_of_labels->set_pair_recall(agreement->pair_recall);
    agreement_of_labels->set_adjusted_rand(agreement->adjusted_rand);
    event.set_ce(stats.losses.ce);
    event.set_triplet(stats.losses.triplet);
    event.set_soft_ce(stats.losses.soft_ce);
    event.set_soft_triplet(stats.losses.soft_triplet);
    event.set_loss(stats.losses.total);
    event.set_images_per_second(stats.train_images_per_second);
    if (stats.world_size > 1) {
      const auto& c = stats.communication;
      event.set_world_size(static_cast<int32_t>(stats.world_size));
      auto* communication = event.mutable_communication();
      communication->set_backward_passes(static_cast<int32_t>(c.backward_passes));
      communication->set_bytes(static_cast<int64_t>(c.bytes));
      communication->set_backward_seconds(c.backward_seconds);
      communication->set_communication_seconds(c.communication_seconds);
      communication->set_overlapped_seconds(c.overlapped_seconds);
    }
    std::ostringstream line;
    line << std::fixed << std::setprecision(3) << "epoch " << epoch + 1 << "/" << spec.epochs()
         << "  clusters " << stats.clusters << " (noise " << stats.noise << ", ARI "
         << std::setprecision(2) << agreement->adjusted_rand << std::setprecision(3) << ")  ce "
         << stats.losses.ce << "  tri " << stats.losses.triplet << "  soft ce "
         << stats.losses.soft_ce << "  soft tri " << stats.losses.soft_triplet << "  "
         << std::setprecision(0) << stats.train_images_per_second << " img/s";
    if (leader) {
      save_weights(trainer.teacher(0).module(), fs::path(spec.output_dir()) / "teacher_1.pt");
      save_weights(trainer.teacher(1).module(), fs::path(spec.output_dir()) / "teacher_2.pt");
    }
    if (evaluate_now(spec, epoch)) {
      events.phase("evaluate", epoch);
      const Evaluation e1 = evaluate(trainer.teacher(0).module(), query, gallery, spec, parallel);
      const Evaluation e2 = evaluate(trainer.teacher(1).module(), query, gallery, spec, parallel);
      const bool first = e1.map >= e2.map;
      const Evaluation& best = first ? e1 : e2;
      for (const Evaluation* e : {&e1, &e2}) {
        event.add_map(e->map);
        event.add_rank1(e->rank1);
        event.add_rank5(e->rank5);
      }
      line << std::setprecision(1) << "  mAP " << e1.map << " / " << e2.map << "  rank-1 "
           << e1.rank1 << " / " << e2.rank1;
      if (best.map > best_map) {
        best_map = best.map;
        result = {best.map, best.rank1};
        if (leader) {
          save_weights(trainer.teacher(first ? 0 : 1).module(),
                       fs::path(spec.output_dir()) / "best.pt");
        }
        event.set_best(true);
        line << "  (best)";
      }
    }
    if (!leader) continue;  // rank 0 writes the output folder
    events.phase("checkpoint", epoch);
    worker::StateDict state;
    worker::set_meta(state, "kind", 1);
    worker::set_meta(state, "epoch", static_cast<double>(epoch + 1));
    worker::set_meta(state, "eps", *fixed_eps);
    worker::set_meta(state, "best_map", best_map);
    for (int which : {0, 1}) {
      const std::string n = std::to_string(which + 1);
      worker::add_module_state(state, "student_" + n, *trainer.student(which));
      worker::add_module_state(state, "teacher_" + n, *trainer.teacher(which).module());
      worker::set_meta(state, "step_" + n, static_cast<double>(trainer.teacher(which).step()));
    }
    // The epoch's event before its checkpoint: a job killed in between
    // trains the epoch again (its event comes twice, the later one counts)
    // instead of losing it.
    event.set_checkpoint(checkpoint_path(spec).string());
    events.write(event);
    methods::save_state_dict(state, checkpoint_path(spec).string());  // atomic
    if (!quiet) std::cout << line.str() << std::endl;
  }
  if (!leader) return result;
  // Export the best teacher (MMT's model selection) with its gallery features.
  ReIdentifier best(std::dynamic_pointer_cast<methods::models::ReIdentifierImpl>(
      trainer.teacher(0).module()->clone()));
  const fs::path best_path = fs::path(spec.output_dir()) / "best.pt";
  if (fs::exists(best_path)) {
    const auto saved = methods::load_state_dict(best_path.string());
    best->reset_classifier(torch::zeros_like(worker::state_entry(saved, "head.weight")).to(device));
    methods::models::load_weights(*best, saved);
  }
  // best.pt; teacher_1.pt (the teacher exported) should there be no best.pt.
  export_ranking(best, target, spec,
                 fs::exists(best_path) ? best_path : fs::path(spec.output_dir()) / "teacher_1.pt");
  std::cout << "tandem train: best mAP " << std::fixed << std::setprecision(1) << best_map
            << ", weights and the ranking export in " << spec.output_dir() << std::endl;
  return result;
}

JobResult evaluate_job(const JobSpec& spec, bool quiet, const Parallel& parallel) {
  const c10::Device device = prepare_job_device(spec);
  fs::create_directories(spec.output_dir());
  const auto target = worker::load_reid_dataset(
      worker::parse_reid_dataset_kind(spec.target().kind()), spec.target().root());
  const Split query = split_of(target.query), gallery = split_of(target.gallery);
  ReIdentifier model = make_model(spec, 1);
  // The head is not used (retrieval ranks neck features): load by key
  // intersection and say what was left out.
  const auto report =
      methods::models::load_weights(*model, methods::load_state_dict(spec.weights()));
  TORCH_CHECK(!report.loaded.empty(), spec.weights(), ": no weight matches the ", spec.backbone(),
              " backbone of the spec (", report.summary(), ")");
  model->to(device);  // features are embedded there (extract_features follows the model)
  const Evaluation e = evaluate(model, query, gallery, spec, parallel);
  if (!is_leader(parallel)) return {e.map, e.rank1};
  std::cout << "tandem train: " << spec.weights() << ": " << report.summary() << std::endl;
  const nlohmann::ordered_json metrics = {{"event", "evaluation"},
                                          {"kind", "evaluate"},
                                          {"weights", spec.weights()},
                                          {"target", spec.target().root()},
                                          {"mAP", e.map},
                                          {"rank1", e.rank1},
                                          {"rank5", e.rank5}};
  RankEvent event;
  event.set_event("evaluation");
  event.set_kind("evaluate");
  event.set_weights(spec.weights());
  event.set_target(spec.target().root());
  event.add_map(e.map);
  event.add_rank1(e.rank1);
  event.add_rank5(e.rank5);
  EventLog(fs::path(spec.output_dir()) / "events.jsonl").write(event);
  const fs::path metrics_path = fs::path(spec.output_dir()) / "metrics.json";
  write_text_atomically(metrics_path, metrics.dump(2) + "\n");
  export_ranking(model, target, spec, spec.weights());
  if (!quiet) {
    std::cout << "tandem train: " << target.root << ": mAP " << std::fixed << std::setprecision(1)
              << e.map << "  rank-1 " << e.rank1 << "  rank-5 " << e.rank5 << " ("
              << metrics_path.string() << ")" << std::endl;
  }
  return {e.map, e.rank1};
}

double rho_for_target(int64_t train_images) {
  constexpr double kMarketTrainImages = 12936.0;  // what MMT's rho was chosen on
  const tandem::spec::FieldDefault* rho = tandem::spec::default_for("rho", "mmt");
  TORCH_CHECK(rho != nullptr, "the defaults table has no rho for mmt");
  TORCH_CHECK(train_images > 0, "rho_for_target: train_images must be positive, got ",
              train_images);
  return std::min(0.5,
                  std::stod(rho->value) * kMarketTrainImages / static_cast<double>(train_images));
}

void run_job(const JobSpec& spec, bool quiet, const Parallel& parallel,
             const std::string& clustering_service) {
  if (tandem::spec::is_classification_kind(spec.kind())) {
    classification_job(spec, quiet, parallel);
  } else if (spec.kind() == "pretrain") {
    pretrain_job(spec, quiet, parallel);
  } else if (spec.kind() == "evaluate") {
    evaluate_job(spec, quiet, parallel);
  } else {
    mmt_job(spec, quiet, parallel, clustering_service);
  }
}

}  // namespace tandem::jobs
