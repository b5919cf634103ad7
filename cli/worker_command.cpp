// `tandem worker --server ADDR`: a host of ranks. Registers with the server
// over the WorkerControl stream, offering slots (one per GPU with --device
// cuda, else --slots, default one), heartbeats, and runs each rank it is
// assigned as a `tandem train` child process with torchrun's variables (the
// rendezvous store is the server's; LOCAL_RANK is the slot, so a GPU
// worker's slot i trains on cuda:i). Rank 0 forwards its job's events
// (OUTPUT_DIR/events.jsonl) as they are written; every rank reports its
// exit. When the stream breaks (server gone or restarted) the ranks are
// stopped and the worker reconnects; SIGINT/SIGTERM stop both. With
// --tls-ca (and --tls-cert/--tls-key for mutual TLS) it dials over TLS and
// hands those files to its ranks (TANDEM_TLS_*), whose clustering client
// dials the clustering service with them; --token is the worker's own.
#include <absl/strings/str_cat.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tandem/cli/app.h"
#include "tandem/cli/launcher.h"
#include "tandem/cli/worker_command.h"
#include "tandem/rpc/channel.h"
#include "tandem/rpc/log.h"
#include "tandem/rpc/tls.h"
#include "tandem/server/grpc_server.h"
#include "tandem/v1/worker.grpc.pb.h"
#include "tandem/worker/device.h"

namespace tandem::cli {
namespace {

namespace fs = std::filesystem;
namespace v1 = tandem::v1;
using Clock = std::chrono::steady_clock;

std::atomic<int> g_stop_signal{0};
extern "C" void on_worker_signal(int signal) {
  g_stop_signal.store(signal);
}

struct WorkerFlags {
  std::string server = "127.0.0.1:50051";
  std::string name;
  std::string device = "cpu";
  /// --device cuda: GPUs it uses (-1: every visible one).
  int gpus = -1;
  /// Ranks at once (0: one per GPU for cuda, one for cpu).
  int slots = 0;
  /// Intra-op threads of each rank (0: the rank's default).
  int threads = 0;
  double grace_seconds = 10;
  /// Where this worker serves grpc.health.v1.Health (port 0: any).
  std::string health_listen = "127.0.0.1:0";
  /// TLS of that health listener (both or neither; plaintext by default).
  std::string health_tls_cert, health_tls_key;
  /// Empty ones come from TANDEM_TOKEN and TANDEM_TLS_CA/CERT/KEY
  /// (resolved in run_worker).
  rpc::ClientSecurity security;
};

/// The last `lines` lines of a file (at most 2,000 characters).
std::string tail_of(const fs::path& path, int lines = 15) {
  std::ifstream in(path);
  std::deque<std::string> kept;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find('\r') != std::string::npos) line = line.substr(line.rfind('\r') + 1);
    if (line.empty()) continue;
    kept.push_back(line);
    if (static_cast<int>(kept.size()) > lines) kept.pop_front();
  }
  std::string out;
  for (const auto& l : kept) out += l + "\n";
  if (out.size() > 2000) out = "..." + out.substr(out.size() - 2000);
  return out;
}

/// Appends complete new lines of a growing file.
class FileTail {
 public:
  FileTail() = default;
  explicit FileTail(fs::path path) : path_(std::move(path)) {
    std::error_code error;
    const auto size = fs::file_size(path_, error);
    offset_ = error ? 0 : static_cast<std::streamoff>(size);
  }
  std::vector<std::string> read_lines() {
    std::vector<std::string> lines;
    if (path_.empty()) return lines;
    std::ifstream in(path_, std::ios::binary);
    if (!in) return lines;
    in.seekg(offset_);
    std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    offset_ += static_cast<std::streamoff>(chunk.size());
    pending_ += chunk;
    size_t start = 0, end;
    while ((end = pending_.find('\n', start)) != std::string::npos) {
      if (end > start) lines.push_back(pending_.substr(start, end - start));
      start = end + 1;
    }
    pending_.erase(0, start);
    return lines;
  }

 private:
  fs::path path_;
  std::streamoff offset_ = 0;
  std::string pending_;
};

/// One line of a job's event log for the server.
v1::WorkerMessage event_message(const v1::AssignRank& assignment, const std::string& line,
                                bool replayed) {
  v1::WorkerMessage message;
  auto* event = message.mutable_event();
  event->set_job_id(assignment.job_id());
  event->set_attempt(assignment.attempt());
  event->set_event_json(line);
  event->set_replayed(replayed);
  return message;
}

/// How often rank 0's event log is read while it trains.
constexpr auto kEventPoll = std::chrono::milliseconds(250);
/// The longest the worker sleeps (how soon it notices SIGINT/SIGTERM).
constexpr auto kLongestSleep = std::chrono::milliseconds(250);

/// Wakes the worker's loop: a command arrived, the stream closed, the rank
/// exited. Between those the loop sleeps (no polling while a rank trains but
/// the event log's read every kEventPoll).
class Wakeup {
 public:
  void notify() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pending_ = true;
    }
    cv_.notify_one();
  }
  void wait_until(Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_until(lock, deadline, [&] { return pending_; });
    pending_ = false;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool pending_ = false;
};

/// A rank this worker runs in one of its slots. A thread waits for its exit
/// (without reaping it: the worker's loop does) and wakes the loop.
struct RunningRank {
  v1::AssignRank assignment;
  pid_t pid = -1;
  int exit_status = 0;
  fs::path log;
  FileTail events;
  std::optional<Clock::time_point> kill_at;
  std::thread exit_watch;

  void watch_exit(Wakeup& wakeup) {
    exit_watch = std::thread([pid = pid, &wakeup] {
      siginfo_t info{};
      while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) != 0 &&
             errno == EINTR) {
      }
      wakeup.notify();
    });
  }
  RunningRank() = default;
  RunningRank(const RunningRank&) = delete;
  RunningRank& operator=(const RunningRank&) = delete;
  /// Called once the child is reaped (or killed and reaped).
  ~RunningRank() {
    if (exit_watch.joinable()) exit_watch.join();
  }
};

class Worker {
 public:
  /// `flags` resolved: gpus and slots are the counts it offers.
  explicit Worker(WorkerFlags flags) : flags_(std::move(flags)) {
    ranks_.resize(static_cast<size_t>(flags_.slots));
  }

  int run() {
    rpc::log_info(absl::StrCat("connecting to ", flags_.server));
    bool said_waiting = false;
    while (g_stop_signal.load() == 0) {
      const Session result = session();
      for (auto& rank : ranks_) {
        stop_rank_now(rank, "the control stream ended");
        rank.reset();  // the server restarts the job; nothing to report to
      }
      if (result == Session::kStopped) break;
      if (result == Session::kNoServer && !said_waiting) {
        rpc::log_info(absl::StrCat("no server at ", flags_.server, " yet; retrying"));
        said_waiting = true;
      } else if (result == Session::kLost) {
        rpc::log_warn(absl::StrCat("lost the server at ", flags_.server, "; reconnecting"));
        said_waiting = false;
      }
      for (int i = 0; i < 10 && g_stop_signal.load() == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    rpc::log_info(absl::StrCat("stopped"));
    return kExitOk;
  }

 private:
  enum class Session { kNoServer, kLost, kStopped };

  Session session() {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
    arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    arguments.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    auto made = rpc::make_channel(flags_.server, flags_.security, arguments);
    if (!made.ok()) {  // checked in run_worker; a file that went away since
      rpc::log_error(absl::StrCat(std::string(made.status().message())));
      return Session::kNoServer;
    }
    const std::shared_ptr<grpc::Channel> channel = *made;
    if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(2))) {
      return Session::kNoServer;
    }
    auto stub = v1::WorkerControl::NewStub(channel);
    grpc::ClientContext context;
    auto stream = stub->Connect(&context);
    std::mutex write_mutex;
    const auto write = [&](const v1::WorkerMessage& message) {
      std::lock_guard<std::mutex> lock(write_mutex);
      return stream->Write(message);
    };
    v1::WorkerMessage hello;
    auto* reg = hello.mutable_register_();
    char host[256] = {0};
    ::gethostname(host, sizeof(host) - 1);
    reg->set_host(host);
    reg->set_name(flags_.name.empty() ? std::string(host) + ":" + std::to_string(::getpid())
                                      : flags_.name);
    reg->set_device_kind(flags_.device);
    reg->set_gpus(flags_.gpus);
    reg->set_slots(flags_.slots);
    reg->set_pid(::getpid());
    v1::WorkerCommand first;
    if (!write(hello) || !stream->Read(&first) || !first.has_registered()) {
      context.TryCancel();
      stream->Finish();
      return Session::kNoServer;
    }
    rpc::log_info(absl::StrCat("registered with ", flags_.server, " as ",
                               first.registered().worker_id(), " (", reg->name(), ")"));
    const auto heartbeat = std::chrono::milliseconds(
        static_cast<int64_t>(std::max(0.05, first.registered().heartbeat_seconds()) * 1000));

    // Commands arrive on a reader thread and are handled here, which owns
    // the rank.
    std::mutex queue_mutex;
    std::deque<v1::WorkerCommand> commands;
    std::atomic<bool> stream_open{true};
    std::thread reader([&] {
      v1::WorkerCommand command;
      while (stream->Read(&command)) {
        {
          std::lock_guard<std::mutex> lock(queue_mutex);
          commands.push_back(command);
        }
        wakeup_.notify();
      }
      stream_open.store(false);
      wakeup_.notify();
    });
    Session result = Session::kLost;
    auto next_heartbeat = Clock::now();
    while (true) {
      if (g_stop_signal.load() != 0) {
        result = Session::kStopped;
        break;
      }
      if (!stream_open.load()) break;
      std::deque<v1::WorkerCommand> todo;
      {
        std::lock_guard<std::mutex> lock(queue_mutex);
        todo.swap(commands);
      }
      for (const auto& command : todo) handle(command, write);
      for (auto& rank : ranks_) poll_rank(rank, write);
      if (Clock::now() >= next_heartbeat) {
        v1::WorkerMessage beat;
        beat.mutable_heartbeat()->set_time_ms(
            std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count());
        if (!write(beat)) break;
        next_heartbeat = Clock::now() + heartbeat;
      }
      auto wake_at = std::min(next_heartbeat, Clock::now() + kLongestSleep);
      for (const auto& rank : ranks_) {
        if (!rank) continue;
        wake_at = std::min(wake_at, Clock::now() + kEventPoll);
        if (rank->kill_at) wake_at = std::min(wake_at, *rank->kill_at);
      }
      wakeup_.wait_until(wake_at);
    }
    if (result == Session::kStopped) {
      for (auto& rank : ranks_) {
        if (!rank) continue;
        stop_rank_now(rank, "the worker was stopped");
        report_exit(rank, write);
      }
    }
    context.TryCancel();
    reader.join();
    stream->Finish();
    return result;
  }

  template <typename Write>
  void handle(const v1::WorkerCommand& command, const Write& write) {
    if (command.has_assign()) {
      const v1::AssignRank& assignment = command.assign();
      const int slot = assignment.local_rank();
      if (slot < 0 || slot >= static_cast<int>(ranks_.size())) {
        report_failure(assignment,
                       "the assignment names slot " + std::to_string(slot) +
                           ", but this worker "
                           "offers " +
                           std::to_string(ranks_.size()) + " slot(s)",
                       write);
        return;
      }
      auto& rank = ranks_[static_cast<size_t>(slot)];
      if (rank) {
        stop_rank_now(rank, "a new assignment arrived");
        report_exit(rank, write);
      }
      start_rank(assignment, write);
    } else if (command.has_stop()) {
      // Every rank of that attempt on this worker.
      for (auto& rank : ranks_) {
        if (!rank || rank->assignment.job_id() != command.stop().job_id() ||
            rank->assignment.attempt() != command.stop().attempt() || rank->kill_at)
          continue;
        rpc::log_info(absl::StrCat("stopping job ", rank->assignment.job_id(), " rank ",
                                   rank->assignment.rank()));
        ::kill(rank->pid, SIGTERM);
        rank->kill_at = Clock::now() + std::chrono::milliseconds(
                                           static_cast<int64_t>(flags_.grace_seconds * 1000));
      }
    }
  }

  template <typename Write>
  void start_rank(const v1::AssignRank& assignment, const Write& write) {
    auto rank = std::make_unique<RunningRank>();
    rank->assignment = assignment;
    const nlohmann::json spec = nlohmann::json::parse(assignment.spec_json(), nullptr, false);
    const std::string output_dir = spec.is_object() && spec.contains("output_dir")
                                       ? spec["output_dir"].get<std::string>()
                                       : "";
    std::string failure;
    if (output_dir.empty()) failure = "the assignment's spec has no output_dir";
    fs::path ranks_dir = fs::path(output_dir) / "ranks";
    std::error_code error;
    if (failure.empty()) fs::create_directories(ranks_dir, error);
    if (failure.empty() && error) failure = ranks_dir.string() + ": " + error.message();
    const std::string r = std::to_string(assignment.rank());
    const fs::path spec_path = ranks_dir / ("rank-" + r + ".spec.json");
    if (failure.empty()) {
      std::ofstream out(spec_path);
      out << assignment.spec_json() << "\n";
      if (!out.flush()) failure = spec_path.string() + ": cannot write";
    }
    if (!failure.empty()) {
      report_failure(assignment, failure, write);
      return;
    }
    rank->log = ranks_dir / ("rank-" + r + ".log");
    if (assignment.rank() == 0) {
      const fs::path events = fs::path(output_dir) / "events.jsonl";
      replay_results(assignment, events, write);
      rank->events = FileTail(events);
    }
    ChildProcess child;
    child.exe = self_executable();
    child.args = {"train",           spec_path.string(),
                  "--timeout",       std::to_string(assignment.timeout_seconds()),
                  "--share-timeout", std::to_string(assignment.share_timeout_seconds())};
    if (!assignment.clustering_address().empty()) {
      child.args.push_back("--clustering-service");
      child.args.push_back(assignment.clustering_address());
    }
    child.log = rank->log;
    child.env = {{"TANDEM_RESTART", std::to_string(assignment.attempt())},
                 {"WORLD_SIZE", std::to_string(assignment.world_size())},
                 {"RANK", r},
                 {"LOCAL_RANK", std::to_string(assignment.local_rank())}};
    if (assignment.world_size() > 1) {
      child.env.emplace_back("MASTER_ADDR", assignment.master_addr());
      child.env.emplace_back("MASTER_PORT", std::to_string(assignment.master_port()));
      child.env.emplace_back("TORCHELASTIC_USE_AGENT_STORE", "True");  // the server's store
    }
    if (flags_.threads > 0)
      child.env.emplace_back("OMP_NUM_THREADS", std::to_string(flags_.threads));
    // The rank's clustering client reads its TLS files from the environment
    // (rpc::ClientSecurity::from_environment). The worker's token stays
    // here: ranks do not call the job service.
    child.env.emplace_back("TANDEM_TLS_CA", flags_.security.tls_ca_file);
    child.env.emplace_back("TANDEM_TLS_CERT", flags_.security.tls_cert_file);
    child.env.emplace_back("TANDEM_TLS_KEY", flags_.security.tls_key_file);
    child.env.emplace_back("TANDEM_TOKEN", "");
    rank->pid = spawn_child(child);
    rank->watch_exit(wakeup_);
    rpc::log_info(absl::StrCat("job ", assignment.job_id(), " attempt ", assignment.attempt(),
                               ": rank ", r, " of ", assignment.world_size(), " started in slot ",
                               assignment.local_rank(), " (pid ", rank->pid, ", log ",
                               rank->log.string(), ")"));
    ranks_[static_cast<size_t>(assignment.local_rank())] = std::move(rank);
  }

  /// A rank that could not start: its exit, with why.
  template <typename Write>
  void report_failure(const v1::AssignRank& assignment, const std::string& why,
                      const Write& write) {
    rpc::log_error(
        absl::StrCat("job ", assignment.job_id(), " rank ", assignment.rank(), ": ", why));
    v1::WorkerMessage message;
    auto* exited = message.mutable_exited();
    exited->set_job_id(assignment.job_id());
    exited->set_attempt(assignment.attempt());
    exited->set_rank(assignment.rank());
    exited->set_exit_code(1);
    exited->set_error_tail(why);
    write(message);
  }

  /// The epoch results already in the job's event log: a server that was
  /// lost before it got them records them now (keyed by epoch).
  template <typename Write>
  void replay_results(const v1::AssignRank& assignment, const fs::path& events,
                      const Write& write) {
    std::ifstream in(events);
    for (std::string line; std::getline(in, line);) {
      if (line.find("\"event\":\"epoch\"") == std::string::npos &&
          line.find("\"event\":\"evaluation\"") == std::string::npos &&
          line.find("\"event\":\"result\"") == std::string::npos)
        continue;
      write(event_message(assignment, line, /*replayed=*/true));
    }
  }

  template <typename Write>
  void forward_events(RunningRank& rank, const Write& write) {
    for (const std::string& line : coalesce_iterations(rank.events.read_lines())) {
      write(event_message(rank.assignment, line, /*replayed=*/false));
    }
  }

  template <typename Write>
  void poll_rank(std::unique_ptr<RunningRank>& rank, const Write& write) {
    if (!rank) return;
    forward_events(*rank, write);
    if (rank->kill_at && Clock::now() >= *rank->kill_at) ::kill(rank->pid, SIGKILL);
    int status = 0;
    if (::waitpid(rank->pid, &status, WNOHANG) != rank->pid) return;
    rank->exit_status = status;
    report_exit(rank, write);
  }

  template <typename Write>
  void report_exit(std::unique_ptr<RunningRank>& rank, const Write& write) {
    forward_events(*rank, write);
    const int status = rank->exit_status;
    v1::WorkerMessage message;
    auto* exited = message.mutable_exited();
    exited->set_job_id(rank->assignment.job_id());
    exited->set_attempt(rank->assignment.attempt());
    exited->set_rank(rank->assignment.rank());
    exited->set_exit_code(exit_code_of_status(status));
    if (exited->exit_code() != 0) {
      exited->set_error_tail(describe_exit(status) + "; " + rank->log.string() + ":\n" +
                             tail_of(rank->log));
    }
    rpc::log_info(absl::StrCat("job ", rank->assignment.job_id(), " rank ", rank->assignment.rank(),
                               " ", describe_exit(status)));
    write(message);
    rank.reset();
  }

  /// SIGTERM, then SIGKILL after the grace period; waits for the rank.
  void stop_rank_now(std::unique_ptr<RunningRank>& rank, const char* why) {
    if (!rank || rank->pid <= 0) return;
    int status = 0;
    if (::waitpid(rank->pid, &status, WNOHANG) == rank->pid) {
      rank->exit_status = status;
      return;
    }
    rpc::log_info(absl::StrCat("stopping rank ", rank->assignment.rank(), " of job ",
                               rank->assignment.job_id(), " (", why, ")"));
    rank->exit_status = terminate_child(
        rank->pid, std::chrono::milliseconds(static_cast<int64_t>(flags_.grace_seconds * 1000)));
  }

  WorkerFlags flags_;
  Wakeup wakeup_;  // before ranks_: a rank's exit watch uses it
  /// One entry per slot (LOCAL_RANK); null when the slot is free.
  std::vector<std::unique_ptr<RunningRank>> ranks_;
};

/// --device, --gpus and --slots checked against what this host has: the
/// GPU count and slots it will offer, or a message naming the flag.
std::string resolve_offer(WorkerFlags& flags, const worker::DeviceProbe& probe) {
  if (flags.device == "cpu") {
    if (flags.gpus > 0) return "--gpus " + std::to_string(flags.gpus) + " needs --device cuda";
    flags.gpus = 0;
    if (flags.slots == 0) flags.slots = 1;
    return "";
  }
  if (!probe.cuda_built) return "--device cuda, but this build has no CUDA";
  if (probe.gpus == 0)
    return "--device cuda, but no GPU is visible (torch::cuda::device_count() is 0)";
  if (flags.gpus < 0) flags.gpus = static_cast<int>(probe.gpus);
  if (flags.gpus == 0 || flags.gpus > probe.gpus) {
    return "--gpus " + std::to_string(flags.gpus) + ", but " + std::to_string(probe.gpus) +
           " GPU(s) are visible";
  }
  if (flags.slots == 0) flags.slots = flags.gpus;
  if (flags.slots > flags.gpus) {
    return "--slots " + std::to_string(flags.slots) + " exceeds --gpus " +
           std::to_string(flags.gpus) + " (one rank per GPU)";
  }
  return "";
}

int run_worker(WorkerFlags flags) {
  if (const std::string error = resolve_offer(flags, worker::DeviceProbe::current());
      !error.empty()) {
    std::cerr << "tandem worker: " << error << std::endl;
    return kExitUsage;
  }
  flags.security.with_environment();
  // Absolute, as the ranks get them (they may run elsewhere than this
  // folder one day); and checked now, not on the first connection.
  for (std::string* file :
       {&flags.security.tls_ca_file, &flags.security.tls_cert_file, &flags.security.tls_key_file}) {
    if (!file->empty()) *file = fs::absolute(*file).lexically_normal().string();
  }
  if (auto checked = rpc::make_channel(flags.server, flags.security); !checked.ok()) {
    std::cerr << "tandem worker: " << checked.status().message() << std::endl;
    return kExitUsage;
  }
  rpc::init_logging("tandem worker");
  struct sigaction action {};
  action.sa_handler = on_worker_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  // Every Tandem process answers the standard health check.
  server::GrpcOptions health;
  health.address = flags.health_listen;
  rpc::ServerTls health_tls;
  health_tls.cert_file = flags.health_tls_cert;
  health_tls.key_file = flags.health_tls_key;
  health_tls.flag_prefix = "--health-";
  auto health_credentials = rpc::server_credentials(health_tls);
  if (!health_credentials.ok()) {
    std::cerr << "tandem worker: " << health_credentials.status().message() << std::endl;
    return kExitUsage;
  }
  health.credentials = *health_credentials;
  if (!health_tls.enabled() && !rpc::is_loopback_address(flags.health_listen)) {
    rpc::log_info(absl::StrCat("the health service on ", flags.health_listen,
                               " is plaintext (it answers SERVING only; "
                               "--health-tls-cert/--health-tls-key serve it over TLS)"));
  }
  auto health_server = server::GrpcServer::Create(health, {});
  if (!health_server.ok()) {
    std::cerr << "tandem worker: " << health_server.status().message() << std::endl;
    return kExitFailure;
  }
  rpc::log_info(absl::StrCat(
      "health service on ", (*health_server)->target(), "; ", flags.slots, " slot(s) on ",
      flags.device, (flags.device == "cuda" ? " (" + std::to_string(flags.gpus) + " GPUs)" : "")));
  Worker worker(flags);
  const int code = worker.run();
  (*health_server)->Shutdown(std::chrono::seconds(1));
  return code;
}

}  // namespace

void add_worker_command(CLI::App& app, Action& action) {
  auto flags = std::make_shared<WorkerFlags>();
  auto* command = app.add_subcommand(
      "worker", "Run ranks of the server's jobs: register, heartbeat, train when assigned");
  command->add_option("--server", flags->server, "host:port of `tandem server`")
      ->envname("TANDEM_SERVER")
      ->capture_default_str();
  command->add_option("--name", flags->name, "name shown in job listings (default host:pid)");
  command->add_option("--token", flags->security.token,
                      "bearer token of the `worker` role (default: $TANDEM_TOKEN)");
  command->add_option("--tls-ca", flags->security.tls_ca_file,
                      "PEM CA bundle that signs the server's and the clustering service's "
                      "certificates; given: TLS, also for the ranks (default: $TANDEM_TLS_CA)");
  command->add_option("--tls-cert", flags->security.tls_cert_file,
                      "PEM certificate of this worker and its ranks for mutual TLS "
                      "(default: $TANDEM_TLS_CERT)");
  command->add_option("--tls-key", flags->security.tls_key_file,
                      "PEM private key of --tls-cert (default: $TANDEM_TLS_KEY)");
  command
      ->add_option("--health-listen", flags->health_listen,
                   "host:port of this worker's grpc.health.v1 service (port 0: any free one)")
      ->capture_default_str();
  command->add_option("--health-tls-cert", flags->health_tls_cert,
                      "PEM certificate chain: serve the health service over TLS");
  command->add_option("--health-tls-key", flags->health_tls_key,
                      "PEM private key of --health-tls-cert");
  command->add_option("--device", flags->device, "device kind it offers")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  command
      ->add_option("--gpus", flags->gpus,
                   "--device cuda: GPUs it uses, cuda:0 .. cuda:N-1 (default: every visible one)")
      ->check(CLI::Range(0, 64));
  command
      ->add_option("--slots", flags->slots,
                   "ranks it runs at once, slot i as LOCAL_RANK i (default: one per GPU with "
                   "--device cuda, else 1)")
      ->check(CLI::Range(1, 256));
  command->add_option("--threads", flags->threads, "intra-op threads per rank (0: default)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  command
      ->add_option("--grace", flags->grace_seconds,
                   "seconds a stopped rank gets between SIGTERM and SIGKILL")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->callback([flags, &action] { action = [flags] { return run_worker(*flags); }; });
}

std::vector<std::string> coalesce_iterations(std::vector<std::string> lines) {
  const auto is_iteration = [](const std::string& line) {
    return line.find("\"event\":\"iteration\"") != std::string::npos;
  };
  const auto ends_epoch = [](const std::string& line) {
    const nlohmann::json event = nlohmann::json::parse(line, nullptr, false);
    return event.is_object() &&
           event.value("iteration", int64_t{-1}) == event.value("iterations", int64_t{-2});
  };
  std::vector<std::string> kept;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (is_iteration(lines[i]) && i + 1 < lines.size() && is_iteration(lines[i + 1]) &&
        !ends_epoch(lines[i]))
      continue;
    kept.push_back(std::move(lines[i]));
  }
  return kept;
}

}  // namespace tandem::cli
