#include "tandem/clustering/evaluation.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/golden.h"

namespace tandem::clustering {
namespace {

using testing::error_message;
using testing::golden_cases;

TEST(Evaluate, MatchesScikitLearnApAndTheReferenceCmc) {
  for (const auto& golden : golden_cases("evaluate", "clustering_golden.pt")) {
    const auto metrics =
        evaluate(golden.input("distances"), golden.input("query_ids"), golden.input("query_cams"),
                 golden.input("gallery_ids"), golden.input("gallery_cams"));
    EXPECT_NEAR(metrics.mean_ap, golden.output("mean_ap").item<double>(), 1e-9) << golden.label();
    const auto cmc = golden.output("cmc");
    const auto expected_ranks = std::min<int64_t>(cmc.size(0), metrics.cmc.size());
    for (int64_t r = 0; r < expected_ranks; ++r) {
      EXPECT_NEAR(metrics.cmc[r], cmc[r].item<double>(), 1e-12)
          << golden.label() << " rank " << r + 1;
    }
    EXPECT_EQ(metrics.valid_queries, golden.output("num_valid_queries").item<int64_t>())
        << golden.label();
  }
}

TEST(Evaluate, HandComputedCase) {
  // One query, id 1 camera 0; gallery: id 1 cam 0 (junk: same id and camera),
  // id 2, id 1 cam 1, id 3, id 1 cam 2 at distances 0.1 .. 0.5.
  auto distances = torch::tensor({{0.1f, 0.2f, 0.3f, 0.4f, 0.5f}});
  auto metrics = evaluate(distances, torch::tensor({1}), torch::tensor({0}),
                          torch::tensor({1, 2, 1, 3, 1}), torch::tensor({0, 0, 1, 0, 2}));
  // Valid ranking: id2, id1, id3, id1 → matches at ranks 2 and 4:
  // AP = (1/2 + 2/4) / 2 = 0.5; first match at rank 2.
  EXPECT_DOUBLE_EQ(metrics.mean_ap, 0.5);
  EXPECT_DOUBLE_EQ(metrics.cmc[0], 0.0);
  EXPECT_DOUBLE_EQ(metrics.cmc[1], 1.0);
  EXPECT_EQ(metrics.cmc.size(), 5u);
}

TEST(Evaluate, TiedDistancesAreGroupedForApAndOrderedByIndexForCmc) {
  // Valid gallery all at distance 0.2: one group of 4 with 2 matches:
  // precision at the group's end = 2/4, AP = 0.5. CMC: the first match by
  // gallery index is index 1 → rank 2.
  auto distances = torch::full({1, 4}, 0.2f);
  auto metrics = evaluate(distances, torch::tensor({7}), torch::tensor({0}),
                          torch::tensor({3, 7, 4, 7}), torch::tensor({1, 1, 1, 1}));
  EXPECT_DOUBLE_EQ(metrics.mean_ap, 0.5);
  EXPECT_DOUBLE_EQ(metrics.cmc[0], 0.0);
  EXPECT_DOUBLE_EQ(metrics.cmc[1], 1.0);
}

TEST(Evaluate, QueriesWithoutValidMatchesAreSkippedAndAllSkippedIsAnError) {
  auto distances = torch::tensor({{0.1f, 0.2f}, {0.3f, 0.4f}});
  // Query 0 (id 5) has no id-5 image; query 1 (id 6) has one in another camera.
  auto metrics = evaluate(distances, torch::tensor({5, 6}), torch::tensor({0, 0}),
                          torch::tensor({6, 9}), torch::tensor({1, 1}));
  EXPECT_EQ(metrics.valid_queries, 1);
  EXPECT_DOUBLE_EQ(metrics.mean_ap, 1.0);
  EXPECT_NE(error_message([&] {
              evaluate(distances, torch::tensor({5, 5}), torch::tensor({0, 0}),
                       torch::tensor({6, 9}), torch::tensor({1, 1}));
            }).find("no query has a valid match"),
            std::string::npos);
}

TEST(Evaluate, RejectsMismatchedShapes) {
  EXPECT_NE(error_message([] {
              evaluate(torch::rand({2, 3}), torch::tensor({1, 2}), torch::tensor({0, 0}),
                       torch::tensor({1, 2}), torch::tensor({0, 0, 0}));
            }).find("gallery_ids must be a 1-D tensor of 3 entries"),
            std::string::npos);
}

struct FeatureSet {
  torch::Tensor query, gallery, qid, qcam, gid, gcam;
};

FeatureSet clustered_set() {
  torch::manual_seed(0);
  const auto centres = torch::randn({30, 16});
  FeatureSet s;
  s.gid = torch::arange(30).repeat_interleave(6);
  s.gcam = torch::arange(180) % 3;
  s.gallery = (centres.index_select(0, s.gid) + 0.6 * torch::randn({180, 16})).contiguous();
  s.qid = torch::arange(30);
  s.qcam = torch::zeros({30}, torch::kLong);
  s.query = (centres + 0.6 * torch::randn({30, 16})).contiguous();
  return s;
}

TEST(EvaluateFeatures, EqualsEvaluateOnTheFullMatrix) {
  const auto s = clustered_set();
  auto q = s.query / s.query.norm(2, {1}, true);
  auto g = s.gallery / s.gallery.norm(2, {1}, true);
  const auto dense = q.pow(2).sum(1, true) + g.pow(2).sum(1).unsqueeze(0) - 2 * q.mm(g.t());
  const auto expected = evaluate(dense, s.qid, s.qcam, s.gid, s.gcam);
  FeatureEvaluationOptions options;
  options.block_queries = 7;
  const auto blocked = evaluate_features(s.query, s.gallery, s.qid, s.qcam, s.gid, s.gcam, options);
  EXPECT_NEAR(blocked.mean_ap, expected.mean_ap, 1e-6);
  EXPECT_EQ(blocked.cmc, expected.cmc);
  EXPECT_GT(expected.mean_ap, 0.2);  // the features carry identity
}

TEST(EvaluateFeatures, FeaturesOnTheGpuGiveTheCpuMetrics_CUDA) {
  TANDEM_SKIP_WITHOUT_CUDA();
  const auto s = clustered_set();
  const auto cpu = evaluate_features(s.query, s.gallery, s.qid, s.qcam, s.gid, s.gcam);
  const auto gpu =
      evaluate_features(s.query.cuda(), s.gallery.cuda(), s.qid, s.qcam, s.gid, s.gcam);
  EXPECT_NEAR(gpu.mean_ap, cpu.mean_ap, 1e-5);
  ASSERT_EQ(gpu.cmc.size(), cpu.cmc.size());
  for (size_t r = 0; r < cpu.cmc.size(); ++r) EXPECT_NEAR(gpu.cmc[r], cpu.cmc[r], 1e-5);
  FeatureEvaluationOptions top;
  top.top_k = 10;
  top.top_k_with_faiss = false;
  const auto gpu_top =
      evaluate_features(s.query.cuda(), s.gallery.cuda(), s.qid, s.qcam, s.gid, s.gcam, top);
  const auto cpu_top = evaluate_features(s.query, s.gallery, s.qid, s.qcam, s.gid, s.gcam, top);
  EXPECT_NEAR(gpu_top.mean_ap, cpu_top.mean_ap, 1e-5);
}

TEST(EvaluateFeatures, TopKIsApAtKAndBoundedByTheExactAp) {
  const auto s = clustered_set();
  const auto exact = evaluate_features(s.query, s.gallery, s.qid, s.qcam, s.gid, s.gcam);
  FeatureEvaluationOptions all;
  all.top_k = 180;
  const auto full = evaluate_features(s.query, s.gallery, s.qid, s.qcam, s.gid, s.gcam, all);
  EXPECT_NEAR(full.mean_ap, exact.mean_ap, 1e-6);
  FeatureEvaluationOptions few;
  few.top_k = 10;
  const auto top = evaluate_features(s.query, s.gallery, s.qid, s.qcam, s.gid, s.gcam, few);
  EXPECT_LE(top.mean_ap, exact.mean_ap + 1e-9);
  EXPECT_EQ(top.cmc.size(), 10u);
  EXPECT_NEAR(top.cmc[0], exact.cmc[0], 1e-12);
  EXPECT_NEAR(top.cmc[9], exact.cmc[9], 1e-12);
}

// The top-k path on torch::topk (what a build without FAISS runs) against
// FAISS's flat index: the same metrics, to the bit, on random features (no
// tied distances), for several k and block sizes.
TEST(EvaluateFeatures, TopKOnTorchEqualsTopKOnFaissFlat) {
#ifndef TANDEM_WITH_FAISS
  GTEST_SKIP() << "no FAISS in this build (TANDEM_CORE_ONLY): only the torch::topk path exists";
#endif
  torch::manual_seed(7);
  const int64_t q = 60, g = 400, d = 24;
  const auto query = torch::randn({q, d});
  const auto gallery = torch::randn({g, d});
  const auto qid = torch::randint(0, 40, {q}, torch::kLong);
  const auto qcam = torch::randint(0, 4, {q}, torch::kLong);
  const auto gid = torch::randint(0, 40, {g}, torch::kLong);
  const auto gcam = torch::randint(0, 4, {g}, torch::kLong);
  for (const int64_t k : {1, 5, 20, 150}) {
    for (const int64_t block : {7, 1024}) {
      FeatureEvaluationOptions faiss_flat;
      faiss_flat.top_k = k;
      faiss_flat.block_queries = block;
      FeatureEvaluationOptions torch_topk = faiss_flat;
      torch_topk.top_k_with_faiss = false;
      const auto a = evaluate_features(query, gallery, qid, qcam, gid, gcam, faiss_flat);
      const auto b = evaluate_features(query, gallery, qid, qcam, gid, gcam, torch_topk);
      EXPECT_EQ(b.valid_queries, a.valid_queries) << "k " << k << " block " << block;
      EXPECT_DOUBLE_EQ(b.mean_ap, a.mean_ap) << "k " << k << " block " << block;
      EXPECT_EQ(b.cmc, a.cmc) << "k " << k << " block " << block;
      EXPECT_EQ(b.cmc.size(), static_cast<size_t>(std::min<int64_t>(k, 100)));
    }
  }
}

TEST(EvaluateFeatures, TopKOnTorchIsBoundedByTheExactMetrics) {
  const auto s = clustered_set();
  const auto exact = evaluate_features(s.query, s.gallery, s.qid, s.qcam, s.gid, s.gcam);
  FeatureEvaluationOptions few;
  few.top_k = 10;
  few.top_k_with_faiss = false;
  const auto top = evaluate_features(s.query, s.gallery, s.qid, s.qcam, s.gid, s.gcam, few);
  EXPECT_LE(top.mean_ap, exact.mean_ap + 1e-9);
  ASSERT_EQ(top.cmc.size(), 10u);
  EXPECT_NEAR(top.cmc[9], exact.cmc[9], 1e-12);
}

}  // namespace
}  // namespace tandem::clustering
