#include "tandem/worker/train/pretrain_trainer.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <utility>

#include "tandem/methods/autocast.h"
#include "tandem/methods/reid_loss.h"
#include "tandem/worker/data/random.h"
#include "tandem/worker/data/sampler.h"
#include "tandem/worker/train/group_batch_norm.h"

namespace tandem::worker {
namespace fn = methods::functional;

void PretrainOptions::validate() const {
  TORCH_CHECK(epochs >= 1, "PretrainOptions.epochs must be >= 1, got ", epochs);
  TORCH_CHECK(iters >= 1, "PretrainOptions.iters must be >= 1, got ", iters);
  TORCH_CHECK(num_identities >= 2, "PretrainOptions.num_identities must be >= 2, got ",
              num_identities);
  TORCH_CHECK(num_instances >= 2, "PretrainOptions.num_instances must be >= 2, got ",
              num_instances);
  TORCH_CHECK(lr > 0, "PretrainOptions.lr must be positive, got ", lr);
  TORCH_CHECK(weight_decay >= 0, "PretrainOptions.weight_decay must be >= 0, got ", weight_decay);
  TORCH_CHECK(warmup_epochs >= 0, "PretrainOptions.warmup_epochs must be >= 0, got ",
              warmup_epochs);
  TORCH_CHECK(warmup_factor > 0 && warmup_factor <= 1,
              "PretrainOptions.warmup_factor must be in (0, 1], got ", warmup_factor);
  TORCH_CHECK(std::is_sorted(milestones.begin(), milestones.end()),
              "PretrainOptions.milestones must be increasing");
  TORCH_CHECK(gamma > 0, "PretrainOptions.gamma must be positive, got ", gamma);
  TORCH_CHECK(label_smoothing >= 0 && label_smoothing < 1,
              "PretrainOptions.label_smoothing must be in [0, 1), got ", label_smoothing);
  TORCH_CHECK(triplet_margin >= 0 && triplet_margin <= 1,
              "PretrainOptions.triplet_margin must be in [0, 1], got ", triplet_margin);
  TORCH_CHECK(loader_threads >= 1, "PretrainOptions.loader_threads must be >= 1, got ",
              loader_threads);
  validate_batch_split("PretrainOptions", num_identities * num_instances,
                       data_parallel ? data_parallel->world_size() : 1, bn_group_size);
  train_transform.validate();
}

double PretrainOptions::lr_at(int64_t epoch) const {
  double factor = 1.0;
  if (epoch < warmup_epochs) {
    const double progress = static_cast<double>(epoch) / static_cast<double>(warmup_epochs);
    factor = warmup_factor * (1.0 - progress) + progress;
  }
  for (const int64_t milestone : milestones) {
    if (epoch >= milestone) factor *= gamma;
  }
  return lr * factor;
}

PretrainTrainer::PretrainTrainer(Model model, std::shared_ptr<const ImageSource> source,
                                 std::vector<int64_t> pids, std::vector<int64_t> cameras,
                                 PretrainOptions options)
    : model_(std::move(model)),
      source_(std::move(source)),
      pids_(std::move(pids)),
      cameras_(std::move(cameras)),
      options_(std::move(options)) {
  options_.validate();
  TORCH_CHECK(source_ != nullptr && source_->size() > 0, "PretrainTrainer: the source is empty");
  TORCH_CHECK(
      static_cast<int64_t>(pids_.size()) == source_->size() && pids_.size() == cameras_.size(),
      "PretrainTrainer: ", pids_.size(), " ids and ", cameras_.size(), " cameras for ",
      source_->size(), " images");
  const int64_t classes = *std::max_element(pids_.begin(), pids_.end()) + 1;
  TORCH_CHECK(
      *std::min_element(pids_.begin(), pids_.end()) >= 0 && classes == model_->num_classes(),
      "PretrainTrainer: ids must be 0..", model_->num_classes() - 1,
      " (the model's classes), got up to ", classes - 1);
  model_->to(options_.device);  // before the optimiser and the reducer see the parameters
  std::vector<torch::Tensor> parameters;
  for (const auto& p : model_->parameters()) {
    if (p.requires_grad()) parameters.push_back(p);
  }
  if (options_.data_parallel && options_.data_parallel->world_size() > 1) {
    reducer_ = std::make_unique<GradientReducer>(parameters, options_.data_parallel->main.group);
  }
  optimizer_ = std::make_unique<torch::optim::Adam>(
      parameters, torch::optim::AdamOptions(options_.lr).weight_decay(options_.weight_decay));
  synchronise();
}

void PretrainTrainer::synchronise() {
  if (reducer_) broadcast_module(*model_, options_.data_parallel->group());
}

void PretrainTrainer::set_target_bn_source(std::shared_ptr<const ImageSource> target) {
  TORCH_CHECK(target == nullptr || target->size() > 0,
              "PretrainTrainer: the target for BatchNorm statistics is empty");
  target_bn_ = std::move(target);
}

namespace {

// `count` batches of `batch_size` target indices: seeded shuffles, each
// index once per pass, passes chained.
std::vector<std::vector<int64_t>> shuffled_batches(int64_t size, int64_t batch_size, int64_t count,
                                                   uint64_t seed) {
  Rng rng(seed);
  std::vector<int64_t> order;
  std::vector<std::vector<int64_t>> batches(static_cast<size_t>(count));
  for (auto& batch : batches) {
    while (static_cast<int64_t>(batch.size()) < batch_size) {
      if (order.empty()) {
        order.resize(static_cast<size_t>(size));
        std::iota(order.begin(), order.end(), 0);
        for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
      }
      batch.push_back(order.back());
      order.pop_back();
    }
  }
  return batches;
}

}  // namespace

PretrainEpochStats PretrainTrainer::train_epoch(int64_t epoch) {
  PretrainEpochStats stats;
  stats.epoch = epoch;
  stats.lr = options_.lr_at(epoch);
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(stats.lr);
  }
  RandomMultipleGallerySampler sampler(pids_, cameras_, options_.num_instances,
                                       derive_seed(options_.seed, {static_cast<uint64_t>(epoch)}));
  const int64_t batch_size = options_.num_identities * options_.num_instances;
  std::vector<std::vector<int64_t>> batches = sampler_batches(sampler, batch_size, options_.iters);
  const torch::Device device = options_.device;
  const torch::Tensor labels = torch::tensor(pids_, torch::kInt64);
  // Data parallel: every rank drew the same global batches; each loads its
  // share and keeps the global labels for the gathered outputs.
  const DataParallel* parallel = reducer_ ? options_.data_parallel.get() : nullptr;
  RankBatches shares = share_batches(std::move(batches), batch_size, labels, parallel, device);
  const int world = shares.world;
  const int rank = shares.rank;
  const int64_t local_batch = shares.local_batch;
  const std::vector<torch::Tensor>& global_labels = shares.global_labels;
  batches = std::move(shares.batches);
  LoaderOptions loader_options;
  loader_options.num_threads = options_.loader_threads;
  loader_options.pin_memory = options_.device.is_cuda();  // non-blocking copies to the GPU
  loader_options.seed = derive_seed(options_.seed, {static_cast<uint64_t>(epoch), 1});
  loader_options.position_offset = rank * local_batch;
  DataLoader loader(source_, ImageTransform(options_.train_transform), loader_options);
  loader.start_epoch(epoch, std::move(batches));
  std::unique_ptr<DataLoader> target_loader;
  if (target_bn_ != nullptr) {
    LoaderOptions target_options = loader_options;
    target_options.seed = derive_seed(options_.seed, {static_cast<uint64_t>(epoch), 2});
    target_loader = std::make_unique<DataLoader>(
        target_bn_, ImageTransform(options_.train_transform), target_options);
    auto target_batches =
        shuffled_batches(target_bn_->size(), batch_size, options_.iters,
                         derive_seed(options_.seed, {static_cast<uint64_t>(epoch), 3}));
    if (parallel != nullptr) target_batches = rank_shares(target_batches, rank, world);
    target_loader->start_epoch(epoch, std::move(target_batches));
  }

  const auto ce_options = methods::CrossEntropyLabelSmoothOptions(model_->num_classes())
                              .epsilon(options_.label_smoothing);
  const auto triplet_options = methods::SoftTripletLossOptions().margin(options_.triplet_margin);
  model_->train();
  const auto start = std::chrono::steady_clock::now();
  int64_t images = 0, correct = 0;
  const int64_t groups = options_.bn_group_size;
  while (auto batch = loader.next()) {
    torch::Tensor y;
    methods::models::ReIdOutput out;
    {
      methods::AutocastGuard autocast(device.type(), torch::kBFloat16, options_.bf16);
      out = forward_in_groups(model_, batch->views[0].to(device, /*non_blocking=*/true), groups);
    }
    out.logits = out.logits.to(torch::kFloat32);
    out.features = out.features.to(torch::kFloat32);
    if (parallel == nullptr) {
      y = labels.index_select(0, batch->indices).to(device, true);
    } else {
      check_whole_share("PretrainTrainer", rank, batch->batch_index, stats.iterations,
                        batch->skipped, local_batch);
      y = global_labels.at(static_cast<size_t>(batch->batch_index));
      out.logits = all_gather_rows(out.logits, parallel->group());
      out.features = all_gather_rows(out.features, parallel->group());
    }
    // MMT's order: the target batch right after the source forward.
    if (target_loader != nullptr) {
      if (auto target_batch = target_loader->next()) {
        torch::NoGradGuard no_grad;
        // Train mode: BN running statistics only.
        methods::AutocastGuard autocast(device.type(), torch::kBFloat16, options_.bf16);
        forward_in_groups(model_, target_batch->views[0].to(device, true), groups);
      }
    }
    const torch::Tensor ce = fn::cross_entropy_label_smooth(out.logits, y, ce_options);
    const torch::Tensor triplet =
        fn::soft_triplet_loss(out.features, out.features, y, triplet_options);
    const torch::Tensor total = ce + triplet;
    optimizer_->zero_grad();
    if (reducer_) reducer_->prepare_for_backward();
    total.backward();
    if (reducer_) reducer_->backward_done();
    optimizer_->step();
    // One host copy of the iteration's figures (one sync on a GPU).
    const torch::Tensor figures =
        torch::stack({ce.detach(), triplet.detach(), total.detach(),
                      out.logits.argmax(1).eq(y).sum().to(torch::kFloat32)})
            .cpu();
    const float* figure = figures.data_ptr<float>();
    stats.ce += static_cast<double>(figure[0]);
    stats.triplet += static_cast<double>(figure[1]);
    stats.total += static_cast<double>(figure[2]);
    correct += static_cast<int64_t>(figure[3]);
    images += y.size(0);
    ++stats.iterations;
    if (options_.on_iteration) {
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      options_.on_iteration(make_iteration_progress(
          epoch, stats.iterations, options_.iters, images, elapsed,
          {{"ce", static_cast<double>(figure[0])}, {"tri", static_cast<double>(figure[1])}}));
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (stats.iterations > 0) {
    const auto k = static_cast<double>(stats.iterations);
    stats.ce /= k;
    stats.triplet /= k;
    stats.total /= k;
  }
  stats.train_accuracy =
      images > 0 ? static_cast<double>(correct) / static_cast<double>(images) : 0;
  stats.train_images_per_second = seconds > 0 ? static_cast<double>(images) / seconds : 0;
  // Each rank's BatchNorm statistics saw its own images: their mean is the
  // single-rank running average (data_parallel.h).
  if (parallel != nullptr) average_buffers(*model_, parallel->group());
  return stats;
}

}  // namespace tandem::worker
