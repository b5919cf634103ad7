#include "tandem/methods/reid_loss.h"

#include <torch/torch.h>

#include "tandem/methods/checks.h"

namespace tandem::methods {
namespace functional {
namespace {

// The masking constant of TLlib (MMT uses 9999999).
constexpr double kMask = 1e7;

torch::Tensor l2_normalize_rows(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

torch::Tensor same_label_matrix(const torch::Tensor& labels) {
  return labels.unsqueeze(1) == labels.unsqueeze(0);
}

void check_features_and_labels(const torch::Tensor& features, const char* features_name,
                               const torch::Tensor& labels, const char* function) {
  detail::check_dim(features, 2, function, features_name);
  detail::check_floating(features, function, features_name);
  detail::check_dim(labels, 1, function, "labels");
  detail::check_same_device(features, features_name, labels, "labels", function);
  detail::check_integral(labels, function, "labels");
  detail::check_same_size(features, features_name, labels, "labels", 0, function);
  TORCH_CHECK(features.size(0) > 0, function, ": ", features_name, " is an empty batch");
}

}  // namespace

torch::Tensor pairwise_euclidean_distance(const torch::Tensor& x, const torch::Tensor& y) {
  constexpr const char* kFn = "pairwise_euclidean_distance";
  detail::check_dim(x, 2, kFn, "x");
  detail::check_dim(y, 2, kFn, "y");
  detail::check_same_device(x, "x", y, "y", kFn);
  detail::check_floating(x, kFn, "x");
  detail::check_floating(y, kFn, "y");
  detail::check_same_size(x, "x", y, "y", 1, kFn);
  TORCH_CHECK(x.scalar_type() == y.scalar_type(), kFn, ": x and y must have the same dtype, got ",
              x.scalar_type(), " and ", y.scalar_type());
  const auto x_sq = x.pow(2).sum(1, /*keepdim=*/true);      // (m, 1)
  const auto y_sq = y.pow(2).sum(1, /*keepdim=*/true).t();  // (1, n)
  auto dist = torch::addmm(x_sq + y_sq, x, y.t(), /*beta=*/1, /*alpha=*/-2);
  return dist.clamp_min(1e-12).sqrt();
}

HardExamples hard_examples_mining(const torch::Tensor& dist, const torch::Tensor& same_label) {
  constexpr const char* kFn = "hard_examples_mining";
  detail::check_dim(dist, 2, kFn, "dist");
  detail::check_same_device(dist, "dist", same_label, "same_label", kFn);
  detail::check_floating(dist, kFn, "dist");
  TORCH_CHECK(dist.size(0) == dist.size(1), kFn, ": dist must be square (N, N), got ",
              dist.sizes());
  detail::check_same_shape(dist, "dist", same_label, "same_label", kFn);
  const auto same = same_label.to(dist.scalar_type());
  // Masked entries are pushed out of reach; valid entries get + 0 exactly.
  const auto positives = dist + (-kMask) * (1 - same);
  const auto negatives = dist + kMask * same;
  HardExamples result;
  std::tie(result.positive_distance, result.positive_index) = positives.max(1);
  std::tie(result.negative_distance, result.negative_index) = negatives.min(1);
  return result;
}

torch::Tensor triplet_loss(const torch::Tensor& features, const torch::Tensor& labels,
                           const TripletLossOptions& options) {
  check_features_and_labels(features, "features", labels, "triplet_loss");
  const auto f = options.normalize_feature() ? l2_normalize_rows(features) : features;
  const auto dist = pairwise_euclidean_distance(f, f);
  const auto hard = hard_examples_mining(dist, same_label_matrix(labels));
  // nn.MarginRankingLoss(an, ap, y=1) = max(0, ap − an + margin), averaged.
  return (hard.positive_distance - hard.negative_distance + options.margin()).clamp_min(0).mean();
}

torch::Tensor soft_triplet_loss(const torch::Tensor& features_1, const torch::Tensor& features_2,
                                const torch::Tensor& labels,
                                const SoftTripletLossOptions& options) {
  constexpr const char* kFn = "soft_triplet_loss";
  check_features_and_labels(features_1, "features_1", labels, kFn);
  detail::check_dim(features_2, 2, kFn, "features_2");
  detail::check_same_device(features_1, "features_1", features_2, "features_2", kFn);
  detail::check_floating(features_2, kFn, "features_2");
  detail::check_same_shape(features_1, "features_1", features_2, "features_2", kFn);
  const auto f1 = options.normalize_feature() ? l2_normalize_rows(features_1) : features_1;
  const auto dist = pairwise_euclidean_distance(f1, f1);
  const auto hard = hard_examples_mining(dist, same_label_matrix(labels));
  const auto log_prob =
      torch::log_softmax(torch::stack({hard.positive_distance, hard.negative_distance}, 1), 1);
  if (options.margin().has_value()) {
    const double m = *options.margin();
    return (-m * log_prob.select(1, 0) - (1 - m) * log_prob.select(1, 1)).mean();
  }
  const auto f2 = options.normalize_feature() ? l2_normalize_rows(features_2) : features_2;
  const auto dist_teacher = pairwise_euclidean_distance(f2, f2);
  const auto teacher_pair =
      torch::stack({dist_teacher.gather(1, hard.positive_index.unsqueeze(1)).squeeze(1),
                    dist_teacher.gather(1, hard.negative_index.unsqueeze(1)).squeeze(1)},
                   1);
  const auto soft_target = torch::softmax(teacher_pair, 1).detach();
  return (-soft_target * log_prob).sum(1).mean();
}

torch::Tensor soft_cross_entropy_loss(const torch::Tensor& y_logits,
                                      const torch::Tensor& target_logits) {
  constexpr const char* kFn = "soft_cross_entropy_loss";
  detail::check_dim(y_logits, 2, kFn, "y_logits");
  detail::check_same_device(y_logits, "y_logits", target_logits, "target_logits", kFn);
  detail::check_floating(y_logits, kFn, "y_logits");
  detail::check_floating(target_logits, kFn, "target_logits");
  detail::check_same_shape(y_logits, "y_logits", target_logits, "target_logits", kFn);
  const auto target = torch::softmax(target_logits, 1).detach();
  return (-target * torch::log_softmax(y_logits, 1)).sum(1).mean();
}

torch::Tensor cross_entropy_label_smooth(const torch::Tensor& logits, const torch::Tensor& labels,
                                         const CrossEntropyLabelSmoothOptions& options) {
  constexpr const char* kFn = "cross_entropy_label_smooth";
  check_features_and_labels(logits, "logits", labels, kFn);
  const int64_t num_classes = options.num_classes();
  TORCH_CHECK(num_classes >= 1, kFn, ": num_classes must be positive, got ", num_classes);
  TORCH_CHECK(logits.size(1) == num_classes, kFn, ": logits have ", logits.size(1),
              " classes but num_classes is ", num_classes);
  TORCH_CHECK(options.epsilon() >= 0 && options.epsilon() <= 1, kFn,
              ": epsilon must be in [0, 1], got ", options.epsilon());
  TORCH_CHECK(labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() < num_classes, kFn,
              ": labels must be in [0, ", num_classes, "), got range [",
              labels.min().item<int64_t>(), ", ", labels.max().item<int64_t>(), "]");
  const auto log_prob = torch::log_softmax(logits, 1);
  auto targets = torch::zeros_like(log_prob).scatter_(1, labels.unsqueeze(1).to(torch::kLong), 1);
  targets =
      (1 - options.epsilon()) * targets + options.epsilon() / static_cast<double>(num_classes);
  return (-targets * log_prob).mean(0).sum();
}

}  // namespace functional

TripletLossImpl::TripletLossImpl(TripletLossOptions options_) : options(options_) {
  reset();
}

void TripletLossImpl::reset() {
  TORCH_CHECK(options.margin() >= 0, "TripletLoss: margin must be non-negative, got ",
              options.margin());
}

void TripletLossImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::TripletLoss(margin=" << options.margin()
         << ", normalize_feature=" << std::boolalpha << options.normalize_feature() << ")";
}

torch::Tensor TripletLossImpl::forward(const torch::Tensor& features, const torch::Tensor& labels) {
  return functional::triplet_loss(features, labels, options);
}

SoftTripletLossImpl::SoftTripletLossImpl(SoftTripletLossOptions options_) : options(options_) {
  reset();
}

void SoftTripletLossImpl::reset() {
  if (options.margin().has_value()) {
    TORCH_CHECK(*options.margin() >= 0, "SoftTripletLoss: margin must be non-negative, got ",
                *options.margin());
  }
}

void SoftTripletLossImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::SoftTripletLoss(margin=";
  if (options.margin().has_value()) {
    stream << *options.margin();
  } else {
    stream << "None";
  }
  stream << ", normalize_feature=" << std::boolalpha << options.normalize_feature() << ")";
}

torch::Tensor SoftTripletLossImpl::forward(const torch::Tensor& features_1,
                                           const torch::Tensor& features_2,
                                           const torch::Tensor& labels) {
  return functional::soft_triplet_loss(features_1, features_2, labels, options);
}

void SoftCrossEntropyLossImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::SoftCrossEntropyLoss()";
}

torch::Tensor SoftCrossEntropyLossImpl::forward(const torch::Tensor& y_logits,
                                                const torch::Tensor& target_logits) {
  return functional::soft_cross_entropy_loss(y_logits, target_logits);
}

CrossEntropyLabelSmoothImpl::CrossEntropyLabelSmoothImpl(CrossEntropyLabelSmoothOptions options_)
    : options(options_) {
  reset();
}

void CrossEntropyLabelSmoothImpl::reset() {
  TORCH_CHECK(options.num_classes() >= 1,
              "CrossEntropyLabelSmooth: num_classes must be positive, got ", options.num_classes());
  TORCH_CHECK(options.epsilon() >= 0 && options.epsilon() <= 1,
              "CrossEntropyLabelSmooth: epsilon must be in [0, 1], got ", options.epsilon());
}

void CrossEntropyLabelSmoothImpl::pretty_print(std::ostream& stream) const {
  stream << "tandem::methods::CrossEntropyLabelSmooth(num_classes=" << options.num_classes()
         << ", epsilon=" << options.epsilon() << ")";
}

torch::Tensor CrossEntropyLabelSmoothImpl::forward(const torch::Tensor& logits,
                                                   const torch::Tensor& labels) {
  return functional::cross_entropy_label_smooth(logits, labels, options);
}

}  // namespace tandem::methods
