#include "tandem/clustering/label_agreement.h"

#include <torch/torch.h>

#include <map>
#include <unordered_map>
#include <utility>

namespace tandem::clustering {
namespace {

double pairs(int64_t count) {
  return 0.5 * static_cast<double>(count) * (count - 1);
}

}  // namespace

LabelAgreement label_agreement(const torch::Tensor& predicted, const torch::Tensor& truth) {
  TORCH_CHECK(predicted.defined() && truth.defined() && predicted.dim() == 1 && truth.dim() == 1,
              "label_agreement: predicted and truth must be 1-D tensors");
  TORCH_CHECK(predicted.size(0) == truth.size(0), "label_agreement: predicted has ",
              predicted.size(0), " entries but truth has ", truth.size(0));
  TORCH_CHECK(c10::isIntegralType(predicted.scalar_type(), false) &&
                  c10::isIntegralType(truth.scalar_type(), false),
              "label_agreement: labels must be integer tensors, got ", predicted.scalar_type(),
              " and ", truth.scalar_type());
  const torch::Tensor p = predicted.to(torch::kCPU, torch::kLong).contiguous();
  const torch::Tensor t = truth.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* pp = p.data_ptr<int64_t>();
  const int64_t* tp = t.data_ptr<int64_t>();
  const int64_t n = p.size(0);

  LabelAgreement out;
  std::map<std::pair<int64_t, int64_t>, int64_t> joint;  // (cluster, identity) -> count
  std::unordered_map<int64_t, int64_t> cluster_size, identity_all, identity_kept;
  for (int64_t i = 0; i < n; ++i) {
    ++identity_all[tp[i]];
    if (pp[i] < 0) {
      ++out.noise;
      continue;
    }
    ++joint[{pp[i], tp[i]}];
    ++cluster_size[pp[i]];
    ++identity_kept[tp[i]];
  }
  out.clusters = static_cast<int64_t>(cluster_size.size());
  double same_both = 0, same_cluster = 0, same_identity_all = 0, same_identity_kept = 0;
  for (const auto& [key, count] : joint) same_both += pairs(count);
  for (const auto& [key, count] : cluster_size) same_cluster += pairs(count);
  for (const auto& [key, count] : identity_all) same_identity_all += pairs(count);
  for (const auto& [key, count] : identity_kept) same_identity_kept += pairs(count);
  if (same_cluster > 0) out.pair_precision = same_both / same_cluster;
  if (same_identity_all > 0) out.pair_recall = same_both / same_identity_all;
  // ARI over the kept images: (index − expected) / (max − expected).
  const double total = pairs(n - out.noise);
  if (total > 0) {
    const double expected = same_cluster * same_identity_kept / total;
    const double maximum = 0.5 * (same_cluster + same_identity_kept);
    out.adjusted_rand =
        maximum - expected == 0 ? 1.0 : (same_both - expected) / (maximum - expected);
  }
  return out;
}

}  // namespace tandem::clustering
