#include "tandem/server/job_coordinator.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <iomanip>
#include <optional>
#include <sstream>
#include <utility>

#include <absl/strings/str_cat.h>
#include <sys/random.h>

#include "tandem/rpc/log.h"
#include "tandem/rpc/status.h"
#include "tandem/server/confinement.h"
#include "tandem/server/rendezvous.h"
#include "tandem/server/spec_limits.h"

namespace tandem::server {

using rpc::status_from_exceptions;
using rpc::to_grpc_status;
namespace {

namespace fs = std::filesystem;
namespace v1 = tandem::v1;
using Clock = std::chrono::steady_clock;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// "0.25 s", "600 s".
std::string seconds_text(Clock::duration duration) {
  const double seconds = std::chrono::duration<double>(duration).count();
  std::ostringstream out;
  out << std::setprecision(seconds < 10 ? 2 : 0) << std::fixed << seconds << " s";
  return out.str();
}

/// Events kept per job for subscribers that fall behind.
constexpr size_t kEventHistory = 4096;

/// A JobEvent carrying the job as it is now.
v1::JobEvent job_event(const v1::Job& job) {
  v1::JobEvent event;
  event.set_time_ms(now_ms());
  *event.mutable_job() = job;
  return event;
}

bool is_terminal(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

v1::JobState to_wire(JobState state) {
  switch (state) {
    case JobState::kQueued: return v1::QUEUED;
    case JobState::kRunning: return v1::RUNNING;
    case JobState::kSucceeded: return v1::SUCCEEDED;
    case JobState::kFailed: return v1::FAILED;
    case JobState::kCancelled: return v1::CANCELLED;
  }
  return v1::JOB_STATE_UNSPECIFIED;
}

JobState from_wire(v1::JobState state) {
  switch (state) {
    case v1::RUNNING: return JobState::kRunning;
    case v1::SUCCEEDED: return JobState::kSucceeded;
    case v1::FAILED: return JobState::kFailed;
    case v1::CANCELLED: return JobState::kCancelled;
    default: return JobState::kQueued;
  }
}

std::string to_json(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

/// The spec a rank runs: the server-only world_size removed.
std::string rank_spec_json(v1::JobSpec spec) {
  spec.clear_world_size();
  return to_json(spec);
}

int world_size_of(const v1::JobSpec& spec) {
  return spec.has_world_size() ? spec.world_size() : 1;
}

/// Which slots a job's ranks may take: `device: cuda` / `cuda:N` only GPU
/// slots; `device: cpu` any slot (its ranks train on the CPU wherever they
/// are); `auto` (the default) all GPU slots or all CPU workers' slots, never
/// a mix (its ranks would pick different backends).
enum class SlotPool { kGpu, kAny, kGpuOrCpu };

SlotPool pool_of(const v1::JobSpec& spec) {
  const std::string device = spec.has_device() ? spec.device() : "auto";
  if (device.rfind("cuda", 0) == 0) return SlotPool::kGpu;
  if (device == "cpu") return SlotPool::kAny;
  return SlotPool::kGpuOrCpu;
}

/// "slot" / "GPU slot", plural when n != 1.
std::string slots_word(SlotPool pool, int n) {
  return std::string(pool == SlotPool::kGpu ? "GPU slot" : "slot") + (n == 1 ? "" : "s");
}

v1::JobPhase phase_of(const std::string& name) {
  if (name == "extract") return v1::EXTRACT;
  if (name == "cluster") return v1::CLUSTER;
  if (name == "train") return v1::TRAIN;
  if (name == "evaluate") return v1::EVALUATE;
  if (name == "checkpoint") return v1::CHECKPOINT;
  return v1::JOB_PHASE_UNSPECIFIED;
}

/// 128 random bits as 32 hex digits: a job id nobody can guess.
std::string random_job_id() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("getrandom failed: cannot make a job id");
    }
    got += static_cast<size_t>(n);
  }
  static const char* kHex = "0123456789abcdef";
  std::string id;
  for (const unsigned char b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  return id;
}

/// A number of the event JSON, flattened into `values` under `prefix`.
/// The numbers of a rank event's message, by field name (sub-messages as
/// "pseudo_labels.adjusted_rand"): what an EpochSummary shows. Strings,
/// booleans and repeated fields (the retrieval metrics) are left out.
void flatten_numbers(const google::protobuf::Message& message, const std::string& prefix,
                     google::protobuf::Map<std::string, double>& values) {
  using google::protobuf::FieldDescriptor;
  const auto* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    if (field->is_repeated()) continue;
    const std::string name = prefix.empty() ? field->name() : prefix + "." + field->name();
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        values[name] = reflection->GetInt32(message, field);
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        values[name] = static_cast<double>(reflection->GetInt64(message, field));
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        values[name] = reflection->GetDouble(message, field);
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        flatten_numbers(reflection->GetMessage(message, field), name, values);
        break;
      default: break;
    }
  }
}

/// mAP / rank-1 of an epoch event: one per evaluated model (mmt: the better
/// teacher's, MMT's model selection), or a classification job's accuracy.
bool read_metrics(const v1::RankEvent& event, int64_t epoch, v1::Metrics& metrics) {
  metrics.set_epoch(epoch);
  bool any = false;
  if (event.map_size() > 0) {
    int best = 0;
    for (int i = 1; i < event.map_size(); ++i) {
      if (event.map(i) > event.map(best)) best = i;
    }
    metrics.set_map(event.map(best));
    metrics.set_rank1(best < event.rank1_size() ? event.rank1(best) : 0);
    metrics.set_rank5(best < event.rank5_size() ? event.rank5(best) : 0);
    any = true;
  }
  if (event.has_target_accuracy()) {
    metrics.set_target_accuracy(event.target_accuracy());
    any = true;
  }
  return any;
}

}  // namespace

struct JobCoordinator::Worker {
  std::string id;
  v1::RegisterWorker info;
  std::shared_ptr<WorkerChannel> channel;
  Clock::time_point last_heartbeat;
  /// True for `tandem worker --device cuda`: slot i trains on cuda:i.
  bool gpu = false;
  /// One entry per slot (LOCAL_RANK): the job, attempt and rank it runs
  /// (job_id "" when idle).
  struct SlotUse {
    std::string job_id;
    int64_t attempt = 0;
    int rank = -1;
  };
  std::vector<SlotUse> slots;
  std::string label() const { return info.name() + " (" + id + ")"; }
  /// Frees the slots of `job_id` (one attempt, or every attempt when -1).
  void release(const std::string& job_id, int64_t attempt = -1) {
    for (auto& slot : slots) {
      if (slot.job_id == job_id && (attempt < 0 || slot.attempt == attempt)) slot = SlotUse{};
    }
  }
};

struct JobCoordinator::Runtime {
  int64_t db_id = 0;
  v1::Job job;
  int64_t attempts = 0;
  /// Failed attempts so far (restarts used).
  int failures = 0;
  // The running attempt: one entry per rank, with the worker and its slot.
  struct Slot {
    std::string worker_id;
    bool done = false;
    int exit_code = 0;
    int local_rank = 0;
  };
  std::vector<Slot> slots;
  std::string attempt_error;
  std::unique_ptr<Rendezvous> rendezvous;
  // While QUEUED: since when (submitted, loaded by this server or queued
  // again after a failed attempt), and since when its world size has been
  // above every capacity this server has seen (empty when it is not).
  Clock::time_point queued_since = Clock::now();
  std::optional<Clock::time_point> unplaceable_since;
  // Events for WatchJob.
  std::deque<std::pair<int64_t, v1::JobEvent>> events;
  int64_t next_seq = 0;
  Clock::time_point last_persist;
};

JobCoordinator::JobCoordinator(JobStore& store, CoordinatorOptions options, SpecValidator validator)
    : store_(store), options_(std::move(options)), validator_(std::move(validator)) {}

JobCoordinator::~JobCoordinator() {
  stop();
}

absl::Status JobCoordinator::start() {
  auto records = store_.list_jobs();
  if (!records.ok()) return records.status();
  std::lock_guard<std::mutex> lock(mutex_);
  for (const JobRecord& record : *records) {
    auto rt = std::make_unique<Runtime>();
    rt->db_id = record.id;
    rt->attempts = record.attempts;
    v1::Job& job = rt->job;
    if (!record.progress_json.empty() && record.progress_json != "{}") {
      if (!google::protobuf::util::JsonStringToMessage(record.progress_json, &job).ok()) {
        rpc::log_warn(absl::StrCat("job ", record.id, ": unreadable progress, kept as is"));
      }
    }
    if (!google::protobuf::util::JsonStringToMessage(record.spec_json, job.mutable_spec()).ok()) {
      return absl::DataLossError("job store: job " + std::to_string(record.id) +
                                 " has an unreadable spec");
    }
    job.set_id(record.public_id.empty() ? std::to_string(record.id) : record.public_id);
    job.set_owner(record.owner);
    job.set_state(to_wire(record.state));
    job.set_error(record.error);
    job.set_created_ms(record.created_ms);
    job.set_updated_ms(record.updated_ms);
    job.clear_waiting_reason();
    if (record.state == JobState::kRunning && job.cancel_requested()) {
      // The previous server died while the job's ranks were being stopped.
      job.set_state(v1::CANCELLED);
      job.set_phase(v1::JOB_PHASE_UNSPECIFIED);
      job.set_finished_ms(now_ms());
      job.clear_workers();
      TANDEM_RETURN_IF_ERROR(persist_locked(*rt));
      rpc::log_info(absl::StrCat("job ", rt->job.id(),
                                 " was being cancelled when the server stopped; cancelled"));
    } else if (record.state == JobState::kRunning) {
      // The previous server died with the job running: queue it again; it
      // resumes from its last checkpoint.
      job.set_state(v1::QUEUED);
      job.set_phase(v1::JOB_PHASE_UNSPECIFIED);
      job.clear_workers();
      TANDEM_RETURN_IF_ERROR(persist_locked(*rt));
      rpc::log_info(
          absl::StrCat("job ", rt->job.id(), " was running when the server stopped; queued again"));
    }
    ids_[rt->job.id()] = record.id;
    jobs_[record.id] = std::move(rt);
  }
  stopping_ = false;
  scheduler_ = std::thread([this] { scheduler_loop(); });
  return absl::OkStatus();
}

void JobCoordinator::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ && !scheduler_.joinable()) return;
    stopping_ = true;
    for (auto& [id, worker] : workers_) worker->channel->close();
  }
  changed_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
}

JobCoordinator::Runtime* JobCoordinator::find(const std::string& id) const {
  const auto row = ids_.find(id);
  if (row == ids_.end()) return nullptr;
  const auto it = jobs_.find(row->second);
  return it == jobs_.end() ? nullptr : it->second.get();
}

absl::Status JobCoordinator::take_submit_locked(const std::string& owner) {
  if (options_.submits_per_minute <= 0) return absl::OkStatus();
  const auto now = Clock::now();
  const double capacity = options_.submits_per_minute;
  SubmitBucket& bucket =
      submit_buckets_.try_emplace(owner, SubmitBucket{capacity, now}).first->second;
  const double minutes = std::chrono::duration<double>(now - bucket.refilled).count() / 60.0;
  bucket.tokens = std::min(capacity, bucket.tokens + minutes * capacity);
  bucket.refilled = now;
  if (bucket.tokens < 1.0) {
    const double wait_s = (1.0 - bucket.tokens) / capacity * 60.0;
    std::ostringstream message;
    message << "submit rate: '" << owner << "' may submit " << capacity
            << " jobs per minute (--submit-rate); try again in " << std::fixed
            << std::setprecision(1) << wait_s << " s";
    return absl::ResourceExhaustedError(message.str());
  }
  bucket.tokens -= 1.0;
  return absl::OkStatus();
}

absl::StatusOr<v1::Job> JobCoordinator::submit(const v1::JobSpec& submitted,
                                               const std::string& owner) {
  v1::JobSpec spec = submitted;
  // The rate first: every attempt costs, valid or not (validation reads the
  // data sets).
  {
    std::lock_guard<std::mutex> lock(mutex_);
    TANDEM_RETURN_IF_ERROR(take_submit_locked(owner));
  }
  if (spec.kind().empty())
    return absl::InvalidArgumentError("spec.kind: missing (pretrain, mmt, ...)");
  TANDEM_RETURN_IF_ERROR(check_spec_limits(spec));
  if (spec.has_world_size() && spec.world_size() < 1) {
    return absl::InvalidArgumentError("spec.world_size: must be >= 1, got " +
                                      std::to_string(spec.world_size()));
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const SlotPool pool = pool_of(spec);
    const int capacity = std::max(pool == SlotPool::kGpu ? 0 : options_.expected_workers,
                                  capacity_locked(static_cast<int>(pool)));
    if (capacity > 0 && world_size_of(spec) > capacity) {
      return absl::FailedPreconditionError(
          "spec.world_size: " + std::to_string(world_size_of(spec)) + " ranks, but at most " +
          std::to_string(capacity) + " " + slots_word(pool, capacity) +
          " have registered (start more `tandem worker`s" +
          (pool == SlotPool::kGpu ? ", `--device cuda`" : " or raise --expect-workers") + ")");
    }
  }
  // Confined before anything reads the paths: an outside path gets the same
  // answer whether or not it exists.
  const std::string public_id = random_job_id();
  TANDEM_RETURN_IF_ERROR(confine_output_dir(spec, options_.jobs_dir, public_id));
  if (options_.data_roots) {
    // Weights earlier jobs wrote may be read from the jobs folder too.
    TANDEM_RETURN_IF_ERROR(confine_data_paths(spec, *options_.data_roots, {options_.jobs_dir}));
  }
  if (validator_) {
    const absl::Status valid = status_from_exceptions([&] { return validator_(spec); });
    if (!valid.ok()) return valid;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (options_.max_queued_per_principal > 0) {
    int queued = 0;
    for (const auto& [row, rt] : jobs_) {
      queued += rt->job.state() == v1::QUEUED && rt->job.owner() == owner;
    }
    if (queued >= options_.max_queued_per_principal) {
      return absl::ResourceExhaustedError(
          "queue cap: '" + owner + "' already has " + std::to_string(queued) +
          " queued jobs, the most the server allows (--max-queued); wait for some to start or "
          "cancel them");
    }
  }
  // One folder per job: DeleteJob and retention remove it, so no job may
  // write into (or around) another's. Stored folders were resolved when
  // their jobs were submitted, so a lexical comparison is enough here (no
  // file-system calls under the lock).
  for (const auto& [row, other] : jobs_) {
    const std::string& theirs = other->job.spec().output_dir();
    if (!theirs.empty() && (is_within_lexically(spec.output_dir(), theirs) ||
                            is_within_lexically(theirs, spec.output_dir()))) {
      return absl::FailedPreconditionError("spec.output_dir: " + spec.output_dir() +
                                           " overlaps the folder of job " + other->job.id() + " (" +
                                           theirs + "); choose another folder");
    }
  }
  // Durable before we answer.
  auto id = store_.insert_job(spec.kind(), to_json(spec), public_id, owner);
  if (!id.ok()) return id.status();
  auto rt = std::make_unique<Runtime>();
  rt->db_id = *id;
  v1::Job& job = rt->job;
  *job.mutable_spec() = spec;
  job.set_id(public_id);
  job.set_owner(owner);
  job.set_state(v1::QUEUED);
  job.set_created_ms(now_ms());
  job.set_updated_ms(job.created_ms());
  TANDEM_RETURN_IF_ERROR(persist_locked(*rt));
  Runtime& stored = *rt;
  ids_[public_id] = *id;
  jobs_[*id] = std::move(rt);
  publish_job_locked(stored);
  changed_.notify_all();
  return stored.job;
}

absl::StatusOr<v1::Job> JobCoordinator::get(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const Runtime* rt = find(id);
  if (rt == nullptr) return absl::NotFoundError("id: no job '" + id + "'");
  return rt->job;
}

std::vector<v1::Job> JobCoordinator::list(const std::vector<v1::JobState>& states,
                                          int limit) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<v1::Job> out;
  const size_t cap = limit > 0 ? static_cast<size_t>(limit) : 100;
  for (auto it = jobs_.rbegin(); it != jobs_.rend() && out.size() < cap; ++it) {
    const v1::Job& job = it->second->job;
    if (!states.empty() && std::find(states.begin(), states.end(), job.state()) == states.end())
      continue;
    out.push_back(job);
  }
  return out;
}

absl::StatusOr<v1::Job> JobCoordinator::cancel(const std::string& id,
                                               std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mutex_);
  Runtime* rt = find(id);
  if (rt == nullptr) return absl::NotFoundError("id: no job '" + id + "'");
  if (is_terminal(rt->job.state())) {
    return absl::FailedPreconditionError("job " + id + " already ended (" +
                                         v1::JobState_Name(rt->job.state()) + ")");
  }
  if (rt->job.state() == v1::QUEUED) {
    rt->job.set_state(v1::CANCELLED);
    rt->job.clear_waiting_reason();
    rt->job.set_finished_ms(now_ms());
    TANDEM_RETURN_IF_ERROR(persist_locked(*rt));
    publish_job_locked(*rt);
    return rt->job;
  }
  if (!rt->job.cancel_requested()) {
    // Stored before the ranks are told: a server that dies now still ends
    // the job CANCELLED when it comes back (start()).
    rt->job.set_cancel_requested(true);
    if (const absl::Status stored = persist_locked(*rt); !stored.ok()) {
      rt->job.set_cancel_requested(false);  // not requested: a retry asks again
      return stored;
    }
    publish_job_locked(*rt);
    stop_ranks_locked(*rt);
  }
  changed_.wait_for(lock, wait, [&] { return is_terminal(rt->job.state()); });
  return rt->job;
}

absl::StatusOr<v1::DeleteJobResponse> JobCoordinator::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  Runtime* rt = find(id);
  if (rt == nullptr) return absl::NotFoundError("id: no job '" + id + "'");
  if (!is_terminal(rt->job.state())) {
    return absl::FailedPreconditionError("job " + id + " is " + v1::JobState_Name(rt->job.state()) +
                                         "; cancel it before deleting it");
  }
  v1::DeleteJobResponse response;
  response.set_id(id);
  auto removed = remove_locked(*rt);
  if (!removed.ok()) return removed.status();
  response.set_removed_output_dir(*removed);
  return response;
}

absl::StatusOr<std::string> JobCoordinator::remove_locked(Runtime& rt) {
  const std::string id = rt.job.id();
  const std::string output_dir = rt.job.spec().output_dir();
  // The row first: a crash after it leaves at most an orphaned folder under
  // jobs_dir, never a job whose files are gone.
  TANDEM_RETURN_IF_ERROR(store_.delete_job(rt.db_id));
  const int64_t row = rt.db_id;
  ids_.erase(id);
  jobs_.erase(row);  // rt is gone from here on
  std::string removed;
  std::error_code error;
  // Only folders under jobs_dir (older jobs may name others: left alone).
  if (!output_dir.empty() && is_strictly_within(output_dir, options_.jobs_dir) &&
      fs::exists(output_dir, error)) {
    fs::remove_all(output_dir, error);
    if (error) {
      rpc::log_error(absl::StrCat("job ", id, " deleted, but its folder ", output_dir,
                                  " could not be removed: ", error.message()));
    } else {
      removed = output_dir;
    }
  }
  changed_.notify_all();
  return removed;
}

void JobCoordinator::apply_retention_locked() {
  if (options_.retention.count() <= 0) return;
  const auto now = Clock::now();
  if (now - last_retention_ < std::chrono::seconds(10)) return;
  last_retention_ = now;
  const int64_t cutoff = now_ms() - options_.retention.count();
  std::vector<Runtime*> expired;
  for (const auto& [row, rt] : jobs_) {
    const v1::Job& job = rt->job;
    const int64_t ended = job.finished_ms() > 0 ? job.finished_ms() : job.updated_ms();
    if (is_terminal(job.state()) && ended < cutoff) expired.push_back(rt.get());
  }
  for (Runtime* rt : expired) {
    const std::string id = rt->job.id();
    auto removed = remove_locked(*rt);
    if (!removed.ok()) {
      rpc::log_error(
          absl::StrCat("retention: job ", id, ": ", std::string(removed.status().message())));
    } else {
      rpc::log_info(absl::StrCat("retention: deleted job ", id,
                                 (removed->empty() ? "" : " and " + *removed)));
    }
  }
}

absl::Status JobCoordinator::watch(const std::string& id, double max_iteration_events_per_second,
                                   const std::function<bool(const v1::JobEvent&)>& send,
                                   const std::function<bool()>& cancelled) {
  const double rate = max_iteration_events_per_second > 0 ? max_iteration_events_per_second : 2.0;
  const auto min_gap = std::chrono::duration<double>(1.0 / rate);
  std::unique_lock<std::mutex> lock(mutex_);
  Runtime* rt = find(id);
  if (rt == nullptr) return absl::NotFoundError("id: no job '" + id + "'");
  int64_t seq = rt->next_seq;
  const v1::JobEvent first = job_event(rt->job);
  bool ended = is_terminal(rt->job.state());
  lock.unlock();
  if (!send(first) || ended) return absl::OkStatus();
  Clock::time_point last_iteration{};
  std::vector<v1::JobEvent> batch;
  while (true) {
    lock.lock();
    changed_.wait_for(lock, std::chrono::milliseconds(250),
                      [&] { return rt->next_seq > seq || stopping_; });
    if (stopping_) return absl::UnavailableError("the server is shutting down");
    batch.clear();
    if (!rt->events.empty() && rt->events.front().first > seq) {
      // Fell behind the kept history: resynchronise with the job itself.
      batch.push_back(job_event(rt->job));
    } else {
      for (const auto& [s, event] : rt->events) {
        if (s >= seq) batch.push_back(event);
      }
    }
    seq = rt->next_seq;
    ended = is_terminal(rt->job.state());
    lock.unlock();
    for (size_t i = 0; i < batch.size(); ++i) {
      const v1::JobEvent& event = batch[i];
      if (event.has_iteration()) {
        // Within the rate limit iterations are skipped, except an epoch's
        // last (the bars end full).
        const auto now = Clock::now();
        const bool last = event.iteration().iteration() == event.iteration().iterations();
        if (now - last_iteration < min_gap && !last) continue;
        last_iteration = now;
      }
      if (!send(event)) return absl::OkStatus();
    }
    if (ended) return absl::OkStatus();
    if (cancelled && cancelled()) return absl::CancelledError("the client went away");
  }
}

std::string JobCoordinator::register_worker(const v1::RegisterWorker& info,
                                            std::shared_ptr<WorkerChannel> channel) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto worker = std::make_unique<Worker>();
  worker->id = "w" + std::to_string(next_worker_++);
  worker->info = info;
  if (worker->info.name().empty()) {
    worker->info.set_name(info.host() + ":" + std::to_string(info.pid()));
  }
  worker->channel = std::move(channel);
  worker->last_heartbeat = Clock::now();
  worker->gpu = info.device_kind() == "cuda";
  // Slots: as many as it offers (one rank per GPU by default), at most 256.
  const int offered =
      info.slots() > 0 ? info.slots() : (worker->gpu ? std::max(1, info.gpus()) : 1);
  worker->slots.resize(static_cast<size_t>(std::min(offered, 256)));
  const std::string id = worker->id;
  v1::WorkerCommand command;
  command.mutable_registered()->set_worker_id(id);
  command.mutable_registered()->set_heartbeat_seconds(
      std::chrono::duration<double>(options_.heartbeat_interval).count());
  worker->channel->send(command);
  rpc::log_info(absl::StrCat("worker ", worker->label(), " registered (",
                             (info.device_kind().empty() ? "cpu" : info.device_kind()), ", ",
                             info.gpus(), " GPUs, ", worker->slots.size(), " slot",
                             (worker->slots.size() == 1 ? "" : "s"), ")"));
  workers_[id] = std::move(worker);
  const SlotCounts now = slot_counts_locked();
  most_slots_.all = std::max(most_slots_.all, now.all);
  most_slots_.gpu = std::max(most_slots_.gpu, now.gpu);
  most_slots_.cpu = std::max(most_slots_.cpu, now.cpu);
  changed_.notify_all();
  return id;
}

void JobCoordinator::on_worker_message(const std::string& worker_id,
                                       const v1::WorkerMessage& message) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  Worker& worker = *it->second;
  worker.last_heartbeat = Clock::now();
  // A worker speaks only for the ranks it was assigned: events for the
  // attempt whose rank 0 it runs, exits for its own ranks. Anything else is
  // dropped (and logged): one worker cannot end or steer another's job.
  const auto runs = [&worker](const std::string& job_id, int64_t attempt, int rank) {
    return std::any_of(worker.slots.begin(), worker.slots.end(), [&](const Worker::SlotUse& slot) {
      return slot.job_id == job_id && slot.attempt == attempt && slot.rank == rank;
    });
  };
  if (message.has_event()) {
    const auto& event = message.event();
    if (!runs(event.job_id(), event.attempt(), 0)) {
      rpc::log_warn(absl::StrCat("worker ", worker.label(), " sent an event for job ",
                                 event.job_id(), " attempt ", event.attempt(),
                                 ", whose rank 0 it does not run; ignored"));
      return;
    }
    Runtime* rt = find(event.job_id());
    if (rt != nullptr && event.attempt() == rt->attempts && !rt->slots.empty()) {
      apply_event_locked(*rt, event.event(), event.replayed());
    }
  } else if (message.has_exited()) {
    const auto& exited = message.exited();
    if (!runs(exited.job_id(), exited.attempt(), exited.rank())) {
      rpc::log_warn(absl::StrCat("worker ", worker.label(), " reported the exit of rank ",
                                 exited.rank(), " of job ", exited.job_id(), " attempt ",
                                 exited.attempt(), ", which it does not run; ignored"));
      return;
    }
    for (auto& slot : worker.slots) {
      if (slot.job_id == exited.job_id() && slot.attempt == exited.attempt() &&
          slot.rank == exited.rank()) {
        slot = Worker::SlotUse{};
      }
    }
    Runtime* rt = find(exited.job_id());
    if (rt != nullptr && exited.attempt() == rt->attempts && exited.rank() >= 0 &&
        static_cast<size_t>(exited.rank()) < rt->slots.size() &&
        rt->slots[exited.rank()].worker_id == worker_id) {
      std::string error;
      if (exited.exit_code() != 0) {
        error = "rank " + std::to_string(exited.rank()) + " on worker " + worker.label() +
                " exited with code " + std::to_string(exited.exit_code());
        if (!exited.error_tail().empty()) error += ": " + exited.error_tail();
      }
      rank_ended_locked(*rt, exited.rank(), exited.exit_code(), error);
    }
    changed_.notify_all();
  }
}

void JobCoordinator::on_worker_disconnected(const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  worker_lost_locked(*it->second, "its control stream closed");
}

int JobCoordinator::live_workers() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int>(workers_.size());
}

void JobCoordinator::scheduler_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    check_heartbeats_locked();
    schedule_locked();
    apply_retention_locked();
    changed_.wait_for(lock, options_.tick);
  }
}

void JobCoordinator::check_heartbeats_locked() {
  const auto now = Clock::now();
  std::vector<Worker*> lost;
  for (auto& [id, worker] : workers_) {
    if (now - worker->last_heartbeat > options_.heartbeat_timeout) lost.push_back(worker.get());
  }
  for (Worker* worker : lost) {
    worker_lost_locked(*worker, "no heartbeat for " +
                                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                       options_.heartbeat_timeout)
                                                       .count()) +
                                    " s");
  }
}

JobCoordinator::SlotCounts JobCoordinator::slot_counts_locked() const {
  SlotCounts counts;
  for (const auto& [id, worker] : workers_) {
    const int n = static_cast<int>(worker->slots.size());
    counts.all += n;
    (worker->gpu ? counts.gpu : counts.cpu) += n;
  }
  return counts;
}

int JobCoordinator::capacity_locked(int pool) const {
  switch (static_cast<SlotPool>(pool)) {
    case SlotPool::kGpu: return most_slots_.gpu;
    case SlotPool::kAny: return most_slots_.all;
    case SlotPool::kGpuOrCpu: break;
  }
  return std::max(most_slots_.gpu, most_slots_.cpu);
}

void JobCoordinator::schedule_locked() {
  // Oldest queued job first (job ids grow with submission; a job queued
  // again after a failed attempt keeps its place). Ranks take slots (one
  // per CPU worker, one per GPU of a `--device cuda` worker; SlotPool says
  // which). Per job, in that order:
  //  - world size above the most slots of its pool ever registered at one
  //    time: it cannot start, so it holds nothing; after
  //    unplaceable_timeout it ends FAILED naming the world size and the
  //    capacity;
  //  - enough idle slots, and no older job holds them: it starts;
  //  - world size above the slots registered now (some were lost): it
  //    waits for them to come back and holds nothing;
  //  - otherwise it waits for running jobs to end. Until it has waited
  //    reserve_after, younger jobs that fit the idle slots start beside
  //    it (backfill); from then on it holds the idle slots, so the slots
  //    that free up gather for it and it is not starved.
  const auto now = Clock::now();
  const SlotCounts registered_now = slot_counts_locked();
  // Idle slots, a worker's slots together (a job's ranks fill one worker's
  // slots before the next worker's), GPU workers and CPU workers apart.
  std::vector<IdleSlot> idle_gpu, idle_cpu;
  for (auto& [wid, worker] : workers_) {
    for (size_t i = 0; i < worker->slots.size(); ++i) {
      if (worker->slots[i].job_id.empty())
        (worker->gpu ? idle_gpu : idle_cpu).push_back({worker.get(), static_cast<int>(i)});
    }
  }
  std::string holder;  // the older job that holds the idle slots
  for (auto& [id, entry] : jobs_) {
    Runtime& rt = *entry;
    if (rt.job.state() != v1::QUEUED) continue;
    const int world = world_size_of(rt.job.spec());
    const SlotPool pool = pool_of(rt.job.spec());
    const int capacity = capacity_locked(static_cast<int>(pool));
    const std::string wanted =
        "waiting for " + std::to_string(world) + " " + slots_word(pool, world) + ", ";
    if (world > capacity) {
      if (!rt.unplaceable_since) rt.unplaceable_since = now;
      const auto waited = now - *rt.unplaceable_since;
      if (options_.unplaceable_timeout.count() > 0 && waited >= options_.unplaceable_timeout) {
        const std::string more = pool == SlotPool::kGpu
                                     ? "start `tandem worker --device cuda` on GPU hosts"
                                     : "start more `tandem worker`s";
        fail_queued_locked(rt, "world_size " + std::to_string(world) +
                                   " exceeds the deployment's capacity: at most " +
                                   std::to_string(capacity) +
                                   (pool == SlotPool::kGpu ? " GPU slot(s)" : " slot(s)") +
                                   " registered at one time since the server "
                                   "started, and the job waited " +
                                   seconds_text(waited) + " (--unplaceable-timeout) for more; " +
                                   more + " and submit it again, or submit it with world_size <= " +
                                   std::to_string(std::max(capacity, 1)) +
                                   (pool == SlotPool::kGpu ? " or device: cpu" : ""));
        continue;
      }
      const int registered = pool == SlotPool::kGpu ? registered_now.gpu : registered_now.all;
      std::string reason = wanted + std::to_string(registered) + " registered";
      if (pool == SlotPool::kGpu && registered == 0) {
        reason += " (no worker offers GPUs: `tandem worker --device cuda`)";
      }
      set_waiting_reason_locked(rt, reason);
      continue;
    }
    rt.unplaceable_since.reset();
    // The slots this job may take now: GPU slots for cuda, all for cpu;
    // for auto, the GPU slots when they suffice, else the CPU workers'.
    std::vector<IdleSlot>* from = nullptr;
    std::vector<IdleSlot> any;
    int registered = 0;
    if (pool == SlotPool::kGpu) {
      from = &idle_gpu;
      registered = registered_now.gpu;
    } else if (pool == SlotPool::kAny) {
      any = idle_cpu;
      any.insert(any.end(), idle_gpu.begin(), idle_gpu.end());
      from = &any;
      registered = registered_now.all;
    } else if (world <= static_cast<int>(idle_gpu.size()) || registered_now.cpu < world) {
      from = &idle_gpu;
      registered = std::max(registered_now.gpu, registered_now.cpu);
    } else {
      from = &idle_cpu;
      registered = std::max(registered_now.gpu, registered_now.cpu);
    }
    if (holder.empty() && world <= static_cast<int>(from->size())) {
      std::vector<IdleSlot> chosen(from->begin(), from->begin() + world);
      // Taken: out of every idle list.
      const auto taken = [&](const IdleSlot& slot) {
        for (const auto& c : chosen) {
          if (c.worker == slot.worker && c.slot == slot.slot) return true;
        }
        return false;
      };
      for (auto* list : {&idle_gpu, &idle_cpu}) {
        list->erase(std::remove_if(list->begin(), list->end(), taken), list->end());
      }
      start_attempt_locked(rt, std::move(chosen));
      continue;
    }
    if (world > registered) {
      set_waiting_reason_locked(rt, wanted + std::to_string(registered) + " registered");
      continue;
    }
    const std::string free_text =
        wanted + std::to_string(from->size()) + " of " + std::to_string(registered) + " free";
    if (!holder.empty()) {
      set_waiting_reason_locked(
          rt, free_text + "; behind job " + holder + ", which holds the free slots");
    } else if (now - rt.queued_since >= options_.reserve_after) {
      holder = rt.job.id();
      set_waiting_reason_locked(rt, free_text + "; holding them (younger jobs wait)");
    } else {
      set_waiting_reason_locked(rt, free_text + "; younger jobs that fit may start meanwhile");
    }
  }
}

void JobCoordinator::set_waiting_reason_locked(Runtime& rt, const std::string& reason) {
  if (rt.job.waiting_reason() == reason) return;
  rt.job.set_waiting_reason(reason);
  publish_job_locked(rt);
}

void JobCoordinator::fail_queued_locked(Runtime& rt, const std::string& error) {
  v1::Job& job = rt.job;
  job.set_state(v1::FAILED);
  job.set_error(error);
  job.clear_waiting_reason();
  job.set_finished_ms(now_ms());
  rpc::log_info(absl::StrCat("job ", job.id(), " FAILED: ", error));
  persist_or_log_locked(rt);
  v1::JobEvent event;
  event.set_time_ms(now_ms());
  event.set_error(error);
  publish_locked(rt, std::move(event));
  publish_job_locked(rt);
  changed_.notify_all();
}

void JobCoordinator::start_attempt_locked(Runtime& rt, std::vector<IdleSlot> slots) {
  v1::Job& job = rt.job;
  const int world = static_cast<int>(slots.size());
  int port = 0;
  if (world > 1) {
    try {
      rt.rendezvous = std::make_unique<Rendezvous>(world, options_.advertise_host);
      port = rt.rendezvous->port();
    } catch (const std::exception& error) {
      rpc::log_error(absl::StrCat("job ", job.id(), ": ", error.what()));
      return;  // stays queued; the next tick tries again
    }
  }
  rt.attempts += 1;
  rt.attempt_error.clear();
  rt.slots.clear();
  job.set_state(v1::RUNNING);
  job.set_phase(v1::JOB_PHASE_UNSPECIFIED);
  job.set_error("");
  job.clear_workers();
  job.clear_waiting_reason();
  if (job.started_ms() == 0) job.set_started_ms(now_ms());
  const std::string spec_json = rank_spec_json(job.spec());
  for (int rank = 0; rank < world; ++rank) {
    const IdleSlot& slot = slots[static_cast<size_t>(rank)];
    Worker& worker = *slot.worker;
    worker.slots[static_cast<size_t>(slot.slot)] = {job.id(), rt.attempts, rank};
    rt.slots.push_back({worker.id, false, 0, slot.slot});
    // A worker with several slots: name#slot (its LOCAL_RANK).
    job.add_workers(worker.slots.size() == 1
                        ? worker.info.name()
                        : worker.info.name() + "#" + std::to_string(slot.slot));
  }
  persist_or_log_locked(rt);
  publish_job_locked(rt);
  rpc::log_info(absl::StrCat("job ", job.id(), " (", job.spec().kind(), ") attempt ", rt.attempts,
                             " on ", world, " slot(s)"));
  for (int rank = 0; rank < world; ++rank) {
    const IdleSlot& slot = slots[static_cast<size_t>(rank)];
    Worker& worker = *slot.worker;
    v1::WorkerCommand command;
    auto* assign = command.mutable_assign();
    assign->set_job_id(job.id());
    assign->set_attempt(rt.attempts);
    assign->set_spec_json(spec_json);
    assign->set_rank(rank);
    assign->set_world_size(world);
    assign->set_master_addr(options_.advertise_host);
    assign->set_master_port(port);
    assign->set_clustering_address(options_.clustering_address);
    assign->set_timeout_seconds(options_.rank_timeout_seconds);
    assign->set_share_timeout_seconds(options_.share_timeout_seconds);
    assign->set_local_rank(slot.slot);
    worker.channel->send(command);  // a broken stream is noticed as a lost worker
  }
}

void JobCoordinator::rank_ended_locked(Runtime& rt, int rank, int exit_code,
                                       const std::string& error) {
  auto& slot = rt.slots[static_cast<size_t>(rank)];
  if (slot.done) return;
  slot.done = true;
  slot.exit_code = exit_code;
  if (exit_code != 0 && rt.attempt_error.empty() && !rt.job.cancel_requested()) {
    rt.attempt_error = error.empty() ? "rank " + std::to_string(rank) + " failed" : error;
    stop_ranks_locked(rt);  // the job restarts as a whole
  }
  for (const auto& s : rt.slots) {
    if (!s.done) return;
  }
  finish_attempt_locked(rt);
}

void JobCoordinator::stop_ranks_locked(Runtime& rt) {
  v1::WorkerCommand command;
  command.mutable_stop()->set_job_id(rt.job.id());
  command.mutable_stop()->set_attempt(rt.attempts);
  std::set<std::string> told;  // one StopRank per worker stops all its ranks of the attempt
  for (const auto& slot : rt.slots) {
    if (slot.done || !told.insert(slot.worker_id).second) continue;
    const auto worker = workers_.find(slot.worker_id);
    if (worker != workers_.end()) worker->second->channel->send(command);
  }
}

void JobCoordinator::finish_attempt_locked(Runtime& rt) {
  v1::Job& job = rt.job;
  rt.rendezvous.reset();
  for (const auto& slot : rt.slots) {
    const auto worker = workers_.find(slot.worker_id);
    if (worker != workers_.end()) worker->second->release(job.id());
  }
  rt.slots.clear();
  job.set_phase(v1::JOB_PHASE_UNSPECIFIED);
  if (job.cancel_requested()) {
    job.set_state(v1::CANCELLED);
    job.set_finished_ms(now_ms());
  } else if (rt.attempt_error.empty()) {
    job.set_state(v1::SUCCEEDED);
    job.set_finished_ms(now_ms());
  } else {
    rt.failures += 1;
    v1::JobEvent event;
    event.set_time_ms(now_ms());
    if (rt.failures > options_.max_restarts) {
      job.set_state(v1::FAILED);
      job.set_error(rt.attempt_error);
      job.set_finished_ms(now_ms());
      event.set_error(rt.attempt_error + " (no restart left of " +
                      std::to_string(options_.max_restarts) + ")");
    } else {
      job.set_state(v1::QUEUED);
      rt.queued_since = Clock::now();
      event.set_error(rt.attempt_error + "; restarting from the last checkpoint (restart " +
                      std::to_string(rt.failures) + " of " + std::to_string(options_.max_restarts) +
                      ")");
    }
    rpc::log_info(absl::StrCat("job ", job.id(), ": ", event.error()));
    publish_locked(rt, std::move(event));
  }
  persist_or_log_locked(rt);
  publish_job_locked(rt);
  rpc::log_info(absl::StrCat("job ", job.id(), " ", v1::JobState_Name(job.state())));
  changed_.notify_all();
}

void JobCoordinator::worker_lost_locked(Worker& worker, const std::string& why) {
  rpc::log_info(absl::StrCat("worker ", worker.label(), " lost: ", why));
  worker.channel->close();
  std::set<std::string> job_ids;
  for (const auto& slot : worker.slots) {
    if (!slot.job_id.empty()) job_ids.insert(slot.job_id);
  }
  const std::string id = worker.id;
  const std::string label = worker.label();
  workers_.erase(id);  // `worker` is gone from here on
  for (const std::string& job_id : job_ids) {
    Runtime* rt = find(job_id);
    if (rt == nullptr) continue;
    // Every rank it ran; the first ends the attempt (the others stop).
    for (size_t rank = 0; rank < rt->slots.size(); ++rank) {
      if (rt->slots.empty()) break;  // the attempt ended with an earlier rank
      if (rt->slots[rank].worker_id == id && !rt->slots[rank].done) {
        rank_ended_locked(
            *rt, static_cast<int>(rank), -1,
            "rank " + std::to_string(rank) + ": worker " + label + " lost (" + why + ")");
      }
    }
  }
  changed_.notify_all();
}

void JobCoordinator::apply_event_locked(Runtime& rt, const v1::RankEvent& event, bool replayed) {
  const std::string& type = event.event();
  v1::Job& job = rt.job;
  const int64_t epoch = event.epoch();
  v1::JobEvent out;
  out.set_time_ms(now_ms());
  if (replayed && type != "epoch" && type != "evaluation" && type != "result") return;
  if (type == "iteration") {
    job.set_epoch(epoch);
    job.set_iteration(event.iteration());
    auto* summary = out.mutable_iteration();
    summary->set_epoch(epoch);
    summary->set_iteration(job.iteration());
    summary->set_iterations(event.iterations());
    summary->set_images_per_second(event.images_per_second());
    summary->set_eta_seconds(event.eta_seconds());
    *summary->mutable_losses() = event.losses();
    publish_locked(rt, std::move(out));
    if (Clock::now() - rt.last_persist >= options_.progress_write_interval) {
      persist_or_log_locked(rt);
    }
    return;
  }
  if (type == "phase") {
    job.set_phase(phase_of(event.phase()));
    job.set_epoch(epoch);
    if (job.phase() != v1::TRAIN) job.set_iteration(0);
    persist_or_log_locked(rt);
    publish_job_locked(rt);
    return;
  }
  if (type == "epoch" || type == "evaluation" || type == "result") {
    auto* summary = out.mutable_epoch();
    summary->set_epoch(type == "epoch" ? epoch : job.epoch());
    v1::RankEvent figures = event;  // what the summary lists besides the metrics
    figures.clear_epoch();
    flatten_numbers(figures, "", *summary->mutable_values());
    v1::Metrics metrics;
    if (read_metrics(event, summary->epoch(), metrics)) {
      *summary->mutable_metrics() = metrics;
      // One entry per epoch: an epoch trained again after a restart, or
      // replayed, replaces its entry.
      v1::Metrics* slot = nullptr;
      for (auto& m : *job.mutable_metrics()) {
        if (m.epoch() == metrics.epoch()) slot = &m;
      }
      if (slot != nullptr) {
        *slot = metrics;
      } else {
        *job.add_metrics() = metrics;
        std::sort(job.mutable_metrics()->begin(), job.mutable_metrics()->end(),
                  [](const v1::Metrics& a, const v1::Metrics& b) { return a.epoch() < b.epoch(); });
      }
    }
    if (!event.checkpoint().empty()) job.set_checkpoint(event.checkpoint());
    persist_or_log_locked(rt);
    if (replayed) return;
    publish_locked(rt, std::move(out));
    publish_job_locked(rt);
  }
}

void JobCoordinator::publish_locked(Runtime& rt, v1::JobEvent event) {
  rt.events.emplace_back(rt.next_seq++, std::move(event));
  while (rt.events.size() > kEventHistory) rt.events.pop_front();
  changed_.notify_all();
}

void JobCoordinator::publish_job_locked(Runtime& rt) {
  publish_locked(rt, job_event(rt.job));
}

absl::Status JobCoordinator::persist_locked(Runtime& rt) {
  v1::Job& job = rt.job;
  job.set_updated_ms(now_ms());
  // The progress fields; spec, state and error have their own columns.
  v1::Job progress = job;
  progress.clear_spec();
  progress.clear_id();
  progress.clear_state();
  progress.clear_error();
  progress.clear_created_ms();
  progress.clear_updated_ms();
  progress.clear_waiting_reason();
  progress.clear_owner();
  JobRecord record;
  record.id = rt.db_id;
  record.kind = job.spec().kind();
  record.spec_json = to_json(job.spec());
  record.state = from_wire(job.state());
  record.error = job.error();
  record.progress_json = to_json(progress);
  record.attempts = rt.attempts;
  rt.last_persist = Clock::now();
  return store_.update_job(record);
}

void JobCoordinator::persist_or_log_locked(Runtime& rt) {
  const absl::Status status = persist_locked(rt);
  if (!status.ok()) {
    rpc::log_error(absl::StrCat("job ", rt.job.id(), ": ", std::string(status.message())));
  }
}

}  // namespace tandem::server
