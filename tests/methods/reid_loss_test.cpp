#include "tandem/methods/reid_loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "methods/bfloat16.h"
#include "support/golden.h"

namespace tandem::methods {
namespace {

using testing::check_golden_case;
using testing::error_message;
using testing::golden_cases;
using testing::Leaves;
using testing::tensors_close;

constexpr double kRtol = 1e-5;
constexpr double kAtol = 1e-12;

// ---- pairwise_euclidean_distance -------------------------------------------

TEST(PairwiseEuclideanDistance, HandComputedTinyCase) {
  // x0 = (0, 0), x1 = (3, 4); y0 = (0, 4), y1 = (0, 0).
  auto x = torch::tensor({{0.0f, 0.0f}, {3.0f, 4.0f}});
  auto y = torch::tensor({{0.0f, 4.0f}, {0.0f, 0.0f}});
  auto d = pairwise_euclidean_distance(x, y);
  ASSERT_EQ(d.sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_FLOAT_EQ(d[0][0].item<float>(), 4.0f);
  EXPECT_NEAR(d[0][1].item<float>(), 1e-6f, 1e-9f);  // sqrt(1e-12), not 0
  EXPECT_FLOAT_EQ(d[1][0].item<float>(), 3.0f);
  EXPECT_FLOAT_EQ(d[1][1].item<float>(), 5.0f);
}

void pairwise_golden(torch::Device device) {
  for (const auto& golden : golden_cases("pairwise_euclidean_distance")) {
    check_golden_case(
        golden, {"x", "y"},
        [](Leaves& in) { return pairwise_euclidean_distance(in["x"], in["y"]); }, torch::kFloat64,
        kRtol, kAtol, device);
  }
}

TEST(PairwiseEuclideanDistance, MatchesGolden) {
  pairwise_golden(torch::kCPU);
}

TEST(PairwiseEuclideanDistance, SelfDistanceHasFiniteGradient) {
  auto x = torch::randn({4, 3}, torch::requires_grad());
  pairwise_euclidean_distance(x, x).sum().backward();
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
}

TEST(PairwiseEuclideanDistance, RejectsBadInputNamingTheArgument) {
  auto good = torch::randn({4, 3});
  EXPECT_NE(error_message([&] {
              pairwise_euclidean_distance(torch::randn({4}), good);
            }).find("x must have 2 dimensions"),
            std::string::npos);
  EXPECT_NE(error_message([&] {
              pairwise_euclidean_distance(good, torch::randn({4, 2}));
            }).find("x and y must agree in dimension 1"),
            std::string::npos);
  EXPECT_NE(error_message([&] {
              pairwise_euclidean_distance(good, torch::ones({4, 3}, torch::kLong));
            }).find("y must be a floating-point tensor"),
            std::string::npos);
}

// ---- hard_examples_mining -----------------------------------------------------

TEST(HardExamplesMining, MatchesGoldenValuesAndIndices) {
  for (const auto& golden : golden_cases("hard_examples_mining")) {
    const auto hard = hard_examples_mining(golden.input("dist"), golden.input("same_label"));
    EXPECT_TRUE(tensors_close(hard.positive_distance, golden.output(), kRtol)) << golden.label();
    EXPECT_TRUE(tensors_close(hard.negative_distance, golden.output("an"), kRtol))
        << golden.label();
    EXPECT_TRUE(torch::equal(hard.positive_index, golden.output("ap_index"))) << golden.label();
    EXPECT_TRUE(torch::equal(hard.negative_index, golden.output("an_index"))) << golden.label();
  }
}

TEST(HardExamplesMining, HandComputedTinyCase) {
  // Labels (0, 0, 1): row 0's positive is 1 (d 2), its negative 2 (d 5).
  auto dist = torch::tensor({{0.0, 2.0, 5.0}, {2.0, 0.0, 3.0}, {5.0, 3.0, 0.0}});
  auto same = torch::tensor({{1.0, 1.0, 0.0}, {1.0, 1.0, 0.0}, {0.0, 0.0, 1.0}});
  const auto hard = hard_examples_mining(dist, same);
  EXPECT_TRUE(torch::equal(hard.positive_distance, torch::tensor({2.0, 2.0, 0.0})));
  EXPECT_TRUE(torch::equal(hard.negative_distance, torch::tensor({5.0, 3.0, 3.0})));
  EXPECT_TRUE(torch::equal(hard.positive_index, torch::tensor({1, 0, 2}, torch::kLong)));
  EXPECT_TRUE(torch::equal(hard.negative_index, torch::tensor({2, 2, 1}, torch::kLong)));
}

// ---- TripletLoss ----------------------------------------------------------------

void triplet_golden(torch::Device device) {
  for (const auto& golden : golden_cases("triplet_loss")) {
    TripletLoss loss(TripletLossOptions(golden.option_double("margin"))
                         .normalize_feature(golden.option_bool("normalize_feature")));
    check_golden_case(
        golden, {"features"}, [&](Leaves& in) { return loss(in["features"], in["labels"]); },
        torch::kFloat64, kRtol, kAtol, device);
  }
}

TEST(TripletLoss, MatchesGolden) {
  triplet_golden(torch::kCPU);
}

TEST(TripletLoss, HandComputedTinyCase) {
  // 1-D features 0, 1 (id 0) and 3 (id 1): ap = (1, 1, 1e-6), an = (3, 2, 2).
  // Margin 1: every hinge is ≤ 0.
  auto f = torch::tensor({{0.0}, {1.0}, {3.0}}, torch::kFloat64);
  auto labels = torch::tensor({0, 0, 1});
  EXPECT_NEAR(functional::triplet_loss(f, labels, TripletLossOptions(1.0)).item<double>(), 0.0,
              1e-12);
  // margin 2.5: rows give 0.5, 1.5, 0.5 + 1e-6 → mean (2.5 + 1e-6) / 3.
  EXPECT_NEAR(functional::triplet_loss(f, labels, TripletLossOptions(2.5)).item<double>(),
              (2.5 + 1e-6) / 3.0, 1e-9);
}

// ---- SoftTripletLoss --------------------------------------------------------------

void soft_triplet_golden(torch::Device device) {
  for (const auto& golden : golden_cases("soft_triplet_loss")) {
    SoftTripletLoss loss(SoftTripletLossOptions()
                             .margin(golden.option_optional_double("margin"))
                             .normalize_feature(golden.option_bool("normalize_feature")));
    check_golden_case(
        golden, {"features_1", "features_2"},
        [&](Leaves& in) { return loss(in["features_1"], in["features_2"], in["labels"]); },
        torch::kFloat64, kRtol, kAtol, device);
  }
}

TEST(SoftTripletLoss, MatchesGolden) {
  soft_triplet_golden(torch::kCPU);
}

TEST(SoftTripletLoss, HandComputedTinyCase) {
  // 1-D features 0, 1 (id 0) and 3 (id 1): ap = (1, 1, 1e-6), an = (3, 2, 2);
  // margin 0: mean_i softplus(ap_i − an_i).
  auto f = torch::tensor({{0.0}, {1.0}, {3.0}}, torch::kFloat64);
  auto labels = torch::tensor({0, 0, 1});
  const double expected =
      (std::log1p(std::exp(-2.0)) + std::log1p(std::exp(-1.0)) + std::log1p(std::exp(1e-6 - 2.0))) /
      3.0;
  EXPECT_NEAR(functional::soft_triplet_loss(f, f, labels, SoftTripletLossOptions().margin(0.0))
                  .item<double>(),
              expected, 1e-12);
  // Soft version with the teacher equal to the student: the target is
  // softmax(ap, an) itself, so the loss is the entropy of that distribution.
  const double soft = functional::soft_triplet_loss(f, f, labels).item<double>();
  double entropy = 0;
  for (const auto& [ap, an] : {std::pair{1.0, 3.0}, std::pair{1.0, 2.0}, std::pair{1e-6, 2.0}}) {
    const double p = std::exp(ap) / (std::exp(ap) + std::exp(an));
    entropy += -(p * std::log(p) + (1 - p) * std::log(1 - p));
  }
  EXPECT_NEAR(soft, entropy / 3.0, 1e-12);
}

TEST(SoftTripletLoss, MarginZeroIsMeanSoftplusOfApMinusAn) {
  torch::manual_seed(1);
  auto f = torch::randn({8, 4}, torch::kFloat64);
  auto labels = torch::tensor({0, 0, 1, 1, 2, 2, 3, 3});
  const auto dist = pairwise_euclidean_distance(f, f);
  const auto hard = hard_examples_mining(dist, labels.unsqueeze(1) == labels.unsqueeze(0));
  const double expected =
      torch::softplus(hard.positive_distance - hard.negative_distance).mean().item<double>();
  EXPECT_NEAR(functional::soft_triplet_loss(f, f, labels, SoftTripletLossOptions().margin(0.0))
                  .item<double>(),
              expected, 1e-12);
}

TEST(SoftTripletLoss, SoftVersionSendsNoGradientToTheTeacher) {
  torch::manual_seed(2);
  auto student = torch::randn({6, 4}, torch::requires_grad());
  auto teacher = torch::randn({6, 4}, torch::requires_grad());
  auto labels = torch::tensor({0, 0, 1, 1, 2, 2});
  functional::soft_triplet_loss(student, teacher, labels).backward();
  EXPECT_TRUE(student.grad().defined());
  EXPECT_FALSE(teacher.grad().defined() && teacher.grad().abs().sum().item<double>() > 0);
}

TEST(SoftTripletLoss, DegenerateBatchesAreFinite) {
  auto f = torch::randn({4, 3});
  for (const auto& labels : {torch::tensor({0, 1, 2, 3}), torch::tensor({5, 5, 5, 5})}) {
    for (const auto& margin : {std::optional<double>(), std::optional<double>(0.0)}) {
      const auto value =
          functional::soft_triplet_loss(f, f, labels, SoftTripletLossOptions().margin(margin));
      EXPECT_TRUE(std::isfinite(value.item<double>())) << labels;
    }
  }
}

TEST(SoftTripletLoss, RejectsMismatchedInputs) {
  EXPECT_NE(error_message([] {
              functional::soft_triplet_loss(torch::randn({4, 3}), torch::randn({4, 2}),
                                            torch::tensor({0, 0, 1, 1}));
            }).find("features_1 and features_2 must have the same shape"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              functional::soft_triplet_loss(torch::randn({4, 3}), torch::randn({4, 3}),
                                            torch::tensor({0, 0, 1}));
            }).find("features_1 and labels must agree in dimension 0"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              functional::soft_triplet_loss(torch::randn({4, 3}), torch::randn({4, 3}),
                                            torch::tensor({0.0, 0.0, 1.0, 1.0}));
            }).find("labels must be an integer tensor"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              SoftTripletLoss(SoftTripletLossOptions().margin(-1.0));
            }).find("margin must be non-negative"),
            std::string::npos);
}

// ---- SoftCrossEntropyLoss -----------------------------------------------------------

void soft_cross_entropy_golden(torch::Device device) {
  SoftCrossEntropyLoss loss;
  for (const auto& golden : golden_cases("soft_cross_entropy_loss")) {
    check_golden_case(
        golden, {"y_logits", "target_logits"},
        [&](Leaves& in) { return loss(in["y_logits"], in["target_logits"]); }, torch::kFloat64,
        kRtol, kAtol, device);
  }
}

TEST(SoftCrossEntropyLoss, MatchesGolden) {
  soft_cross_entropy_golden(torch::kCPU);
}

TEST(SoftCrossEntropyLoss, HandComputedNonUniformCase) {
  // N = 1, C = 2. y_logits (log 3, 0) → y = softmax = (3/4, 1/4);
  // target_logits (0, log 3) → target = (1/4, 3/4).
  // loss = −(1/4·log(3/4) + 3/4·log(1/4)) = (1/4)·log(4/3) + (3/4)·log 4
  //      ≈ 0.0719205 + 1.0397208 = 1.1116413.
  // ∂loss/∂y_logits = (y − target) / N = (1/2, −1/2); the target is detached,
  // so target_logits gets no gradient.
  auto y = torch::tensor({{std::log(3.0), 0.0}}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto target =
      torch::tensor({{0.0, std::log(3.0)}}, torch::dtype(torch::kFloat64).requires_grad(true));
  SoftCrossEntropyLoss loss;
  const auto value = loss(y, target);
  EXPECT_NEAR(value.item<double>(), 0.25 * std::log(4.0 / 3.0) + 0.75 * std::log(4.0), 1e-12);
  EXPECT_NEAR(value.item<double>(), 1.1116413, 1e-7);
  value.backward();
  EXPECT_TRUE(tensors_close(y.grad(), torch::tensor({{0.5, -0.5}}, torch::kFloat64), 1e-12, 1e-14));
  EXPECT_FALSE(target.grad().defined());

  // N = 2 with a second row of equal logits (both softmaxes uniform: log 2):
  // the loss is the mean over rows, (1.1116413 + log 2) / 2.
  auto two_y = torch::tensor({{std::log(3.0), 0.0}, {5.0, 5.0}}, torch::kFloat64);
  auto two_t = torch::tensor({{0.0, std::log(3.0)}, {-1.0, -1.0}}, torch::kFloat64);
  EXPECT_NEAR(functional::soft_cross_entropy_loss(two_y, two_t).item<double>(),
              (0.25 * std::log(4.0 / 3.0) + 0.75 * std::log(4.0) + std::log(2.0)) / 2.0, 1e-12);
}

TEST(SoftCrossEntropyLoss, EqualUniformLogitsGiveLogC) {
  auto logits = torch::zeros({3, 5}, torch::kFloat64);
  EXPECT_NEAR(functional::soft_cross_entropy_loss(logits, logits).item<double>(), std::log(5.0),
              1e-12);
}

// ---- CrossEntropyLabelSmooth ----------------------------------------------------------

void label_smooth_golden(torch::Device device) {
  for (const auto& golden : golden_cases("cross_entropy_label_smooth")) {
    CrossEntropyLabelSmooth loss(CrossEntropyLabelSmoothOptions(golden.option_int("num_classes"))
                                     .epsilon(golden.option_double("epsilon")));
    check_golden_case(
        golden, {"logits"}, [&](Leaves& in) { return loss(in["logits"], in["labels"]); },
        torch::kFloat64, kRtol, kAtol, device);
  }
}

TEST(CrossEntropyLabelSmooth, MatchesGolden) {
  label_smooth_golden(torch::kCPU);
}

TEST(CrossEntropyLabelSmooth, HandComputedTinyCase) {
  // Uniform logits over C = 4: log_softmax = −log 4 everywhere and the
  // smoothed target sums to 1, so the loss is log 4 for any ε.
  auto logits = torch::zeros({1, 4}, torch::kFloat64);
  EXPECT_NEAR(functional::cross_entropy_label_smooth(logits, torch::tensor({2}),
                                                     CrossEntropyLabelSmoothOptions(4))
                  .item<double>(),
              std::log(4.0), 1e-12);
  // Logits (log 3, 0): p = (3/4, 1/4); label 0, ε = 0.2, C = 2:
  // q = (0.9, 0.1), loss = −0.9·log(3/4) − 0.1·log(1/4).
  auto two = torch::tensor({{std::log(3.0), 0.0}}, torch::kFloat64);
  EXPECT_NEAR(functional::cross_entropy_label_smooth(two, torch::tensor({0}),
                                                     CrossEntropyLabelSmoothOptions(2).epsilon(0.2))
                  .item<double>(),
              -0.9 * std::log(0.75) - 0.1 * std::log(0.25), 1e-12);
}

TEST(CrossEntropyLabelSmooth, EpsilonZeroIsPlainCrossEntropy) {
  torch::manual_seed(3);
  auto logits = torch::randn({5, 4}, torch::kFloat64);
  auto labels = torch::tensor({0, 3, 1, 1, 2});
  EXPECT_NEAR(functional::cross_entropy_label_smooth(logits, labels,
                                                     CrossEntropyLabelSmoothOptions(4).epsilon(0.0))
                  .item<double>(),
              torch::nn::functional::cross_entropy(logits, labels).item<double>(), 1e-12);
}

TEST(CrossEntropyLabelSmooth, RejectsLabelsOutOfRangeAndWrongClassCount) {
  EXPECT_NE(error_message([] {
              functional::cross_entropy_label_smooth(torch::randn({2, 3}), torch::tensor({0, 3}),
                                                     CrossEntropyLabelSmoothOptions(3));
            }).find("labels must be in [0, 3)"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              functional::cross_entropy_label_smooth(torch::randn({2, 3}), torch::tensor({0, 1}),
                                                     CrossEntropyLabelSmoothOptions(4));
            }).find("logits have 3 classes but num_classes is 4"),
            std::string::npos);
  EXPECT_NE(error_message([] {
              CrossEntropyLabelSmooth(CrossEntropyLabelSmoothOptions(0));
            }).find("num_classes must be positive"),
            std::string::npos);
}

TEST(ReidLosses, MatchGoldenOnCuda_CUDA) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const torch::Device cuda(torch::kCUDA);
  pairwise_golden(cuda);
  triplet_golden(cuda);
  soft_triplet_golden(cuda);
  soft_cross_entropy_golden(cuda);
  label_smooth_golden(cuda);
}

TEST(ReidLosses, GoldenHelpersRunOnTheirDevice) {
  // MatchGoldenOnCuda_CUDA's plumbing without a GPU: every case runs on the
  // meta device, where a tensor left on the CPU (labels included) makes the
  // loss throw, and what comes back must be on meta (check_golden_case).
  const torch::Device meta(torch::kMeta);
  EXPECT_TRUE(testing::golden_helper_runs_on(pairwise_golden, meta));
  EXPECT_TRUE(testing::golden_helper_runs_on(triplet_golden, meta));
  EXPECT_TRUE(testing::golden_helper_runs_on(soft_triplet_golden, meta));
  EXPECT_TRUE(testing::golden_helper_runs_on(soft_cross_entropy_golden, meta));
  EXPECT_TRUE(testing::golden_helper_runs_on(label_smooth_golden, meta));
}

TEST(ReidLosses, RejectTensorsOnDifferentDevicesNamingTheArgument) {
  // The meta device stands in for a GPU: no tensor may be elsewhere.
  const auto f = torch::randn({4, 3});
  const auto labels = torch::tensor({0, 0, 1, 1});
  const auto on_meta = [](const torch::Tensor& t) { return t.to(torch::kMeta); };
  EXPECT_EQ(error_message([&] { pairwise_euclidean_distance(on_meta(f), f); }),
            "pairwise_euclidean_distance: y is on cpu but x is on meta; every tensor must be on "
            "one device");
  EXPECT_EQ(error_message([&] {
              hard_examples_mining(on_meta(torch::rand({4, 4})), torch::ones({4, 4}));
            }),
            "hard_examples_mining: same_label is on cpu but dist is on meta; every tensor must be "
            "on one device");
  EXPECT_EQ(
      error_message([&] { functional::triplet_loss(on_meta(f), labels, TripletLossOptions(0.3)); }),
      "triplet_loss: labels is on cpu but features is on meta; every tensor must be on one "
      "device");
  EXPECT_EQ(error_message([&] { functional::soft_triplet_loss(on_meta(f), f, on_meta(labels)); }),
            "soft_triplet_loss: features_2 is on cpu but features_1 is on meta; every tensor must "
            "be on one device");
  EXPECT_EQ(error_message([&] { functional::soft_triplet_loss(f, f, on_meta(labels)); }),
            "soft_triplet_loss: labels is on meta but features_1 is on cpu; every tensor must be "
            "on one device");
  EXPECT_EQ(error_message([&] { functional::soft_cross_entropy_loss(f, on_meta(f)); }),
            "soft_cross_entropy_loss: target_logits is on meta but y_logits is on cpu; every "
            "tensor must be on one device");
  EXPECT_EQ(error_message([&] {
              functional::cross_entropy_label_smooth(on_meta(f), labels,
                                                     CrossEntropyLabelSmoothOptions(3));
            }),
            "cross_entropy_label_smooth: labels is on cpu but logits is on meta; every tensor "
            "must be on one device");
  // The modules check through their functionals.
  EXPECT_NE(error_message([&] {
              SoftTripletLoss()(f, f, on_meta(labels));
            }).find("soft_triplet_loss: labels is on meta"),
            std::string::npos);
  // All on one device (meta: no values) passes the checks.
  EXPECT_EQ(error_message(
                [&] { functional::soft_triplet_loss(on_meta(f), on_meta(f), on_meta(labels)); }),
            "");
}

// ---- dtypes ---------------------------------------------------------------------------

TEST(ReidLosses, KeepBfloat16WithoutPromotion) {
  // Each loss on bf16 leaves and on their exact float32 twins: the value and
  // every gradient stay bf16 and agree with float32 at bf16 precision.
  struct Inputs {
    torch::Tensor f1, f2, logits;
  };
  using LossFn = std::function<torch::Tensor(const Inputs&)>;
  const auto labels = torch::tensor({0, 0, 1, 1, 2, 2, 3, 3});
  const std::vector<std::pair<std::string, LossFn>> losses = {
      {"soft_triplet_loss (soft)",
       [&](const Inputs& in) { return functional::soft_triplet_loss(in.f1, in.f2, labels); }},
      {"soft_triplet_loss (margin 0)",
       [&](const Inputs& in) {
         return functional::soft_triplet_loss(in.f1, in.f2, labels,
                                              SoftTripletLossOptions().margin(0.0));
       }},
      {"triplet_loss",
       [&](const Inputs& in) {
         return functional::triplet_loss(in.f1, labels, TripletLossOptions(0.3));
       }},
      {"soft_cross_entropy_loss",
       [&](const Inputs& in) { return functional::soft_cross_entropy_loss(in.logits, in.f2); }},
      {"cross_entropy_label_smooth", [&](const Inputs& in) {
         return functional::cross_entropy_label_smooth(in.logits, labels,
                                                       CrossEntropyLabelSmoothOptions(4));
       }}};
  torch::manual_seed(51);
  const auto f1_values = torch::randn({8, 4});
  const auto f2_values = torch::randn({8, 4});
  const auto logit_values = torch::randn({8, 4});
  for (const auto& [name, loss] : losses) {
    const Inputs bf16{testing::bf16_leaf(f1_values), testing::bf16_leaf(f2_values),
                      testing::bf16_leaf(logit_values)};
    const Inputs fp32{testing::fp32_twin(bf16.f1), testing::fp32_twin(bf16.f2),
                      testing::fp32_twin(bf16.logits)};
    auto value = loss(bf16);
    auto value32 = loss(fp32);
    EXPECT_TRUE(testing::bf16_close(value, value32)) << name;
    value.backward();
    value32.backward();
    int gradients = 0;
    for (const auto& [leaf, twin] : {std::pair{bf16.f1, fp32.f1}, std::pair{bf16.f2, fp32.f2},
                                     std::pair{bf16.logits, fp32.logits}}) {
      ASSERT_EQ(leaf.grad().defined(), twin.grad().defined()) << name;
      if (!leaf.grad().defined()) continue;
      ++gradients;
      EXPECT_EQ(leaf.grad().scalar_type(), torch::kBFloat16) << name;
      EXPECT_TRUE(testing::bf16_close(leaf.grad(), twin.grad(), 0.05)) << name;
    }
    EXPECT_GE(gradients, 1) << name;
  }
}

TEST(ReidLosses, Float32MatchesGoldenLoosely) {
  for (const auto& golden : golden_cases("soft_triplet_loss")) {
    if (golden.name().find("singleton") != std::string::npos) continue;  // 1e-6 diagonal
    SoftTripletLoss loss(SoftTripletLossOptions()
                             .margin(golden.option_optional_double("margin"))
                             .normalize_feature(golden.option_bool("normalize_feature")));
    check_golden_case(
        golden, {"features_1", "features_2"},
        [&](Leaves& in) { return loss(in["features_1"], in["features_2"], in["labels"]); },
        torch::kFloat32, 1e-3, 1e-5);
  }
}

TEST(ReidLosses, PrettyPrintShowsOptions) {
  std::ostringstream out;
  out << *SoftTripletLoss(SoftTripletLossOptions().margin(0.0));
  EXPECT_EQ(out.str(), "tandem::methods::SoftTripletLoss(margin=0, normalize_feature=false)");
}

}  // namespace
}  // namespace tandem::methods
