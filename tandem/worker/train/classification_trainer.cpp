#include "tandem/worker/train/classification_trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "tandem/methods/afn.h"
#include "tandem/methods/autocast.h"
#include "tandem/methods/mcc.h"
#include "tandem/methods/self_ensemble.h"
#include "tandem/worker/train/checkpoint.h"
#include "tandem/worker/train/group_batch_norm.h"

namespace tandem::worker {
namespace fn = methods::functional;
namespace F = torch::nn::functional;

namespace {

/// uint8 (n, H, W, 3) → float (n, 3, H, W) in [−1, 1].
torch::Tensor to_normalised(const torch::Tensor& images_hwc_u8, const char* what) {
  TORCH_CHECK(images_hwc_u8.defined() && images_hwc_u8.dim() == 4 && images_hwc_u8.size(3) == 3 &&
                  images_hwc_u8.scalar_type() == torch::kUInt8,
              "ClassificationTrainer: ", what, " must be uint8 (n, H, W, 3), got ",
              images_hwc_u8.defined() ? images_hwc_u8.sizes() : c10::IntArrayRef{});
  return images_hwc_u8.permute({0, 3, 1, 2}).to(torch::kFloat32).div(127.5).sub(1.0).contiguous();
}

void check_labels(const torch::Tensor& labels, int64_t n, int64_t num_classes, const char* what) {
  TORCH_CHECK(labels.defined() && labels.dim() == 1 && labels.scalar_type() == torch::kInt64,
              "ClassificationTrainer: ", what, " must be int64 (n)");
  TORCH_CHECK(labels.size(0) == n, "ClassificationTrainer: ", labels.size(0), " ", what, " for ", n,
              " images");
  if (n > 0) {
    TORCH_CHECK(labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() < num_classes,
                "ClassificationTrainer: ", what, " must be in 0..", num_classes - 1);
  }
}

const torch::Tensor& entry(const methods::StateDict& state, const std::string& name,
                           c10::IntArrayRef sizes, torch::Dtype dtype) {
  const torch::Tensor& saved = state_entry(state, name);
  TORCH_CHECK(saved.sizes() == sizes && saved.scalar_type() == dtype, "checkpoint entry '", name,
              "' is ", saved.scalar_type(), " ", saved.sizes(), ", expected ", dtype, " ", sizes);
  return saved;
}

int64_t scalar_entry(const methods::StateDict& state, const std::string& name) {
  return entry(state, name, {}, torch::kInt64).item<int64_t>();
}

}  // namespace

std::string classification_method_name(ClassificationMethod method) {
  switch (method) {
    case ClassificationMethod::kSourceOnly: return "source_only";
    case ClassificationMethod::kSelfEnsemble: return "self_ensemble";
    case ClassificationMethod::kMcc: return "mcc";
    case ClassificationMethod::kAfn: return "afn";
  }
  return "unknown";
}

ClassificationMethod parse_classification_method(const std::string& name) {
  for (const auto method : {ClassificationMethod::kSourceOnly, ClassificationMethod::kSelfEnsemble,
                            ClassificationMethod::kMcc, ClassificationMethod::kAfn}) {
    if (classification_method_name(method) == name) return method;
  }
  TORCH_CHECK(false, "unknown classification method '", name,
              "' (one of source_only, self_ensemble, mcc, afn)");
  return ClassificationMethod::kSourceOnly;  // unreachable
}

void ClassificationOptions::validate() const {
  TORCH_CHECK(iterations >= 1, "ClassificationOptions.iterations must be >= 1, got ", iterations);
  TORCH_CHECK(batch_size >= 2, "ClassificationOptions.batch_size must be >= 2, got ", batch_size);
  validate_batch_split("ClassificationOptions", batch_size,
                       data_parallel ? data_parallel->world_size() : 1, bn_group_size);
  TORCH_CHECK(lr > 0 && std::isfinite(lr), "ClassificationOptions.lr must be positive, got ", lr);
  TORCH_CHECK(momentum >= 0 && momentum < 1,
              "ClassificationOptions.momentum must be in [0, 1), got ", momentum);
  TORCH_CHECK(weight_decay >= 0, "ClassificationOptions.weight_decay must be >= 0, got ",
              weight_decay);
  TORCH_CHECK(lr_gamma >= 0, "ClassificationOptions.lr_gamma must be >= 0, got ", lr_gamma);
  TORCH_CHECK(lr_decay >= 0, "ClassificationOptions.lr_decay must be >= 0, got ", lr_decay);
  TORCH_CHECK(backbone_width >= 1, "ClassificationOptions.backbone_width must be >= 1, got ",
              backbone_width);
  TORCH_CHECK(bottleneck_dim >= 1, "ClassificationOptions.bottleneck_dim must be >= 1, got ",
              bottleneck_dim);
  TORCH_CHECK(augment_shift >= 0, "ClassificationOptions.augment_shift must be >= 0, got ",
              augment_shift);
  TORCH_CHECK(augment_flip_probability >= 0 && augment_flip_probability <= 1,
              "ClassificationOptions.augment_flip_probability must be in [0, 1], got ",
              augment_flip_probability);
  TORCH_CHECK(augment_color_jitter >= 0 && augment_color_jitter < 1,
              "ClassificationOptions.augment_color_jitter must be in [0, 1), got ",
              augment_color_jitter);
  TORCH_CHECK(augment_invert_probability >= 0 && augment_invert_probability <= 1,
              "ClassificationOptions.augment_invert_probability must be in [0, 1], got ",
              augment_invert_probability);
  TORCH_CHECK(unsupervised_warmup_iterations >= 0,
              "ClassificationOptions.unsupervised_warmup_iterations must be >= 0, got ",
              unsupervised_warmup_iterations);
  TORCH_CHECK(self_ensemble_alpha >= 0 && self_ensemble_alpha <= 1,
              "ClassificationOptions.self_ensemble_alpha must be in [0, 1], got ",
              self_ensemble_alpha);
  TORCH_CHECK(self_ensemble_confidence_threshold >= 0 && self_ensemble_confidence_threshold <= 1,
              "ClassificationOptions.self_ensemble_confidence_threshold must be in [0, 1], got ",
              self_ensemble_confidence_threshold);
  TORCH_CHECK(self_ensemble_consistency_weight >= 0,
              "ClassificationOptions.self_ensemble_consistency_weight must be >= 0, got ",
              self_ensemble_consistency_weight);
  TORCH_CHECK(self_ensemble_balance_weight >= 0,
              "ClassificationOptions.self_ensemble_balance_weight must be >= 0, got ",
              self_ensemble_balance_weight);
  TORCH_CHECK(mcc_temperature > 0, "ClassificationOptions.mcc_temperature must be positive, got ",
              mcc_temperature);
  TORCH_CHECK(mcc_trade_off >= 0, "ClassificationOptions.mcc_trade_off must be >= 0, got ",
              mcc_trade_off);
  TORCH_CHECK(afn_delta > 0, "ClassificationOptions.afn_delta must be positive, got ", afn_delta);
  TORCH_CHECK(afn_trade_off >= 0, "ClassificationOptions.afn_trade_off must be >= 0, got ",
              afn_trade_off);
  TORCH_CHECK(afn_dropout >= 0 && afn_dropout < 1,
              "ClassificationOptions.afn_dropout must be in [0, 1), got ", afn_dropout);
  TORCH_CHECK(eval_batch_size >= 1, "ClassificationOptions.eval_batch_size must be >= 1, got ",
              eval_batch_size);
}

double ClassificationOptions::lr_at(int64_t iteration) const {
  return lr * std::pow(1.0 + lr_gamma * static_cast<double>(iteration), -lr_decay);
}

SmallImageClassifierImpl::SmallImageClassifierImpl(int64_t num_classes_, int64_t backbone_width_,
                                                   int64_t bottleneck_dim_)
    : num_classes(num_classes_), backbone_width(backbone_width_), bottleneck_dim(bottleneck_dim_) {
  reset();
}

void SmallImageClassifierImpl::reset() {
  TORCH_CHECK(num_classes >= 2, "SmallImageClassifier: num_classes must be >= 2, got ",
              num_classes);
  backbone = register_module(
      "backbone",
      methods::models::SmallReidNet(methods::models::SmallReidNetOptions().width(backbone_width)));
  fc = register_module("fc", torch::nn::Linear(backbone->out_features(), bottleneck_dim));
  bn = register_module("bn", torch::nn::BatchNorm1d(bottleneck_dim));
  head = register_module("head", torch::nn::Linear(bottleneck_dim, num_classes));
}

std::tuple<torch::Tensor, torch::Tensor> SmallImageClassifierImpl::forward(const torch::Tensor& x) {
  torch::Tensor f = backbone->forward(x).mean({2, 3});
  f = torch::relu(bn->forward(fc->forward(f)));
  return {head->forward(f), f};
}

ClassificationTrainer::ClassificationTrainer(ClassificationMethod method,
                                             const torch::Tensor& source_images,
                                             const torch::Tensor& source_labels,
                                             const torch::Tensor& target_train_images,
                                             int64_t num_classes, ClassificationOptions options)
    : method_(method), options_(std::move(options)), num_classes_(num_classes) {
  options_.validate();
  TORCH_CHECK(num_classes_ >= 2, "ClassificationTrainer: num_classes must be >= 2, got ",
              num_classes_);
  source_ = to_normalised(source_images, "source images");
  target_ = to_normalised(target_train_images, "target train images");
  check_labels(source_labels, source_.size(0), num_classes_, "source labels");
  source_labels_ = source_labels.contiguous();
  TORCH_CHECK(source_.size(0) >= options_.batch_size && target_.size(0) >= options_.batch_size,
              "ClassificationTrainer: ClassificationOptions.batch_size (", options_.batch_size,
              ") exceeds the ", source_.size(0), " source or ", target_.size(0),
              " target train images");
  TORCH_CHECK(source_.sizes().slice(1).equals(target_.sizes().slice(1)),
              "ClassificationTrainer: source images ", source_.sizes(), " and target images ",
              target_.sizes(), " differ in shape");

  torch::manual_seed(options_.seed);
  if (method_ == ClassificationMethod::kAfn) {
    methods::models::SmallReidNet backbone(
        methods::models::SmallReidNetOptions().width(options_.backbone_width));
    const int64_t features = backbone->out_features();
    afn_ = methods::AfnImageClassifier(torch::nn::AnyModule(backbone), features,
                                       methods::AfnImageClassifierOptions(num_classes_)
                                           .bottleneck_dim(options_.bottleneck_dim)
                                           .dropout_p(options_.afn_dropout));
  } else {
    plain_ = SmallImageClassifier(num_classes_, options_.backbone_width, options_.bottleneck_dim);
  }
  classifier()->to(options_.device);  // before the teacher copies it and SGD sees it
  if (method_ == ClassificationMethod::kSelfEnsemble) {
    teacher_.emplace(plain_, options_.self_ensemble_alpha);
    teacher_->train();  // as in the example: batch statistics of the clean target view
  }
  classifier()->train();
  optimizer_ = std::make_unique<torch::optim::SGD>(classifier()->parameters(),
                                                   torch::optim::SGDOptions(options_.lr)
                                                       .momentum(options_.momentum)
                                                       .weight_decay(options_.weight_decay)
                                                       .nesterov(options_.momentum > 0));
  if (options_.data_parallel && options_.data_parallel->world_size() > 1) {
    std::vector<torch::Tensor> trainable;
    for (const auto& p : classifier()->parameters()) {
      if (p.requires_grad()) trainable.push_back(p);
    }
    reducer_ = std::make_unique<GradientReducer>(trainable, options_.data_parallel->main.group);
  }
  synchronise();
}

void ClassificationTrainer::synchronise() {
  if (!reducer_) return;
  broadcast_module(*classifier(), options_.data_parallel->group());
  if (teacher_) broadcast_module(*teacher_->module(), options_.data_parallel->group());
}

std::shared_ptr<torch::nn::Module> ClassificationTrainer::classifier() const {
  if (afn_) return afn_.ptr();
  return plain_.ptr();
}

std::tuple<torch::Tensor, torch::Tensor> ClassificationTrainer::forward(const torch::Tensor& x) {
  methods::AutocastGuard autocast(options_.device.type(), torch::kBFloat16, options_.bf16);
  auto [logits, features] = afn_ ? afn_->forward(x) : plain_->forward(x);
  return {logits.to(torch::kFloat32), features.to(torch::kFloat32)};
}

std::tuple<torch::Tensor, torch::Tensor> ClassificationTrainer::teacher_forward(
    const torch::Tensor& x) {
  methods::AutocastGuard autocast(options_.device.type(), torch::kBFloat16, options_.bf16);
  auto [logits, features] = (*teacher_)(x);
  return {logits.to(torch::kFloat32), features.to(torch::kFloat32)};
}

torch::Tensor ClassificationTrainer::augment(const torch::Tensor& x) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  torch::Tensor out = x;
  const int64_t s = options_.augment_shift;
  if (s > 0) {
    // Replicate padding keeps the background of both domains (black source,
    // tinted target) under the shift.
    const torch::Tensor padded = F::pad(x, F::PadFuncOptions({s, s, s, s}).mode(torch::kReplicate));
    const torch::Tensor offsets = torch::randint(0, 2 * s + 1, {n, 2}, torch::kInt64);
    const auto* o = offsets.data_ptr<int64_t>();
    std::vector<torch::Tensor> crops;
    crops.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      crops.push_back(padded[i].narrow(1, o[2 * i], h).narrow(2, o[2 * i + 1], w));
    }
    out = torch::stack(crops);
  }
  if (options_.augment_flip_probability > 0) {
    const torch::Tensor flip =
        (torch::rand({n, 1, 1, 1}) < options_.augment_flip_probability).expand_as(out);
    out = torch::where(flip, out.flip({3}), out);
  }
  if (options_.augment_invert_probability > 0) {
    // In [−1, 1] units the inversion v → 255 − v is a sign change.
    const torch::Tensor invert =
        (torch::rand({n, 1, 1, 1}) < options_.augment_invert_probability).expand_as(out);
    out = torch::where(invert, -out, out);
  }
  const double j = options_.augment_color_jitter;
  if (j > 0) {
    const torch::Tensor gain = 1.0 + j * (2.0 * torch::rand({n, 3, 1, 1}) - 1.0);
    const torch::Tensor offset = j * (2.0 * torch::rand({n, 3, 1, 1}) - 1.0);
    out = out * gain + offset;
  }
  return out.contiguous();
}

torch::Tensor ClassificationTrainer::next_batch(const torch::Tensor& images, torch::Tensor& order,
                                                int64_t& cursor) {
  const int64_t b = options_.batch_size;
  if (!order.defined() || cursor + b > order.size(0)) {
    order = torch::randperm(images.size(0), torch::kInt64);
    cursor = 0;
  }
  torch::Tensor indices = order.slice(0, cursor, cursor + b);
  cursor += b;
  return indices;
}

ClassificationStepStats ClassificationTrainer::train(int64_t count, const ProgressFn& on_iteration,
                                                     int64_t epoch) {
  TORCH_CHECK(count >= 0, "ClassificationTrainer::train: count must be >= 0, got ", count);
  ClassificationStepStats stats;
  const auto start = std::chrono::steady_clock::now();
  const auto mcc_options = methods::MinimumClassConfusionLossOptions(options_.mcc_temperature);
  const auto afn_options = methods::AdaptiveFeatureNormOptions(options_.afn_delta);
  const auto balance_options = methods::ClassBalanceLossOptions(num_classes_);
  classifier()->train();
  // Data parallel: this rank's rows of every global batch, and the gathers.
  const DataParallel* parallel = reducer_ ? options_.data_parallel.get() : nullptr;
  const int64_t world = parallel ? parallel->world_size() : 1;
  const int64_t share = options_.batch_size / world;
  const int64_t first_row = parallel ? parallel->rank() * share : 0;
  const auto mine = [&](const torch::Tensor& x) {
    return parallel ? x.narrow(0, first_row, share) : x;
  };
  const auto all = [&](const torch::Tensor& x) {
    return parallel ? all_gather_rows(x, parallel->group()) : x;
  };
  // The network (or the teacher) on images, BatchNorm over fixed groups.
  const auto grouped =
      [&](torch::nn::Module& network, const torch::Tensor& x,
          const std::function<std::tuple<torch::Tensor, torch::Tensor>(const torch::Tensor&)>&
              run) {
        const auto out =
            forward_in_groups(network, x, options_.bn_group_size, [&](const torch::Tensor& group) {
              auto [y, f] = run(group);
              return std::vector<torch::Tensor>{y, f};
            });
        return std::make_tuple(out[0], out[1]);
      };
  const auto net = [&](const torch::Tensor& x) {
    return grouped(*classifier(), x, [&](const torch::Tensor& g) { return forward(g); });
  };
  // This rank's share of a global batch through the network, the outputs
  // (logits, features) of the whole batch gathered.
  const auto shared = [&](const torch::Tensor& x) {
    auto [y, f] = net(mine(x));
    return std::make_tuple(all(y), all(f));
  };
  // Source and target shares in one forward (shared BatchNorm statistics),
  // split back and gathered per domain.
  const auto joint = [&](const torch::Tensor& x_s, const torch::Tensor& x_t) {
    if (options_.bn_group_size > 0) {
      // Each domain's share in its own groups, as one rank would group them.
      auto [ys, fs] = shared(x_s);
      auto [yt, ft] = shared(x_t);
      return std::make_tuple(ys, fs, yt, ft);
    }
    const torch::Tensor s = mine(x_s), t = mine(x_t);
    const auto [y, f] = forward(torch::cat({s, t}));
    const int64_t n = s.size(0);
    return std::make_tuple(all(y.narrow(0, 0, n)), all(f.narrow(0, 0, n)), all(y.narrow(0, n, n)),
                           all(f.narrow(0, n, n)));
  };
  int64_t correct = 0, seen = 0;
  for (int64_t step = 0; step < count; ++step) {
    stats.lr = options_.lr_at(iteration_);
    for (auto& group : optimizer_->param_groups()) {
      static_cast<torch::optim::SGDOptions&>(group.options()).lr(stats.lr);
    }
    const torch::Tensor s_idx = next_batch(source_, source_order_, source_cursor_);
    const torch::Tensor t_idx = next_batch(target_, target_order_, target_cursor_);
    // Augmented on the host in a fixed order (source view, then the target
    // view every method but source only uses), then copied to the device.
    const torch::Device device = options_.device;
    const torch::Tensor x_s = augment(source_.index_select(0, s_idx)).to(device, true);
    const torch::Tensor y_true = source_labels_.index_select(0, s_idx).to(device, true);
    const torch::Tensor x_t_host = target_.index_select(0, t_idx);
    const torch::Tensor x_t_view = method_ == ClassificationMethod::kSourceOnly
                                       ? torch::Tensor()
                                       : augment(x_t_host).to(device, true);
    const torch::Tensor x_t_clean = x_t_host.to(device, true);
    const int64_t b = options_.batch_size;

    torch::Tensor y_s, f_s, f_t, unsupervised = torch::zeros({}, torch::TensorOptions(device));
    switch (method_) {
      case ClassificationMethod::kSourceOnly: {
        std::tie(y_s, f_s) = shared(x_s);
        break;
      }
      case ClassificationMethod::kSelfEnsemble: {
        // Separate source and target forwards (per-domain batch statistics, as
        // in the example and French et al.).
        std::tie(y_s, f_s) = shared(x_s);
        torch::Tensor y_t;
        std::tie(y_t, f_t) = shared(x_t_view);
        const torch::Tensor p_t = torch::softmax(y_t, 1);
        torch::Tensor p_teacher;
        {
          torch::NoGradGuard no_grad;
          const auto teacher_out =
              grouped(*teacher_->module(), mine(x_t_clean),
                      [&](const torch::Tensor& g) { return teacher_forward(g); });
          p_teacher = torch::softmax(all(std::get<0>(teacher_out)), 1);
        }
        const torch::Tensor mask =
            (std::get<0>(p_teacher.max(1)) > options_.self_ensemble_confidence_threshold)
                .to(torch::kFloat32);
        const torch::Tensor consistency = fn::l2_consistency_loss(p_t, p_teacher, mask);
        const torch::Tensor balance = fn::class_balance_loss(p_t, balance_options) * mask.mean();
        unsupervised = options_.self_ensemble_consistency_weight * consistency +
                       options_.self_ensemble_balance_weight * balance;
        stats.confident_share += mask.mean().item<double>();
        break;
      }
      case ClassificationMethod::kMcc: {
        torch::Tensor y_t;
        std::tie(y_s, f_s, y_t, f_t) = joint(x_s, x_t_view);
        unsupervised = options_.mcc_trade_off * fn::minimum_class_confusion_loss(y_t, mcc_options);
        break;
      }
      case ClassificationMethod::kAfn: {
        torch::Tensor y_t;
        std::tie(y_s, f_s, y_t, f_t) = joint(x_s, x_t_view);
        unsupervised = options_.afn_trade_off * (fn::adaptive_feature_norm(f_s, afn_options) +
                                                 fn::adaptive_feature_norm(f_t, afn_options));
        break;
      }
    }
    if (iteration_ < options_.unsupervised_warmup_iterations) unsupervised = unsupervised * 0.0;
    const torch::Tensor ce = F::cross_entropy(y_s, y_true);
    const torch::Tensor total = ce + unsupervised;
    optimizer_->zero_grad();
    if (reducer_) reducer_->prepare_for_backward();
    total.backward();
    if (reducer_) reducer_->backward_done();
    optimizer_->step();
    if (teacher_) teacher_->update();
    ++iteration_;

    const double step_ce = ce.item<double>();
    const double step_unsupervised = unsupervised.item<double>();
    const double step_total = total.item<double>();
    stats.ce += step_ce;
    stats.unsupervised += step_unsupervised;
    stats.total += step_total;
    correct += y_s.argmax(1).eq(y_true).sum().item<int64_t>();
    stats.source_feature_norm += f_s.detach().norm(2, 1).mean().item<double>();
    if (f_t.defined()) stats.target_feature_norm += f_t.detach().norm(2, 1).mean().item<double>();
    seen += b;
    ++stats.iterations;
    if (on_iteration) {
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      // Images trained per step: the source batch and the target batch.
      on_iteration(make_iteration_progress(
          epoch, step + 1, count, 2 * b * (step + 1), elapsed,
          {{"ce", step_ce}, {"unsupervised", step_unsupervised}, {"loss", step_total}}));
    }
  }
  if (stats.iterations > 0) {
    const auto k = static_cast<double>(stats.iterations);
    stats.ce /= k;
    stats.unsupervised /= k;
    stats.total /= k;
    stats.confident_share /= k;
    stats.source_feature_norm /= k;
    stats.target_feature_norm /= k;
    stats.source_batch_accuracy = static_cast<double>(correct) / static_cast<double>(seen);
  }
  // BatchNorm statistics moved with each rank's own images (data_parallel.h).
  if (parallel != nullptr) {
    average_buffers(*classifier(), parallel->group());
    if (teacher_) average_buffers(*teacher_->module(), parallel->group());
  }
  return stats;
}

void ClassificationTrainer::save_state(methods::StateDict& state, const std::string& prefix) const {
  add_module_state(state, prefix + ".classifier", *classifier());
  if (teacher_) {
    add_module_state(state, prefix + ".teacher", *teacher_->module());
    state.insert(prefix + ".teacher_step", torch::tensor(teacher_->step(), torch::kInt64));
  }
  auto& map = optimizer_->state();
  using Map = std::decay_t<decltype(map)>;
  int64_t index = 0;
  for (const auto& group : optimizer_->param_groups()) {
    for (const auto& p : group.params()) {
      const auto found = map.find(optimizer_state_key<Map>(p));
      const std::string name = prefix + ".sgd." + std::to_string(index++) + ".momentum_buffer";
      if (found == map.end()) continue;  // no step with momentum yet
      const auto& buffer =
          static_cast<const torch::optim::SGDParamState&>(*found->second).momentum_buffer();
      if (buffer.defined()) state.insert(name, buffer.detach().clone());
    }
  }
  state.insert(prefix + ".iteration", torch::tensor(iteration_, torch::kInt64));
  // An order not drawn yet is saved empty (a drawn one holds >= 2 indices).
  const auto order = [](const torch::Tensor& o) {
    return o.defined() ? o.clone() : torch::empty({0}, torch::kInt64);
  };
  state.insert(prefix + ".source_order", order(source_order_));
  state.insert(prefix + ".target_order", order(target_order_));
  state.insert(prefix + ".source_cursor", torch::tensor(source_cursor_, torch::kInt64));
  state.insert(prefix + ".target_cursor", torch::tensor(target_cursor_, torch::kInt64));
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  state.insert(prefix + ".cpu_generator", generator.get_state());
}

void ClassificationTrainer::load_state(const methods::StateDict& state, const std::string& prefix) {
  load_module_state(*classifier(), state, prefix + ".classifier");
  if (teacher_) {
    load_module_state(*teacher_->module(), state, prefix + ".teacher");
    teacher_->set_step(scalar_entry(state, prefix + ".teacher_step"));
  }
  auto& map = optimizer_->state();
  using Map = std::decay_t<decltype(map)>;
  map.clear();
  int64_t index = 0;
  for (const auto& group : optimizer_->param_groups()) {
    for (const auto& p : group.params()) {
      const std::string name = prefix + ".sgd." + std::to_string(index++) + ".momentum_buffer";
      if (state.find(name) == nullptr) continue;
      auto param_state = std::make_unique<torch::optim::SGDParamState>();
      param_state->momentum_buffer(
          entry(state, name, p.sizes(), torch::kFloat32).to(p.device(), false, /*copy=*/true));
      map[optimizer_state_key<Map>(p)] = std::move(param_state);
    }
  }
  iteration_ = scalar_entry(state, prefix + ".iteration");
  const auto order = [&](const std::string& name, int64_t n) {
    const torch::Tensor& saved = state_entry(state, name);
    TORCH_CHECK(saved.dim() == 1 && saved.scalar_type() == torch::kInt64 &&
                    (saved.size(0) == 0 || saved.size(0) == n),
                "checkpoint entry '", name, "' is not an order of ", n, " images");
    return saved.size(0) == 0 ? torch::Tensor() : saved.clone();
  };
  source_order_ = order(prefix + ".source_order", source_.size(0));
  target_order_ = order(prefix + ".target_order", target_.size(0));
  source_cursor_ = scalar_entry(state, prefix + ".source_cursor");
  target_cursor_ = scalar_entry(state, prefix + ".target_cursor");
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state_entry(state, prefix + ".cpu_generator"));
}

torch::Tensor ClassificationTrainer::predictions(torch::nn::Module& module, bool use_teacher,
                                                 const torch::Tensor& images_hwc_u8) {
  const torch::Tensor x = to_normalised(images_hwc_u8, "evaluation images");
  TORCH_CHECK(x.size(0) > 0, "ClassificationTrainer: no evaluation images");
  const bool was_training = module.is_training();
  module.eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  for (int64_t start = 0; start < x.size(0); start += options_.eval_batch_size) {
    const int64_t len = std::min(options_.eval_batch_size, x.size(0) - start);
    const torch::Tensor chunk = x.narrow(0, start, len).to(options_.device, true);
    const torch::Tensor logits =
        use_teacher ? std::get<0>(teacher_forward(chunk)) : std::get<0>(forward(chunk));
    out.push_back(logits.argmax(1).to(torch::kCPU));
  }
  module.train(was_training);
  return torch::cat(out);
}

double ClassificationTrainer::evaluate(torch::nn::Module& module, bool use_teacher,
                                       const torch::Tensor& images_hwc_u8,
                                       const torch::Tensor& labels) {
  check_labels(labels, images_hwc_u8.defined() ? images_hwc_u8.size(0) : 0, num_classes_,
               "evaluation labels");
  const torch::Tensor predicted = predictions(module, use_teacher, images_hwc_u8);
  return predicted.eq(labels).to(torch::kFloat64).mean().item<double>();
}

torch::Tensor ClassificationTrainer::predict(const torch::Tensor& images_hwc_u8) {
  if (teacher_) return predictions(*teacher_->module(), /*use_teacher=*/true, images_hwc_u8);
  return predictions(*classifier(), /*use_teacher=*/false, images_hwc_u8);
}

double ClassificationTrainer::accuracy(const torch::Tensor& images_hwc_u8,
                                       const torch::Tensor& labels) {
  if (teacher_) return evaluate(*teacher_->module(), /*use_teacher=*/true, images_hwc_u8, labels);
  return student_accuracy(images_hwc_u8, labels);
}

double ClassificationTrainer::student_accuracy(const torch::Tensor& images_hwc_u8,
                                               const torch::Tensor& labels) {
  return evaluate(*classifier(), /*use_teacher=*/false, images_hwc_u8, labels);
}

ClassificationResult train_and_evaluate(ClassificationMethod method,
                                        const torch::Tensor& source_images,
                                        const torch::Tensor& source_labels,
                                        const torch::Tensor& target_train_images,
                                        const torch::Tensor& target_test_images,
                                        const torch::Tensor& target_test_labels,
                                        const ClassificationOptions& options, int64_t num_classes) {
  ClassificationTrainer trainer(method, source_images, source_labels, target_train_images,
                                num_classes, options);
  ClassificationResult result;
  result.method = method;
  const int64_t last = std::min<int64_t>(100, options.iterations);
  const auto start = std::chrono::steady_clock::now();
  trainer.train(options.iterations - last);
  result.last_steps = trainer.train(last);
  result.train_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.target_accuracy = trainer.accuracy(target_test_images, target_test_labels);
  result.student_target_accuracy = trainer.student_accuracy(target_test_images, target_test_labels);
  result.source_accuracy = trainer.accuracy(source_images, source_labels);
  return result;
}

}  // namespace tandem::worker
