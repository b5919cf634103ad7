#include "tandem/worker/data_parallel.h"

#include "tandem/worker/data/sampler.h"

#include <c10/util/Exception.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>
#include <map>
#include <utility>

namespace tandem::worker {
namespace {
using Clock = std::chrono::steady_clock;

void wait_for(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  try {
    work->wait();
  } catch (const std::exception& error) {
    const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
    TORCH_CHECK(false, "data parallel: ", what, " failed (a rank died or timed out?): ",
                c10_error ? c10_error->what_without_backtrace() : error.what());
  }
}

// Tensors grouped by dtype (each group then travels as one flat buffer).
std::map<c10::ScalarType, std::vector<torch::Tensor>> by_dtype(
    const std::vector<torch::Tensor>& tensors) {
  std::map<c10::ScalarType, std::vector<torch::Tensor>> groups;
  for (const auto& t : tensors) {
    if (t.defined() && t.numel() > 0) groups[t.scalar_type()].push_back(t);
  }
  return groups;
}

// Copies `flat` (at::flatten_dense_tensors of `tensors`) back into them.
void unflatten_into(const torch::Tensor& flat, const std::vector<torch::Tensor>& tensors) {
  const auto parts = at::unflatten_dense_tensors(flat, tensors);
  for (size_t i = 0; i < tensors.size(); ++i) tensors[i].detach().copy_(parts[i]);
}

std::vector<torch::Tensor> all_gather_equal(const torch::Tensor& local, c10d::ProcessGroup& group) {
  // Gloo writes the outputs on its own threads, outside any InferenceMode
  // of the caller (MMT's teachers): they must be normal tensors.
  const c10::InferenceMode normal_tensors(false);
  const int world = group.getSize();
  std::vector<torch::Tensor> inputs{local.detach().contiguous()};
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int r = 0; r < world; ++r) outputs[0].push_back(torch::empty_like(inputs[0]));
  wait_for(group.allgather(outputs, inputs), "all-gather");
  return outputs[0];
}

// all_gather_rows with autograd: forward gathers, backward returns the
// gradient of this rank's rows.
class AllGatherRows : public torch::autograd::Function<AllGatherRows> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& local,
                               c10d::ProcessGroup* group) {
    ctx->saved_data["rank"] = static_cast<int64_t>(group->getRank());
    ctx->saved_data["rows"] = local.size(0);
    return torch::cat(all_gather_equal(local, *group));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const int64_t rank = ctx->saved_data["rank"].toInt();
    const int64_t rows = ctx->saved_data["rows"].toInt();
    return {grads[0].narrow(0, rank * rows, rows), torch::Tensor()};
  }
};

}  // namespace

Shard shard_of(int64_t n, int rank, int world_size) {
  TORCH_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "shard_of: rank ", rank,
              " outside [0, ", world_size, ")");
  TORCH_CHECK(n >= 0, "shard_of: n must be >= 0, got ", n);
  const int64_t base = n / world_size, extra = n % world_size;
  Shard shard;
  shard.begin = rank * base + std::min<int64_t>(rank, extra);
  shard.end = shard.begin + base + (rank < extra ? 1 : 0);
  return shard;
}

c10d::ProcessGroup& DataParallel::lane(int which) const {
  TORCH_CHECK(which >= 0 && which < static_cast<int>(lanes.size()), "DataParallel: lane ", which,
              " of ", lanes.size());
  return *lanes[static_cast<size_t>(which)];
}

std::shared_ptr<DataParallel> make_data_parallel(ProcessGroupHandle main, int lanes,
                                                 std::chrono::milliseconds share_timeout) {
  TORCH_CHECK(main.group && main.store, "make_data_parallel: the main group is not joined");
  TORCH_CHECK(lanes >= 0, "make_data_parallel: lanes must be >= 0, got ", lanes);
  TORCH_CHECK(share_timeout.count() > 0, "make_data_parallel: share_timeout must be positive");
  auto parallel = std::make_shared<DataParallel>();
  parallel->share_timeout = share_timeout;
  for (int i = 0; i < lanes; ++i) {
    auto store =
        c10::make_intrusive<c10d::PrefixStore>("tandem/lane/" + std::to_string(i), main.store);
    ProcessGroupHandle lane = init_process_group(store, main.options);
    parallel->lanes.push_back(lane.group);
  }
  parallel->main = std::move(main);
  return parallel;
}

void broadcast_module(torch::nn::Module& module, c10d::ProcessGroup& group, int root) {
  if (group.getSize() == 1) return;
  const torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors = module.parameters(/*recurse=*/true);
  for (const auto& b : module.buffers(/*recurse=*/true)) tensors.push_back(b);
  for (const auto& [dtype, members] : by_dtype(tensors)) {
    std::vector<torch::Tensor> flat{at::flatten_dense_tensors(members)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    wait_for(group.broadcast(flat, options), "broadcast of the parameters");
    unflatten_into(flat[0], members);
  }
}

void average_buffers(torch::nn::Module& module, c10d::ProcessGroup& group) {
  const int world = group.getSize();
  if (world == 1) return;
  const torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> floating;
  for (const auto& b : module.buffers(/*recurse=*/true)) {
    if (b.is_floating_point()) floating.push_back(b);
  }
  for (const auto& [dtype, members] : by_dtype(floating)) {
    std::vector<torch::Tensor> flat{at::flatten_dense_tensors(members)};
    wait_for(group.allreduce(flat), "all-reduce of the buffers");
    flat[0].div_(world);
    unflatten_into(flat[0], members);
  }
}

torch::Tensor all_gather_rows(const torch::Tensor& local, c10d::ProcessGroup& group) {
  TORCH_CHECK(local.defined() && local.dim() >= 1, "all_gather_rows: needs a tensor with rows");
  if (group.getSize() == 1) return local;
  if (!local.requires_grad() || !torch::GradMode::is_enabled()) {
    return torch::cat(all_gather_equal(local, group));
  }
  return AllGatherRows::apply(local, &group);
}

torch::Tensor all_gather_shards(const torch::Tensor& local, c10d::ProcessGroup& group,
                                const std::vector<int64_t>& rows) {
  const int world = group.getSize();
  TORCH_CHECK(static_cast<int>(rows.size()) == world, "all_gather_shards: ", rows.size(),
              " row counts for ", world, " ranks");
  TORCH_CHECK(local.size(0) == rows[static_cast<size_t>(group.getRank())],
              "all_gather_shards: this rank holds ", local.size(0), " rows, expected ",
              rows[static_cast<size_t>(group.getRank())]);
  if (world == 1) return local;
  const c10::InferenceMode normal_tensors(false);
  const int64_t longest = *std::max_element(rows.begin(), rows.end());
  std::vector<int64_t> padded_shape = local.sizes().vec();
  padded_shape[0] = longest;
  torch::Tensor padded = torch::zeros(padded_shape, local.options());
  padded.narrow(0, 0, local.size(0)).copy_(local.detach());
  const auto parts = all_gather_equal(padded, group);
  std::vector<torch::Tensor> kept;
  for (int r = 0; r < world; ++r)
    kept.push_back(parts[static_cast<size_t>(r)].narrow(0, 0, rows[r]));
  return torch::cat(kept);
}

RankBatches share_batches(std::vector<std::vector<int64_t>> global_batches, int64_t batch_size,
                          const torch::Tensor& labels, const DataParallel* parallel,
                          const torch::Device& device) {
  RankBatches out;
  out.world = parallel ? parallel->world_size() : 1;
  out.rank = parallel ? parallel->rank() : 0;
  out.local_batch = batch_size / out.world;
  if (parallel == nullptr) {
    out.batches = std::move(global_batches);
    return out;
  }
  for (const auto& b : global_batches) {
    out.global_labels.push_back(
        labels.index_select(0, torch::tensor(b, torch::kInt64)).to(device, true));
  }
  out.batches = rank_shares(global_batches, out.rank, out.world);
  return out;
}

void check_whole_share(const char* owner, int rank, int64_t batch_index, int64_t expected_index,
                       int64_t skipped, int64_t share) {
  TORCH_CHECK(skipped == 0 && batch_index == expected_index, owner, ": rank ", rank,
              " could not read ", skipped > 0 ? skipped : share, " image(s) of batch ",
              expected_index,
              " (see the log above); data-parallel training needs every image readable: fix or ",
              "remove them");
}

std::vector<torch::Tensor> share_from_rank0(
    const DataParallel& parallel, const std::string& key,
    const std::function<std::vector<torch::Tensor>()>& produce) {
  const std::string full_key = "tandem/share/" + key;
  c10d::Store& store = *parallel.main.store;
  if (parallel.rank() == 0) {
    std::vector<torch::Tensor> tensors;
    std::string error;
    try {
      tensors = produce();
    } catch (const c10::Error& e) {
      error = e.what_without_backtrace();
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (parallel.world_size() > 1) {
      std::vector<uint8_t> payload;
      if (error.empty()) {
        const std::vector<char> bytes = torch::pickle_save(c10::IValue(
            c10::List<torch::Tensor>(std::vector<torch::Tensor>(tensors.begin(), tensors.end()))));
        payload.push_back('T');
        payload.insert(payload.end(), bytes.begin(), bytes.end());
      } else {
        payload.push_back('E');
        payload.insert(payload.end(), error.begin(), error.end());
      }
      store.set(full_key, payload);
    }
    TORCH_CHECK(error.empty(), error);
    return tensors;
  }
  try {
    store.wait({full_key}, parallel.share_timeout);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "rank ", parallel.rank(), " waited ", parallel.share_timeout.count(),
                " ms for rank 0's ", key, " (did rank 0 die?): ", e.what());
  }
  const std::vector<uint8_t> payload = store.get(full_key);
  // The last reader removes the key, so that the store does not grow.
  if (store.add(full_key + "/read", 1) == parallel.world_size() - 1) {
    store.deleteKey(full_key);
    store.deleteKey(full_key + "/read");
  }
  TORCH_CHECK(!payload.empty(), "share_from_rank0: empty payload for ", key);
  if (payload[0] == 'E') {
    TORCH_CHECK(false, "rank 0 failed to compute ", key, ": ",
                std::string(payload.begin() + 1, payload.end()));
  }
  const std::vector<char> bytes(payload.begin() + 1, payload.end());
  std::vector<torch::Tensor> tensors;
  for (const auto& t : torch::pickle_load(bytes).toTensorList()) tensors.push_back(t);
  return tensors;
}

// --- GradientReducer ---------------------------------------------------

struct GradientReducer::Timeline {
  std::mutex mutex;
  Clock::time_point backward_start;
  std::vector<std::pair<Clock::time_point, Clock::time_point>> buckets;  // launch, done
  int64_t bytes = 0;
  CommunicationStats totals;
};

namespace {

// c10d's all-reduce hook without the division by the world size (the loss
// is already the global batch's on every rank), recording each bucket's
// launch and completion.
class SummingHook : public c10d::CommHookInterface {
 public:
  SummingHook(c10::intrusive_ptr<c10d::ProcessGroup> group,
              std::shared_ptr<GradientReducer::Timeline> timeline)
      : state_(std::move(group)), timeline_(std::move(timeline)) {}

  // The future's value is all-reduce's list of one tensor (the bucket).
  at::Tensor parseHookResult(const c10::IValue& result) override {
    return result.isTensor() ? result.toTensor() : result.toTensorVector().at(0);
  }

  c10::intrusive_ptr<c10::ivalue::Future> runHook(c10d::GradBucket& bucket) override {
    std::vector<at::Tensor> tensors{bucket.getBufferRef()};
    size_t slot = 0;
    {
      const std::lock_guard<std::mutex> lock(timeline_->mutex);
      slot = timeline_->buckets.size();
      timeline_->buckets.emplace_back(Clock::now(), Clock::time_point{});
      timeline_->bytes += static_cast<int64_t>(tensors[0].nbytes());
    }
    auto future = state_->allreduce(tensors)->getFuture();
    auto timeline = timeline_;
    future->addCallback([timeline, slot](c10::ivalue::Future&) {
      const std::lock_guard<std::mutex> lock(timeline->mutex);
      timeline->buckets[slot].second = Clock::now();
    });
    return future;
  }

 private:
  c10::intrusive_ptr<c10d::ProcessGroup> state_;
  std::shared_ptr<GradientReducer::Timeline> timeline_;
};

}  // namespace

GradientReducer::GradientReducer(std::vector<torch::Tensor> parameters,
                                 c10::intrusive_ptr<c10d::ProcessGroup> group, int64_t bucket_bytes,
                                 int64_t first_bucket_bytes)
    : timeline_(std::make_shared<Timeline>()) {
  TORCH_CHECK(group, "GradientReducer: no process group");
  TORCH_CHECK(!parameters.empty(), "GradientReducer: no parameters");
  TORCH_CHECK(bucket_bytes > 0 && first_bucket_bytes > 0,
              "GradientReducer: bucket sizes must be positive");
  for (const auto& p : parameters) {
    TORCH_CHECK(p.requires_grad() && p.is_leaf(),
                "GradientReducer: every parameter must be a leaf that requires grad");
  }
  first_bucket_bytes = std::min(first_bucket_bytes, bucket_bytes);
  const std::vector<bool> sparse(parameters.size(), false);
  auto buckets = std::get<0>(c10d::compute_bucket_assignment_by_size(
      parameters, {static_cast<size_t>(first_bucket_bytes), static_cast<size_t>(bucket_bytes)},
      sparse));
  // As torch.nn.parallel.DistributedDataParallel: gradients arrive in about
  // the reverse order of the parameters, so the buckets are reduced in it.
  std::reverse(buckets.begin(), buckets.end());
  reducer_ = std::make_unique<c10d::Reducer>(
      std::move(parameters), std::move(buckets), group, sparse, bucket_bytes,
      /*find_unused_parameters=*/false,
      /*gradient_as_bucket_view=*/false, std::unordered_map<size_t, std::string>{},
      first_bucket_bytes, /*skip_all_reduce_unused_params=*/false,
      /*use_python_reducer=*/false, /*bucket_bytes_cap_list=*/std::vector<int64_t>{});
  reducer_->register_comm_hook(std::make_unique<SummingHook>(group, timeline_));
}

GradientReducer::~GradientReducer() = default;

void GradientReducer::prepare_for_backward() {
  {
    const std::lock_guard<std::mutex> lock(timeline_->mutex);
    timeline_->backward_start = Clock::now();
    timeline_->buckets.clear();
    timeline_->bytes = 0;
  }
  reducer_->prepare_for_backward({});
}

void GradientReducer::backward_done() {
  const auto end = Clock::now();
  const std::lock_guard<std::mutex> lock(timeline_->mutex);
  auto& t = *timeline_;
  const auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  CommunicationStats& totals = t.totals;
  ++totals.backward_passes;
  totals.buckets += static_cast<int64_t>(t.buckets.size());
  totals.bytes += t.bytes;
  totals.backward_seconds += seconds(end - t.backward_start);
  if (t.buckets.empty()) return;
  // The union of the in-flight intervals, and its part before the last launch.
  auto intervals = t.buckets;
  for (auto& [launch, done] : intervals) {
    if (done == Clock::time_point{}) done = end;
  }
  std::sort(intervals.begin(), intervals.end());
  Clock::time_point last_launch = intervals.back().first;
  Clock::time_point begin = intervals[0].first, finish = intervals[0].second;
  const auto book = [&](Clock::time_point a, Clock::time_point b) {
    totals.communication_seconds += seconds(b - a);
    if (a < last_launch) totals.overlapped_seconds += seconds(std::min(b, last_launch) - a);
  };
  for (size_t i = 1; i < intervals.size(); ++i) {
    if (intervals[i].first > finish) {
      book(begin, finish);
      begin = intervals[i].first;
    }
    finish = std::max(finish, intervals[i].second);
  }
  book(begin, finish);
}

CommunicationStats GradientReducer::stats() const {
  const std::lock_guard<std::mutex> lock(timeline_->mutex);
  return timeline_->totals;
}

void GradientReducer::reset_stats() {
  const std::lock_guard<std::mutex> lock(timeline_->mutex);
  timeline_->totals = {};
}

}  // namespace tandem::worker
