#include "tandem/worker/train/mmt_trainer.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <chrono>

#include "tandem/worker/data/sampler.h"
#include "tandem/worker/train/group_batch_norm.h"

namespace tandem::worker {

void MmtOptions::validate() const {
  TORCH_CHECK(epochs >= 1, "MmtOptions.epochs must be >= 1, got ", epochs);
  TORCH_CHECK(iters >= 1, "MmtOptions.iters must be >= 1, got ", iters);
  TORCH_CHECK(num_identities >= 2, "MmtOptions.num_identities must be >= 2 (triplets need ",
              "negatives), got ", num_identities);
  TORCH_CHECK(num_instances >= 2, "MmtOptions.num_instances must be >= 2 (triplets need ",
              "positives), got ", num_instances);
  TORCH_CHECK(lr > 0, "MmtOptions.lr must be positive, got ", lr);
  TORCH_CHECK(weight_decay >= 0, "MmtOptions.weight_decay must be >= 0, got ", weight_decay);
  TORCH_CHECK(alpha >= 0 && alpha <= 1, "MmtOptions.alpha must be in [0, 1], got ", alpha);
  TORCH_CHECK(soft_ce_weight >= 0 && soft_ce_weight <= 1,
              "MmtOptions.soft_ce_weight must be in [0, 1], got ", soft_ce_weight);
  TORCH_CHECK(soft_triplet_weight >= 0 && soft_triplet_weight <= 1,
              "MmtOptions.soft_triplet_weight must be in [0, 1], got ", soft_triplet_weight);
  TORCH_CHECK(label_smoothing >= 0 && label_smoothing < 1,
              "MmtOptions.label_smoothing must be in [0, 1), got ", label_smoothing);
  TORCH_CHECK(loader_threads >= 1, "MmtOptions.loader_threads must be >= 1, got ", loader_threads);
  TORCH_CHECK(extract_batch >= 1, "MmtOptions.extract_batch must be >= 1, got ", extract_batch);
  validate_batch_split("MmtOptions", num_identities * num_instances,
                       data_parallel ? data_parallel->world_size() : 1, bn_group_size);
  train_transform.validate();
}

namespace {

// Images [begin, end) of another source: one rank's shard.
class SliceSource : public ImageSource {
 public:
  SliceSource(std::shared_ptr<const ImageSource> source, Shard shard)
      : source_(std::move(source)), shard_(shard) {}
  int64_t size() const override { return shard_.size(); }
  Image load(int64_t index) const override { return source_->load(shard_.begin + index); }
  std::string name(int64_t index) const override { return source_->name(shard_.begin + index); }

 private:
  std::shared_ptr<const ImageSource> source_;
  Shard shard_;
};

}  // namespace

torch::Tensor extract_features(methods::models::ReIdentifier& model,
                               const std::shared_ptr<const ImageSource>& source,
                               const ImageTransform& transform, int64_t batch_size, int64_t threads,
                               const DataParallel* parallel) {
  if (parallel != nullptr && parallel->world_size() > 1) {
    const int world = parallel->world_size();
    std::vector<int64_t> rows;
    for (int r = 0; r < world; ++r) rows.push_back(shard_of(source->size(), r, world).size());
    const Shard mine = shard_of(source->size(), parallel->rank(), world);
    TORCH_CHECK(mine.size() > 0, "extract_features: ", source->size(), " images for ", world,
                " ranks leave rank ", parallel->rank(), " none");
    const torch::Tensor local = extract_features(model, std::make_shared<SliceSource>(source, mine),
                                                 transform, batch_size, threads);
    // Gathered on the model's device: NCCL serves GPU ranks' tensors (a
    // build without Gloo has no CPU collectives), Gloo CPU ranks'.
    const auto parameters = model->parameters();
    const torch::Device device =
        parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
    return all_gather_shards(local.to(device), parallel->group(), rows).to(torch::kCPU);
  }
  const int64_t n = source->size();
  TORCH_CHECK(n > 0, "extract_features: the image source is empty");
  LoaderOptions options;
  options.num_threads = threads;
  {
    const auto parameters = model->parameters();
    options.pin_memory = !parameters.empty() && parameters.front().is_cuda();
  }
  DataLoader loader(source, transform, options);
  std::vector<std::vector<int64_t>> batches;
  for (int64_t begin = 0; begin < n; begin += batch_size) {
    batches.emplace_back();
    for (int64_t i = begin; i < std::min(n, begin + batch_size); ++i) batches.back().push_back(i);
  }
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor features;
  const auto parameters = model->parameters();
  const torch::Device device =
      parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
  loader.start_epoch(0, std::move(batches));
  while (auto batch = loader.next()) {
    const torch::Tensor neck =
        model->forward(batch->views[0].to(device, /*non_blocking=*/true)).neck;
    const torch::Tensor normalised = torch::nn::functional::normalize(
        neck, torch::nn::functional::NormalizeFuncOptions().dim(1));
    // Unreadable images keep zero rows (the loader logged and counted them).
    if (!features.defined()) features = torch::zeros({n, neck.size(1)}, torch::kFloat32);
    features.index_copy_(0, batch->indices, normalised.to(torch::kCPU, torch::kFloat32));
  }
  model->train(was_training);
  TORCH_CHECK(features.defined(), "extract_features: no image of ", n, " could be read");
  return features;
}

MmtTrainer::MmtTrainer(Model model_1, Model model_2,
                       std::shared_ptr<const ImageSource> target_train,
                       std::vector<int64_t> cameras, MmtOptions options,
                       PseudoLabelFn pseudo_labels)
    : model_1_(std::move(model_1)),
      model_2_(std::move(model_2)),
      target_train_(std::move(target_train)),
      cameras_(std::move(cameras)),
      options_(std::move(options)),
      pseudo_labels_(std::move(pseudo_labels)),
      test_transform_(
          TransformOptions::test(options_.train_transform.height, options_.train_transform.width)) {
  options_.validate();
  TORCH_CHECK(target_train_ != nullptr && target_train_->size() > 0,
              "MmtTrainer: the target train set is empty");
  TORCH_CHECK(static_cast<int64_t>(cameras_.size()) == target_train_->size(),
              "MmtTrainer: ", cameras_.size(), " cameras for ", target_train_->size(),
              " target images");
  TORCH_CHECK(pseudo_labels_ != nullptr, "MmtTrainer: no pseudo-label function");
  TORCH_CHECK(model_1_->features_dim == model_2_->features_dim,
              "MmtTrainer: the two models have different feature widths (", model_1_->features_dim,
              " and ", model_2_->features_dim, ")");
  model_1_->to(options_.device);  // the teachers are copies on the same device
  model_2_->to(options_.device);
  teacher_1_ = std::make_unique<Teacher>(model_1_, options_.alpha);
  teacher_2_ = std::make_unique<Teacher>(model_2_, options_.alpha);
  synchronise();
}

void MmtTrainer::synchronise() {
  const auto& parallel = options_.data_parallel;
  if (!parallel || parallel->world_size() == 1) return;
  for (Model* model : {&model_1_, &model_2_, &teacher_1_->module(), &teacher_2_->module()}) {
    broadcast_module(**model, parallel->group());
  }
}

torch::Tensor MmtTrainer::teacher_features() {
  const DataParallel* parallel = options_.data_parallel.get();
  const torch::Tensor f1 =
      extract_features(teacher_1_->module(), target_train_, test_transform_, options_.extract_batch,
                       options_.loader_threads, parallel);
  const torch::Tensor f2 =
      extract_features(teacher_2_->module(), target_train_, test_transform_, options_.extract_batch,
                       options_.loader_threads, parallel);
  return (f1 + f2) / 2;  // not re-normalised, as MMT's k-means input
}

MmtEpochStats MmtTrainer::train_epoch(int64_t epoch) {
  MmtEpochStats stats;
  stats.epoch = epoch;
  // 1-2. Pseudo labels from the averaged teacher features.
  const auto phase = [&](const char* name) {
    if (options_.on_phase) options_.on_phase(name, epoch);
  };
  phase("extract");
  const torch::Tensor features = teacher_features();
  phase("cluster");
  const DataParallel* parallel = options_.data_parallel && options_.data_parallel->world_size() > 1
                                     ? options_.data_parallel.get()
                                     : nullptr;
  PseudoLabels pseudo;
  if (parallel == nullptr) {
    pseudo = pseudo_labels_(features, epoch);
  } else {
    // Rank 0 clusters; the others wait on the store (share_timeout), not in
    // a collective.
    const auto shared = share_from_rank0(*parallel, "mmt/pseudo-labels/" + std::to_string(epoch),
                                         [&]() -> std::vector<torch::Tensor> {
                                           PseudoLabels p = pseudo_labels_(features, epoch);
                                           TORCH_CHECK(p.labels.defined() && p.centroids.defined(),
                                                       "MmtTrainer: the pseudo-label function ",
                                                       "returned no labels or centroids");
                                           return {p.labels.to(torch::kInt64).contiguous(),
                                                   p.centroids.to(torch::kFloat32).contiguous(),
                                                   torch::tensor(p.eps, torch::kFloat64)};
                                         });
    pseudo.labels = shared[0];
    pseudo.centroids = shared[1];
    pseudo.eps = shared[2].item<double>();
  }
  const int64_t n = target_train_->size();
  TORCH_CHECK(pseudo.labels.defined() && pseudo.labels.dim() == 1 && pseudo.labels.size(0) == n,
              "MmtTrainer: the pseudo-label function returned ",
              pseudo.labels.defined() ? pseudo.labels.numel() : 0, " labels for ", n, " images");
  const torch::Tensor labels = pseudo.labels.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t clusters = pseudo.centroids.defined() ? pseudo.centroids.size(0) : 0;
  TORCH_CHECK(clusters > 0, "MmtTrainer: epoch ", epoch, " found no cluster among ", n,
              " images (every image is noise): lower min_samples, raise eps, or use k-means");
  TORCH_CHECK(pseudo.centroids.dim() == 2 && pseudo.centroids.size(1) == model_1_->features_dim,
              "MmtTrainer: centroids must be (K, ", model_1_->features_dim, "), got ",
              pseudo.centroids.sizes());
  TORCH_CHECK(labels.max().item<int64_t>() < clusters && labels.min().item<int64_t>() >= -1,
              "MmtTrainer: pseudo labels outside [-1, ", clusters, ")");
  stats.clusters = clusters;
  stats.noise = labels.eq(-1).sum().item<int64_t>();
  stats.eps = pseudo.eps;

  phase("train");
  // 3. Heads of all four networks from the normalised centroids.
  const torch::Tensor centres = torch::nn::functional::normalize(
      pseudo.centroids.to(torch::kFloat32), torch::nn::functional::NormalizeFuncOptions().dim(1));
  for (Model* model : {&model_1_, &model_2_, &teacher_1_->module(), &teacher_2_->module()}) {
    (*model)->reset_classifier(centres);
  }

  // 4. A P×K sampler over the labelled images, a new Adam, a new CE.
  std::vector<int64_t> label_list(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + n);
  RandomMultipleGallerySampler sampler(label_list, cameras_, options_.num_instances,
                                       derive_seed(options_.seed, {static_cast<uint64_t>(epoch)}));
  const int64_t batch_size = options_.num_identities * options_.num_instances;
  std::vector<std::vector<int64_t>> batches = sampler_batches(sampler, batch_size, options_.iters);
  // Every rank drew the same global batches; each loads its share.
  RankBatches shares =
      share_batches(std::move(batches), batch_size, labels, parallel, options_.device);
  const int world = shares.world;
  const int rank = shares.rank;
  const int64_t local_batch = shares.local_batch;
  const std::vector<torch::Tensor>& global_labels = shares.global_labels;
  batches = std::move(shares.batches);
  // One Adam per student (the same update as one over both), and the pair
  // threads, made before the loader's threads start.
  MmtStepOptions step_options;
  step_options.num_classes = clusters;
  step_options.lr = options_.lr;
  step_options.weight_decay = options_.weight_decay;
  step_options.soft_ce_weight = options_.soft_ce_weight;
  step_options.soft_triplet_weight = options_.soft_triplet_weight;
  step_options.label_smoothing = options_.label_smoothing;
  step_options.parallel_pairs = options_.parallel_pairs;
  step_options.bn_group_size = options_.bn_group_size;
  step_options.data_parallel = options_.data_parallel;
  step_options.bf16_autocast = options_.bf16;
  step_options.channels_last = options_.channels_last;
  MmtStep step(model_1_, model_2_, *teacher_1_, *teacher_2_, step_options);
  stats.parallel_pairs = step.parallel();

  LoaderOptions loader_options;
  loader_options.num_threads = options_.loader_threads;
  loader_options.views = 2;
  loader_options.pin_memory = options_.device.is_cuda();  // non-blocking copies to the GPU
  loader_options.seed = derive_seed(options_.seed, {static_cast<uint64_t>(epoch), 1});
  loader_options.position_offset = rank * local_batch;
  DataLoader loader(target_train_, ImageTransform(options_.train_transform), loader_options);
  loader.start_epoch(epoch, std::move(batches));

  // 5. Iterations: all four networks in training mode.
  model_1_->train();
  model_2_->train();
  teacher_1_->train();
  teacher_2_->train();
  const auto start = std::chrono::steady_clock::now();
  int64_t images = 0;
  while (auto batch = loader.next()) {
    torch::Tensor y;
    if (parallel == nullptr) {
      y = labels.index_select(0, batch->indices).to(options_.device, true);
    } else {
      check_whole_share("MmtTrainer", rank, batch->batch_index, stats.iterations, batch->skipped,
                        local_batch);
      y = global_labels.at(static_cast<size_t>(batch->batch_index));
    }
    const MmtLosses losses = step.run(batch->views[0].to(options_.device, true),
                                      batch->views[1].to(options_.device, true), y);
    stats.losses.ce += losses.ce;
    stats.losses.triplet += losses.triplet;
    stats.losses.soft_ce += losses.soft_ce;
    stats.losses.soft_triplet += losses.soft_triplet;
    stats.losses.total += losses.total;
    images += batch->views[0].size(0) * world;
    ++stats.iterations;
    if (options_.on_iteration) {
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      options_.on_iteration(make_iteration_progress(epoch, stats.iterations, options_.iters, images,
                                                    elapsed,
                                                    {{"ce", losses.ce},
                                                     {"tri", losses.triplet},
                                                     {"soft_ce", losses.soft_ce},
                                                     {"soft_tri", losses.soft_triplet}}));
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (stats.iterations > 0) {
    const auto k = static_cast<double>(stats.iterations);
    stats.losses.ce /= k;
    stats.losses.triplet /= k;
    stats.losses.soft_ce /= k;
    stats.losses.soft_triplet /= k;
    stats.losses.total /= k;
  }
  stats.train_images_per_second = seconds > 0 ? static_cast<double>(images) / seconds : 0;
  stats.world_size = world;
  stats.communication = step.communication();
  // BatchNorm statistics moved with each rank's own images: their mean over
  // the ranks is the single-rank running average (data_parallel.h).
  if (parallel != nullptr) {
    for (Model* model : {&model_1_, &model_2_, &teacher_1_->module(), &teacher_2_->module()}) {
      average_buffers(**model, parallel->group());
    }
  }
  return stats;
}

}  // namespace tandem::worker
