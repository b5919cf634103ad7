// Gradient communication of data-parallel MMT on loopback (distributed
// issue, bench/distributed): W ranks, each a thread of this process with its
// own Gloo groups over a loopback TCPStore (real sockets), run the trainer's
// MmtStep on their share of one global batch, gradients summed by
// c10d::Reducer (worker/data_parallel.h). Per iteration it reports the bytes
// all-reduced (both students), the buckets, the time with an all-reduce in
// flight, the part of it before the last bucket was launched (overlapping
// the backward pass), and the backward time; and, in the same run, the
// iteration time of one rank on the whole batch with one rank's threads.
//
//   bench_distributed [--backbone resnet18|resnet50|small] [--batch 32]
//                     [--ids-per-batch 8] [--height 128] [--width 64]
//                     [--world 2] [--iters 5] [--warmup 1] [--bucket-mb 25]
//
// Prints one JSON object. Figures in BENCHMARKS.md, projections in
// docs/scaling.md.
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tandem/methods/ema_teacher.h"
#include "tandem/methods/models/reidentifier.h"
#include "tandem/methods/models/resnet.h"
#include "tandem/worker/data_parallel.h"
#include "tandem/worker/train/mmt_step.h"

namespace {
using Clock = std::chrono::steady_clock;
namespace models = tandem::methods::models;
namespace worker = tandem::worker;
using Model = models::ReIdentifier;
using Teacher = tandem::methods::EmaTeacher<Model>;

struct Args {
  std::string backbone = "resnet18";
  int64_t batch = 32, ids_per_batch = 8, height = 128, width = 64;
  int64_t world = 2, iters = 5, warmup = 1, bucket_mb = 25, classes = 100;
};

Args parse(int argc, char** argv) {
  Args a;
  const std::map<std::string, int64_t*> integers = {
      {"--batch", &a.batch},   {"--ids-per-batch", &a.ids_per_batch},
      {"--height", &a.height}, {"--width", &a.width},
      {"--world", &a.world},   {"--iters", &a.iters},
      {"--warmup", &a.warmup}, {"--bucket-mb", &a.bucket_mb}};
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--backbone") {
      a.backbone = value;
    } else if (auto it = integers.find(flag); it != integers.end()) {
      *it->second = std::stoll(value);
    } else {
      throw std::invalid_argument("unknown flag " + flag);
    }
  }
  if (a.backbone != "resnet18" && a.backbone != "resnet50" && a.backbone != "small")
    throw std::invalid_argument("--backbone must be resnet18, resnet50 or small");
  if (a.world < 2) throw std::invalid_argument("--world must be >= 2");
  if (a.batch % a.world != 0 || a.batch % a.ids_per_batch != 0)
    throw std::invalid_argument("--batch must be a multiple of --world and of --ids-per-batch");
  if (a.iters < 1 || a.warmup < 0 || a.bucket_mb < 1)
    throw std::invalid_argument("--iters >= 1, --warmup >= 0, --bucket-mb >= 1");
  return a;
}

Model make_model(const std::string& backbone, int64_t classes) {
  if (backbone == "small") {
    models::SmallReidNet net;
    const int64_t f = net->out_features();
    return Model(torch::nn::AnyModule(net), f, classes);
  }
  auto net = backbone == "resnet50" ? models::reid_resnet50() : models::reid_resnet18();
  const int64_t f = net->out_features();
  return Model(torch::nn::AnyModule(net), f, classes);
}

Model copy_of(const Model& m) {
  return Model(std::dynamic_pointer_cast<models::ReIdentifierImpl>(m->clone()));
}

struct RankResult {
  std::vector<double> seconds;
  worker::CommunicationStats communication;
};

// `iters` timed MmtStep::run on this rank's rows after `warmup` untimed ones.
RankResult run_rank(const Args& a, const Model (&initial)[2], const torch::Tensor (&views)[2],
                    const torch::Tensor& labels, int rank, int world,
                    std::shared_ptr<const worker::DataParallel> parallel) {
  Model m1 = copy_of(initial[0]), m2 = copy_of(initial[1]);
  Teacher t1(m1, 0.999), t2(m2, 0.999);
  for (Model* m : {&m1, &m2, &t1.module(), &t2.module()}) (*m)->train();
  worker::MmtStepOptions options;
  options.num_classes = a.classes;
  options.parallel_pairs = false;  // one thread per rank: the ranks are the parallelism
  options.bn_group_size = 0;
  options.data_parallel = std::move(parallel);
  options.gradient_bucket_bytes = a.bucket_mb << 20;
  worker::MmtStep step(m1, m2, t1, t2, options);
  const int64_t rows = a.batch / world;
  const torch::Tensor x1 = views[0].narrow(0, rank * rows, rows).contiguous();
  const torch::Tensor x2 = views[1].narrow(0, rank * rows, rows).contiguous();
  for (int64_t i = 0; i < a.warmup; ++i) step.run(x1, x2, labels);
  const worker::CommunicationStats before = step.communication();
  RankResult result;
  for (int64_t i = 0; i < a.iters; ++i) {
    const auto start = Clock::now();
    step.run(x1, x2, labels);
    result.seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  worker::CommunicationStats after = step.communication();
  after.backward_passes -= before.backward_passes;
  after.buckets -= before.buckets;
  after.bytes -= before.bytes;
  after.backward_seconds -= before.backward_seconds;
  after.communication_seconds -= before.communication_seconds;
  after.overlapped_seconds -= before.overlapped_seconds;
  result.communication = after;
  return result;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  try {
    a = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench_distributed: " << e.what() << "\n";
    return 2;
  }
  const int world = static_cast<int>(a.world);
  const int total_threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int per_rank = std::max(1, total_threads / world);
  torch::manual_seed(1);
  const Model initial[2] = {make_model(a.backbone, a.classes), make_model(a.backbone, a.classes)};
  int64_t parameters = 0;
  for (const auto& p : initial[0]->parameters()) {
    if (p.requires_grad()) parameters += p.numel();
  }
  const torch::Tensor views[2] = {torch::randn({a.batch, 3, a.height, a.width}),
                                  torch::randn({a.batch, 3, a.height, a.width})};
  const torch::Tensor labels =
      torch::arange(a.ids_per_batch, torch::kInt64).repeat_interleave(a.batch / a.ids_per_batch);

  // One rank, the whole batch, one rank's threads: W ranks on W x as many
  // cores against it give the speed-up on this machine.
  torch::set_num_threads(per_rank);
  const RankResult single = run_rank(a, initial, views, labels, 0, 1, nullptr);

  // W ranks over loopback Gloo.
  c10d::TCPStoreOptions server_options;
  server_options.port = 0;
  server_options.isServer = true;
  server_options.numWorkers = static_cast<size_t>(world);
  server_options.waitWorkers = false;
  auto server = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", server_options);
  std::vector<RankResult> results(static_cast<size_t>(world));
  std::vector<std::string> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        at::set_num_threads(per_rank);
        c10d::TCPStoreOptions client;
        client.port = static_cast<uint16_t>(server->getPort());
        c10::intrusive_ptr<c10d::Store> store = server;
        if (rank > 0) store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", client);
        worker::DistributedOptions options;
        options.world_size = world;
        options.rank = rank;
        options.timeout = std::chrono::minutes(10);
        auto parallel = worker::make_data_parallel(worker::init_process_group(store, options), 2);
        results[static_cast<size_t>(rank)] =
            run_rank(a, initial, views, labels, rank, world, parallel);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(rank)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    if (!errors[static_cast<size_t>(r)].empty()) {
      std::cerr << "bench_distributed: rank " << r << ": " << errors[static_cast<size_t>(r)]
                << "\n";
      return 1;
    }
  }
  const worker::CommunicationStats& c = results[0].communication;
  const auto iters = static_cast<double>(a.iters);
  const double comm = c.communication_seconds / iters;
  const double bytes = static_cast<double>(c.bytes) / iters;
  // A ring all-reduce moves 2 (W - 1) / W of the buffer through each link.
  const double moved = bytes * 2.0 * (world - 1) / world;
  std::cout << "{\"backbone\": \"" << a.backbone << "\", \"batch\": " << a.batch
            << ", \"height\": " << a.height << ", \"width\": " << a.width
            << ", \"world\": " << world << ", \"threads_per_rank\": " << per_rank
            << ", \"single_rank_threads\": " << per_rank
            << ", \"trainable_parameters_per_student\": " << parameters
            << ", \"bucket_mb\": " << a.bucket_mb
            << ", \"per_iteration\": {\"bytes_allreduced\": " << static_cast<int64_t>(bytes)
            << ", \"buckets\": " << static_cast<double>(c.buckets) / iters
            << ", \"communication_seconds\": " << comm
            << ", \"overlapped_seconds\": " << c.overlapped_seconds / iters
            << ", \"overlap_fraction\": "
            << (c.communication_seconds > 0 ? c.overlapped_seconds / c.communication_seconds : 0)
            << ", \"backward_seconds\": " << c.backward_seconds / iters
            << ", \"iteration_seconds\": " << mean(results[0].seconds)
            << ", \"single_rank_iteration_seconds\": " << mean(single.seconds)
            << "}, \"loopback_bus_bytes_per_second\": " << (comm > 0 ? moved / comm : 0) << "}"
            << std::endl;
  return 0;
}
