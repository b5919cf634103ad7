// `tandem demo`: the main job on the embedded default. Starts a server, a
// clustering service and two workers as local processes on loopback (Gloo),
// renders two synthetic pedestrian domains (a market-style source, a
// duke-style target; reused by later runs), and then acts as a user would,
// through the real CLI: submits two `pretrain` jobs on the source (one per
// worker, at once: MMT's two source models), then one `mmt` job on both
// workers (two data-parallel ranks, DBSCAN pseudo labels from the clustering
// service), watching each; prints the target's mAP and rank-1 before and
// after adaptation, and answers a ranking query with the top 5 marked right
// or wrong. Ctrl-C (or any failure) stops every child process.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tandem/cli/app.h"
#include "tandem/client/health_client.h"
#include "tandem/jobs/launcher.h"
#include "tandem/jobs/train_jobs.h"
#include "tandem/rpc/channel.h"
#include "tandem/v1/tandem.grpc.pb.h"
#include "tandem/worker/data/reid_dataset.h"

namespace tandem::cli {
namespace {

namespace fs = std::filesystem;
namespace v1 = tandem::v1;

std::atomic<int> g_demo_signal{0};
extern "C" void on_demo_signal(int signal) {
  g_demo_signal.store(signal);
}

struct DemoFlags {
  std::string workdir;
  int64_t ids = 200;
  uint64_t seed = 1;
  int64_t pretrain_epochs = 30;
  int64_t mmt_epochs = 30;
  int64_t iters = 30;
  int port = 50151;
};

/// The children the demo started, stopped on every way out.
class Children {
 public:
  ~Children() { stop_all(); }
  pid_t start(const jobs::ChildProcess& child) {
    const pid_t pid = jobs::spawn_child(child);
    pids_.push_back(pid);
    return pid;
  }
  void stop_all() {
    for (const pid_t pid : pids_) ::kill(pid, SIGTERM);  // all at once, then reap each
    for (const pid_t pid : pids_) jobs::terminate_child(pid, std::chrono::seconds(10));
    pids_.clear();
  }

 private:
  std::vector<pid_t> pids_;
};

/// Runs `tandem args...` in the foreground (its output is the demo's);
/// returns its exit code (130 after Ctrl-C).
int run_cli(const std::vector<std::string>& args) {
  jobs::ChildProcess child;
  child.exe = jobs::self_executable();
  child.args = args;
  const pid_t pid = jobs::spawn_child(child);
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (g_demo_signal.load() != 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, &status, 0);
      return 130;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return jobs::exit_code_of_status(status);
}

/// `tandem synth` of one domain unless an earlier run rendered it.
bool render(const DemoFlags& flags, const fs::path& dir, const std::string& domain) {
  const fs::path done = dir / ".rendered";
  const std::string stamp = domain + " ids " + std::to_string(flags.ids) + " seed " +
                            std::to_string(flags.seed) + " 64x32\n";
  {
    std::ifstream in(done);
    std::stringstream text;
    text << in.rdbuf();
    if (text.str() == stamp) {
      std::cout << "  " << domain << ": reusing " << dir.string() << std::endl;
      return true;
    }
  }
  fs::remove_all(dir);
  std::cout << "  " << domain << ": rendering " << flags.ids << " identities into " << dir.string()
            << std::endl;
  if (run_cli({"synth", "--out", dir.string(), "--domain", domain, "--ids",
               std::to_string(flags.ids), "--seed", std::to_string(flags.seed), "--height", "64",
               "--width", "32", "--quiet"}) != 0)
    return false;
  std::ofstream(done) << stamp;
  return true;
}

std::string common_spec(const DemoFlags& flags) {
  return "backbone: small\nbackbone_width: 16\nbackbone_depth: 2\nheight: 64\nwidth: 32\n"
         "identities: 8\ninstances: 4\nloader_threads: 1\niters: " +
         std::to_string(flags.iters) + "\n";
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

/// The job the server gave `id`, or an empty one.
v1::Job get_job(v1::Tandem::Stub& stub, const std::string& id) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::GetJobRequest request;
  request.set_id(id);
  v1::Job job;
  (void)stub.GetJob(&context, request, &job);
  return job;
}

/// Submits a spec file; returns the job id ("" on failure).
std::string submit(const std::string& address, const fs::path& spec, const fs::path& workdir) {
  const fs::path id_file = workdir / (spec.stem().string() + ".id");
  // `tandem submit --json` prints the Job; keep its id.
  jobs::ChildProcess child;
  child.exe = jobs::self_executable();
  child.args = {"submit", spec.string(), "--json", "--server", address};
  child.log = id_file;
  fs::remove(id_file);
  const pid_t pid = jobs::spawn_child(child);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::ifstream in(id_file);
  std::stringstream text;
  text << in.rdbuf();
  const std::string reply = text.str();
  const auto job = nlohmann::json::parse(reply.substr(0, reply.find('\n')), nullptr, false);
  if (jobs::exit_code_of_status(status) != 0 || !job.is_object() || !job.contains("id")) {
    std::cerr << "tandem demo: submitting " << spec.string() << " failed:\n" << reply;
    return "";
  }
  const std::string id = job["id"].get<std::string>();
  std::cout << "  submitted " << spec.filename().string() << " as job " << id << std::endl;
  return id;
}

/// The exit code after a watch that did not end in SUCCEEDED.
int stopped_or_failed(const std::string& id) {
  if (g_demo_signal.load() != 0) {
    std::cout << "\ntandem demo: interrupted; stopping the services" << std::endl;
    return 130;
  }
  std::cerr << "tandem demo: job " << id << " did not succeed" << std::endl;
  return kExitFailure;
}

std::string percent(double value) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << value;
  return out.str();
}

int run_demo(const DemoFlags& flags) {
  const auto started = std::chrono::steady_clock::now();
  fs::path workdir = flags.workdir;
  if (workdir.empty()) {
    const char* cache = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    workdir = cache != nullptr  ? fs::path(cache) / "tandem" / "demo"
              : home != nullptr ? fs::path(home) / ".cache" / "tandem" / "demo"
                                : fs::temp_directory_path() / "tandem-demo";
  }
  workdir = fs::absolute(workdir);
  fs::create_directories(workdir / "logs");
  struct sigaction action {};
  action.sa_handler = on_demo_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);

  std::cout << "tandem demo " << version()
            << ": the embedded default (server, clustering service and two workers as local "
               "processes, CPU, Gloo over loopback)\nwork directory "
            << workdir.string() << "\n\n1. Two synthetic camera networks" << std::endl;
  const fs::path source = workdir / "data" / "market", target = workdir / "data" / "duke";
  if (!render(flags, source, "market") || !render(flags, target, "duke")) return kExitFailure;
  if (g_demo_signal.load() != 0) return 130;

  // A fresh deployment every run: new job store and job folders.
  for (const char* stale : {"tandem.db", "tandem.db-wal", "tandem.db-shm"})
    fs::remove(workdir / stale);
  fs::remove_all(workdir / "jobs");
  const int port = flags.port > 0 ? flags.port : jobs::free_loopback_port();
  const int clustering_port = flags.port > 0 ? flags.port + 1 : jobs::free_loopback_port();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  const std::string clustering = "127.0.0.1:" + std::to_string(clustering_port);
  Children children;
  const auto background = [&](const std::string& name, std::vector<std::string> args) {
    jobs::ChildProcess child;
    child.exe = jobs::self_executable();
    child.args = std::move(args);
    child.log = workdir / "logs" / (name + ".log");
    fs::remove(child.log);
    children.start(child);
  };
  std::cout << "\n2. Services (logs in " << (workdir / "logs").string() << ")" << std::endl;
  background("cluster", {"cluster", "--listen", clustering});
  background("server", {"server", "--listen", address, "--db", (workdir / "tandem.db").string(),
                        "--jobs-dir", (workdir / "jobs").string(), "--clustering", clustering,
                        "--data-root", workdir.string()});
  for (const auto& target_address : {clustering, address}) {
    const auto ready = client::wait_until_serving(target_address, std::chrono::seconds(30));
    if (!ready.ok()) {
      std::cerr << "tandem demo: " << target_address << " did not come up: " << ready.message()
                << " (is the port in use? try --port)" << std::endl;
      return kExitFailure;
    }
  }
  for (int w = 0; w < 2; ++w) {
    background("worker-" + std::to_string(w), {"worker", "--server", address, "--name",
                                               "worker-" + std::to_string(w), "--threads", "1"});
  }
  std::cout << "  tandem server on " << address << ", tandem cluster on " << clustering
            << ", 2 tandem workers" << std::endl;
  // Plaintext: everything the demo starts listens on loopback.
  auto channel = rpc::make_channel(address, {});
  if (!channel.ok()) {
    std::cerr << "tandem demo: " << channel.status().message() << std::endl;
    return kExitFailure;
  }
  auto stub = v1::Tandem::NewStub(*channel);

  // 3. Two source models, one per worker, at the same time.
  std::cout << "\n3. Pre-training two source models (MMT's two peers), one per worker" << std::endl;
  std::vector<std::string> pretrain_ids;
  for (int s = 0; s < 2; ++s) {
    const fs::path spec = workdir / ("pretrain-" + std::to_string(s + 1) + ".yaml");
    write_text(
        spec,
        "kind: pretrain\nseed: " + std::to_string(flags.seed + s) +
            "\nsource: {kind: market1501, root: " + source.string() +
            "}\ntarget: {kind: market1501, root: " + target.string() + "}\n" + common_spec(flags) +
            "lr: 0.003\nepochs: " + std::to_string(flags.pretrain_epochs) + "\nwarmup_epochs: " +
            std::to_string(std::max<int64_t>(1, flags.pretrain_epochs / 20)) + "\nmilestones: [" +
            std::to_string(flags.pretrain_epochs * 3 / 4) + "]\neval_every: 0\n");
    pretrain_ids.push_back(submit(address, spec, workdir));
    if (pretrain_ids.back().empty()) return kExitFailure;
  }
  for (const auto& id : pretrain_ids) {
    if (run_cli({"watch", id, "--server", address}) != 0) return stopped_or_failed(id);
  }
  const v1::Job before = get_job(*stub, pretrain_ids[0]);
  if (before.metrics_size() == 0) {
    std::cerr << "tandem demo: job " << pretrain_ids[0] << " has no target metrics" << std::endl;
    return kExitFailure;
  }

  // 4. MMT on both workers.
  const auto target_data =
      worker::load_reid_dataset(worker::ReidDatasetKind::kMarket1501, target.string());
  // MMT's rho (1.6e-3 on Market-1501's 12,936 images), scaled to the same
  // neighbours per image on this target (docs/training.md).
  const double rho = jobs::rho_for_target(static_cast<int64_t>(target_data.train.size()));
  std::cout << "\n4. Mutual Mean-Teaching on the unlabelled target: 2 ranks (one per worker), "
               "DBSCAN pseudo labels from the clustering service"
            << std::endl;
  const fs::path mmt_spec = workdir / "mmt.yaml";
  std::ostringstream rho_text;
  rho_text << std::setprecision(6) << rho;
  write_text(mmt_spec, "kind: mmt\nseed: " + std::to_string(flags.seed) +
                           "\ntarget: {kind: market1501, root: " + target.string() +
                           "}\ninit_1: " + before.spec().output_dir() + "/model.pt\ninit_2: " +
                           get_job(*stub, pretrain_ids[1]).spec().output_dir() + "/model.pt\n" +
                           common_spec(flags) + "epochs: " + std::to_string(flags.mmt_epochs) +
                           "\nclustering: dbscan\nrho: " + rho_text.str() +
                           "\ncamera_standardise: true\neval_every: 3\nworld_size: 2\n");
  const std::string mmt_id = submit(address, mmt_spec, workdir);
  if (mmt_id.empty()) return kExitFailure;
  if (run_cli({"watch", mmt_id, "--server", address}) != 0) return stopped_or_failed(mmt_id);
  const v1::Job after = get_job(*stub, mmt_id);
  v1::Metrics best;
  for (const auto& m : after.metrics()) {
    if (m.map() > best.map()) best = m;
  }
  const v1::Metrics& direct = before.metrics(before.metrics_size() - 1);
  std::cout << "\n5. The target camera network (" << target_data.query.size() << " queries, "
            << target_data.gallery.size() << " gallery images)\n"
            << "  before adaptation (source model " << pretrain_ids[0] << "):  mAP "
            << percent(direct.map()) << "  rank-1 " << percent(direct.rank1()) << "\n"
            << "  after MMT (job " << mmt_id << ", best teacher, epoch " << best.epoch() + 1
            << "):     mAP " << percent(best.map()) << "  rank-1 " << percent(best.rank1())
            << std::endl;

  std::cout << "\n6. A ranking query: tandem rank " << mmt_id << " --query 0 --top 5" << std::endl;
  if (run_cli({"rank", mmt_id, "--query", "0", "--top", "5", "--server", address}) != 0) {
    return kExitFailure;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "\ndemo finished in " << std::fixed << std::setprecision(0) << seconds
            << " s; stopping the services (jobs and models stay in " << workdir.string() << ")"
            << std::endl;
  return kExitOk;
}

}  // namespace

void add_demo_command(CLI::App& app, Action& action) {
  auto flags = std::make_shared<DemoFlags>();
  auto* command = app.add_subcommand(
      "demo", "Run the main job on the embedded default: server, clustering, 2 workers, CPU");
  command->add_option("--workdir", flags->workdir,
                      "data, job store and job folders (default ~/.cache/tandem/demo; the "
                      "rendered data is reused)");
  command->add_option("--ids", flags->ids, "identities per synthetic domain")
      ->check(CLI::Range(int64_t{16}, int64_t{5000}))
      ->capture_default_str();
  command->add_option("--seed", flags->seed, "seed of the domains and the training")
      ->capture_default_str();
  command->add_option("--pretrain-epochs", flags->pretrain_epochs, "epochs of each source model")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}))
      ->capture_default_str();
  command->add_option("--mmt-epochs", flags->mmt_epochs, "epochs of MMT")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}))
      ->capture_default_str();
  command->add_option("--iters", flags->iters, "iterations per epoch")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}))
      ->capture_default_str();
  command
      ->add_option("--port", flags->port,
                   "the server's port (the clustering service's is +1; 0: any free ports)")
      ->check(CLI::Range(0, 65534))
      ->capture_default_str();
  command->callback([flags, &action] { action = [flags] { return run_demo(*flags); }; });
}

}  // namespace tandem::cli
