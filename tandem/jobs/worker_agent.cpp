#include "tandem/jobs/worker_agent.h"

#include <absl/strings/str_cat.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tandem/jobs/launcher.h"
#include "tandem/jobs/rank_events.h"
#include "tandem/rpc/channel.h"
#include "tandem/rpc/log.h"
#include "tandem/spec/job_spec.h"
#include "tandem/v1/worker.grpc.pb.h"
#include "tandem/worker/device.h"

namespace tandem::jobs {
namespace {

namespace fs = std::filesystem;
namespace v1 = tandem::v1;
using Clock = std::chrono::steady_clock;

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
  const fs::path& path() const { return path_; }
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

/// One event of a job's event log for the server.
v1::WorkerMessage event_message(const v1::AssignRank& assignment, RankEvent rank_event,
                                bool replayed) {
  v1::WorkerMessage message;
  auto* event = message.mutable_event();
  event->set_job_id(assignment.job_id());
  event->set_attempt(assignment.attempt());
  *event->mutable_event() = std::move(rank_event);
  event->set_replayed(replayed);
  return message;
}

/// The events of new lines; a line that is not a rank event is logged and
/// skipped (the job's own output is never lost: the file stays as it is).
std::vector<RankEvent> parse_lines(const std::vector<std::string>& lines, const fs::path& path) {
  std::vector<RankEvent> events;
  for (const std::string& line : lines) {
    try {
      events.push_back(parse_rank_event(line, path.string(), UnknownKeys::kIgnore));
    } catch (const std::invalid_argument& error) {
      rpc::log_warn(error.what());
    }
  }
  return events;
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

}  // namespace

class WorkerAgent::Impl {
 public:
  explicit Impl(WorkerAgentOptions options) : options_(std::move(options)) {
    ranks_.resize(static_cast<size_t>(options_.slots));
  }

  void stop() {
    stop_requested_.store(true);
    wakeup_.notify();
  }
  bool stopping() const {
    return stop_requested_.load() ||
           (options_.stop_signal != nullptr && options_.stop_signal->load() != 0);
  }
  std::string worker_id() const {
    std::lock_guard<std::mutex> lock(id_mutex_);
    return worker_id_;
  }

  int run() {
    rpc::log_info(absl::StrCat("connecting to ", options_.server));
    bool said_waiting = false;
    while (!stopping()) {
      const Session result = session();
      for (auto& rank : ranks_) {
        stop_rank_now(rank, "the control stream ended");
        rank.reset();  // the server restarts the job; nothing to report to
      }
      if (result == Session::kStopped) break;
      if (result == Session::kNoServer && !said_waiting) {
        rpc::log_info(absl::StrCat("no server at ", options_.server, " yet; retrying"));
        said_waiting = true;
      } else if (result == Session::kLost) {
        rpc::log_warn(absl::StrCat("lost the server at ", options_.server, "; reconnecting"));
        said_waiting = false;
      }
      for (int i = 0; i < 10 && !stopping(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    rpc::log_info(absl::StrCat("stopped"));
    return 0;
  }

 private:
  enum class Session { kNoServer, kLost, kStopped };

  Session session() {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
    arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    arguments.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    auto made = rpc::make_channel(options_.server, options_.security, arguments);
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
    reg->set_name(options_.name.empty() ? std::string(host) + ":" + std::to_string(::getpid())
                                        : options_.name);
    reg->set_device_kind(options_.device);
    reg->set_gpus(options_.gpus);
    reg->set_slots(options_.slots);
    reg->set_pid(::getpid());
    v1::WorkerCommand first;
    if (!write(hello) || !stream->Read(&first) || !first.has_registered()) {
      context.TryCancel();
      stream->Finish();
      return Session::kNoServer;
    }
    rpc::log_info(absl::StrCat("registered with ", options_.server, " as ",
                               first.registered().worker_id(), " (", reg->name(), ")"));
    {
      std::lock_guard<std::mutex> lock(id_mutex_);
      worker_id_ = first.registered().worker_id();
    }
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
      if (stopping()) {
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
    {
      std::lock_guard<std::mutex> lock(id_mutex_);
      worker_id_.clear();
    }
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
                                           static_cast<int64_t>(options_.grace_seconds * 1000));
      }
    }
  }

  template <typename Write>
  void start_rank(const v1::AssignRank& assignment, const Write& write) {
    auto rank = std::make_unique<RunningRank>();
    rank->assignment = assignment;
    std::string output_dir, failure;
    try {
      output_dir =
          tandem::spec::read_job_spec(assignment.spec_json(), "the assignment's spec").output_dir();
      if (output_dir.empty()) failure = "the assignment's spec has no output_dir";
    } catch (const std::invalid_argument& error) {
      failure = error.what();
    }
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
    child.exe = options_.engine.empty() ? self_executable() : options_.engine;
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
    if (options_.threads > 0)
      child.env.emplace_back("OMP_NUM_THREADS", std::to_string(options_.threads));
    // The rank's clustering client reads its TLS files from the environment
    // (rpc::ClientSecurity::from_environment). The worker's token stays
    // here: ranks do not call the job service.
    child.env.emplace_back("TANDEM_TLS_CA", options_.security.tls_ca_file);
    child.env.emplace_back("TANDEM_TLS_CERT", options_.security.tls_cert_file);
    child.env.emplace_back("TANDEM_TLS_KEY", options_.security.tls_key_file);
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
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) lines.push_back(line);
    }
    for (RankEvent& event : parse_lines(lines, events)) {
      if (event.event() != "epoch" && event.event() != "evaluation" && event.event() != "result")
        continue;
      write(event_message(assignment, std::move(event), /*replayed=*/true));
    }
  }

  template <typename Write>
  void forward_events(RunningRank& rank, const Write& write) {
    const std::vector<std::string> lines = rank.events.read_lines();
    if (lines.empty()) return;
    for (RankEvent& event : coalesce_iterations(parse_lines(lines, rank.events.path()))) {
      write(event_message(rank.assignment, std::move(event), /*replayed=*/false));
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
        rank->pid, std::chrono::milliseconds(static_cast<int64_t>(options_.grace_seconds * 1000)));
  }

  WorkerAgentOptions options_;
  std::atomic<bool> stop_requested_{false};
  mutable std::mutex id_mutex_;
  std::string worker_id_;
  Wakeup wakeup_;  // before ranks_: a rank's exit watch uses it
  /// One entry per slot (LOCAL_RANK); null when the slot is free.
  std::vector<std::unique_ptr<RunningRank>> ranks_;
};

WorkerAgent::WorkerAgent(WorkerAgentOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

WorkerAgent::~WorkerAgent() = default;

int WorkerAgent::run() {
  return impl_->run();
}

void WorkerAgent::stop() {
  impl_->stop();
}

std::string WorkerAgent::worker_id() const {
  return impl_->worker_id();
}

/// --device, --gpus and --slots checked against what this host has: the
/// GPU count and slots it will offer, or a message naming the flag.
std::string resolve_worker_offer(WorkerAgentOptions& flags, const worker::DeviceProbe& probe) {
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

}  // namespace tandem::jobs
