// `tandem demo`: runs the main job on the embedded default, with no server
// or GPU needed. In this version the MMT trainer is not part of the build
// yet, so the demo runs the largest end-to-end path that exists, one real
// component after another, and says what it ran.
#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <thread>

#include "tandem/cli/app.h"
#include "tandem/clustering/kmeans.h"
#include "tandem/methods/reid_loss.h"
#include "tandem/server/grpc_server.h"
#include "tandem/server/health_client.h"
#include "tandem/server/job_store.h"
#include "tandem/worker/distributed.h"

namespace tandem::cli {
namespace {

struct DemoFlags {
  std::string workdir;
  int64_t identities = 8;
  int64_t images_per_identity = 64;
  int seed = 0;
};

// Runs one step, printing its name, outcome and wall time; a step that throws
// or returns false fails the demo.
bool step(const std::string& name, const std::function<std::string()>& body) {
  std::cout << "  " << std::left << std::setw(44) << name << std::flush;
  const auto start = std::chrono::steady_clock::now();
  try {
    const std::string outcome = body();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "ok   " << std::fixed << std::setprecision(2) << seconds << " s  " << outcome
              << std::endl;
    return true;
  } catch (const c10::Error& error) {
    std::cout << "FAILED: " << error.what_without_backtrace() << std::endl;
  } catch (const std::exception& error) {
    std::cout << "FAILED: " << error.what() << std::endl;
  }
  return false;
}

// Synthetic "identities": Gaussian blobs around random unit centres, the
// shape of L2-normalised re-ID features.
std::pair<torch::Tensor, torch::Tensor> synthetic_features(const DemoFlags& flags, int64_t dim) {
  torch::manual_seed(flags.seed);
  auto centres = torch::nn::functional::normalize(
      torch::randn({flags.identities, dim}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  auto labels = torch::arange(flags.identities).repeat_interleave(flags.images_per_identity);
  auto features = centres.index_select(0, labels) + 0.05 * torch::randn({labels.size(0), dim});
  return {features.contiguous(), labels};
}

// Fraction of points whose cluster's majority identity is their own.
double cluster_purity(const torch::Tensor& clusters, const torch::Tensor& identities, int64_t k,
                      int64_t num_identities) {
  auto counts = torch::zeros({k, num_identities}, torch::kInt64);
  counts.index_put_({clusters, identities}, torch::ones_like(clusters), /*accumulate=*/true);
  return counts.amax(1).sum().item<double>() / static_cast<double>(clusters.size(0));
}

int run_demo(const DemoFlags& flags) {
  namespace fs = std::filesystem;
  fs::path workdir = flags.workdir;
  if (workdir.empty()) {
    std::string pattern = (fs::temp_directory_path() / "tandem-demo-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      std::cerr << "tandem demo: cannot create a temporary directory\n";
      return kExitFailure;
    }
    workdir = pattern;
  }
  fs::create_directories(workdir);

  std::cout << "tandem demo " << version() << " (embedded default: one process, CPU, Gloo)\n"
            << "The MMT training demo is not part of this version yet; running the largest\n"
            << "end-to-end path that exists: synthetic re-ID features through LibTorch, a\n"
            << "2-rank Gloo process group, FAISS k-means pseudo labels, the SQLite job store\n"
            << "and the gRPC health service. Work directory: " << workdir.string() << "\n\n";

  constexpr int64_t kDim = 128;
  // Named variables, not structured bindings: lambdas below capture them.
  const auto synthetic = synthetic_features(flags, kDim);
  const torch::Tensor& features = synthetic.first;
  const torch::Tensor& identities = synthetic.second;
  bool ok = true;

  ok &= step("LibTorch: pairwise distances", [&] {
    auto dist = methods::pairwise_euclidean_distance(features, features);
    auto same = identities.unsqueeze(1) == identities.unsqueeze(0);
    const auto intra = dist.masked_select(same).mean().item<double>();
    const auto inter = dist.masked_select(same.logical_not()).mean().item<double>();
    std::ostringstream out;
    out << features.size(0) << " features, mean same-id distance " << std::setprecision(3) << intra
        << " vs other-id " << inter;
    TORCH_CHECK(intra < inter, "same-identity distances are not smaller");
    return out.str();
  });

  ok &= step("c10d: Gloo all-reduce, 2 ranks, TCPStore", [&] {
    c10d::TCPStoreOptions server_options;
    server_options.port = 0;  // any free port
    server_options.isServer = true;
    server_options.numWorkers = 2;
    server_options.waitWorkers = false;
    auto server_store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", server_options);
    c10d::TCPStoreOptions client_options;
    client_options.port = static_cast<std::uint16_t>(server_store->getPort());
    std::vector<torch::Tensor> sums(2);
    auto rank_body = [&](int rank, const c10::intrusive_ptr<c10d::Store>& store) {
      worker::DistributedOptions options;
      options.world_size = 2;
      options.rank = rank;
      options.timeout = std::chrono::seconds(30);
      auto group = worker::init_process_group(store, options);
      std::vector<torch::Tensor> tensors{
          features.index({torch::indexing::Slice(rank, torch::indexing::None, 2)}).sum(0)};
      group.group->allreduce(tensors)->wait();
      sums[rank] = tensors[0];
    };
    std::thread rank1(
        [&] { rank_body(1, c10::make_intrusive<c10d::TCPStore>("127.0.0.1", client_options)); });
    rank_body(0, server_store);
    rank1.join();
    const auto expected = features.sum(0);
    TORCH_CHECK(torch::allclose(sums[0], expected, 1e-4, 1e-4) && torch::equal(sums[0], sums[1]),
                "all-reduced sums differ from the full sum");
    return "both ranks hold the full feature sum (port " + std::to_string(server_store->getPort()) +
           ")";
  });

  ok &= step("FAISS: k-means pseudo labels", [&] {
    clustering::KMeansOptions options;
    options.k = flags.identities;
    options.seed = 1234;
    options.nredo = 5;  // random restarts: keep the best of five runs
    auto result = clustering::kmeans(features, options);
    const double purity = cluster_purity(result.labels, identities, options.k, flags.identities);
    std::ostringstream out;
    out << "K=" << options.k << ", purity " << std::setprecision(3) << purity;
    TORCH_CHECK(purity > 0.9, "k-means purity ", purity, " is too low");
    return out.str();
  });

  ok &= step("SQLite: job store round trip", [&] {
    const auto db = (workdir / "jobs.db").string();
    auto store = server::JobStore::Open(db);
    TORCH_CHECK(store.ok(), std::string(store.status().message()));
    auto id = (*store)->insert_job("demo", R"({"kind":"demo"})");
    TORCH_CHECK(id.ok(), std::string(id.status().message()));
    TORCH_CHECK((*store)->update_state(*id, server::JobState::kSucceeded).ok(), "update failed");
    store->reset();
    auto reopened = server::JobStore::Open(db);  // read back from disk
    TORCH_CHECK(reopened.ok(), std::string(reopened.status().message()));
    auto job = (*reopened)->get_job(*id);
    TORCH_CHECK(job.ok(), std::string(job.status().message()));
    return "job " + std::to_string(*id) + " stored, reopened: " + to_string(job->state);
  });

  ok &= step("gRPC: health check on loopback", [&] {
    server::GrpcOptions options;
    options.address = "127.0.0.1:0";
    auto grpc_server = server::GrpcServer::Create(options, {});
    TORCH_CHECK(grpc_server.ok(), std::string(grpc_server.status().message()));
    auto answer = server::check_health((*grpc_server)->target());
    TORCH_CHECK(answer.ok(), std::string(answer.status().message()));
    return std::string((*grpc_server)->target()) + " answers " + to_string(*answer);
  });

  std::cout << "\n" << (ok ? "demo finished: every step passed" : "demo FAILED") << std::endl;
  return ok ? kExitOk : kExitFailure;
}

}  // namespace

void add_demo_command(CLI::App& app, Action& action) {
  auto flags = std::make_shared<DemoFlags>();
  auto* command =
      app.add_subcommand("demo", "Run the main job on the embedded default (no server, CPU)");
  command->add_option("--workdir", flags->workdir,
                      "directory for the demo's files (default: a new temporary one)");
  command->add_option("--identities", flags->identities, "synthetic identities")
      ->check(CLI::Range(int64_t{2}, int64_t{10000}))
      ->capture_default_str();
  command
      ->add_option("--images-per-identity", flags->images_per_identity,
                   "synthetic images per identity")
      ->check(CLI::Range(int64_t{2}, int64_t{10000}))
      ->capture_default_str();
  command->add_option("--seed", flags->seed, "random seed")->capture_default_str();
  command->callback([flags, &action] { action = [flags] { return run_demo(*flags); }; });
}

}  // namespace tandem::cli
