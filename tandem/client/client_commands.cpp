// The client subcommands of `tandem`, talking to a `tandem.v1.Tandem`
// service (`tandem server`): submit, status, watch, cancel, delete, rank.
// Human output by default, the replies' protobuf JSON with --json; a gRPC
// error prints `tandem <command>: <CODE>: <message>` and exits 1. Every call
// carries the bearer token of --token (or TANDEM_TOKEN), over TLS when
// --tls-ca (or TANDEM_TLS_CA) names the server's CA (docs/security.md).
#include <google/protobuf/util/json_util.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <tandem/v1/tandem.grpc.pb.h>

#include "tandem/client/command.h"
#include "tandem/rpc/channel.h"
#include "tandem/rpc/status.h"
#include "tandem/spec/job_spec.h"

namespace tandem::client {
namespace {

namespace v1 = tandem::v1;

/// Flags every client command takes.
struct ClientFlags {
  std::string server = "127.0.0.1:50051";
  bool json = false;
  double timeout_s = 30;
  /// Empty ones are filled from TANDEM_TOKEN and TANDEM_TLS_CA/CERT/KEY
  /// (rpc::ClientSecurity::with_environment).
  std::string token, tls_ca, tls_cert, tls_key;
};

void add_client_flags(CLI::App& command, ClientFlags& flags) {
  command.add_option("--server", flags.server, "host:port of the Tandem server")
      ->envname("TANDEM_SERVER")
      ->capture_default_str();
  command.add_flag("--json", flags.json,
                   "print the replies as protobuf JSON (watch: one event per line)");
  command.add_option("--timeout", flags.timeout_s, "seconds to wait for each unary reply")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command.add_option("--token", flags.token,
                     "bearer token sent with every call (default: $TANDEM_TOKEN)");
  command.add_option("--tls-ca", flags.tls_ca,
                     "PEM CA bundle that signs the server's certificate; given: TLS "
                     "(default: $TANDEM_TLS_CA)");
  command.add_option("--tls-cert", flags.tls_cert,
                     "PEM client certificate for mutual TLS (default: $TANDEM_TLS_CERT)");
  command.add_option("--tls-key", flags.tls_key,
                     "PEM private key of --tls-cert (default: $TANDEM_TLS_KEY)");
}

/// The flags' security settings, the environment's where a flag is absent.
rpc::ClientSecurity security_of(const ClientFlags& flags) {
  rpc::ClientSecurity security;
  security.token = flags.token;
  security.tls_ca_file = flags.tls_ca;
  security.tls_cert_file = flags.tls_cert;
  security.tls_key_file = flags.tls_key;
  security.with_environment();
  return security;
}

/// How long a watch waits for a lost server to come back, by default.
constexpr double kDefaultReconnectSeconds = 120;

void add_reconnect_flag(CLI::App& command, double& seconds) {
  command
      .add_option("--reconnect", seconds,
                  "seconds to wait for a lost server to come back before giving up the watch "
                  "(0: give up at once)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

/// One message as protobuf JSON on one line, proto field names as keys.
std::string to_json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

/// "12s", "3m", "5h", "2d".
std::string age(int64_t since_ms) {
  if (since_ms <= 0) return "-";
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const int64_t s = std::max<int64_t>(0, (now - since_ms) / 1000);
  if (s < 120) return std::to_string(s) + "s";
  if (s < 2 * 3600) return std::to_string(s / 60) + "m";
  if (s < 2 * 86400) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

/// "1:05:09" or "4:07".
std::string clock(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds) + 0.5);
  std::ostringstream out;
  if (s >= 3600)
    out << s / 3600 << ":" << std::setw(2) << std::setfill('0') << s / 60 % 60;
  else
    out << s / 60;
  out << ":" << std::setw(2) << std::setfill('0') << s % 60;
  return out.str();
}

/// A figure: integers as integers (clusters, noise), others to 4 digits.
std::string figure(double value) {
  std::ostringstream out;
  if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 1e12) {
    out << static_cast<int64_t>(value);
  } else {
    out << std::setprecision(4) << value;
  }
  return out.str();
}

/// The epochs a job runs: the spec's, else its kind's default (the defaults
/// table, spec/job_spec.h); 0 when unknown, or for evaluate (no training).
int64_t planned_epochs(const v1::JobSpec& spec) {
  if (spec.has_epochs()) return spec.epochs();
  if (spec.kind() == "evaluate") return 0;
  const spec::FieldDefault* row = spec::default_for("epochs", spec.kind());
  return row != nullptr ? std::stoll(row->value) : 0;
}

/// "4/40" for the epoch a job is in (1-based), "-" when it has not started.
std::string epoch_column(const v1::Job& job) {
  const int64_t epochs = planned_epochs(job.spec());
  if (job.state() == v1::QUEUED || job.state() == v1::JOB_STATE_UNSPECIFIED) return "-";
  const int64_t epoch =
      job.state() == v1::SUCCEEDED && epochs > 0 ? epochs : std::max<int64_t>(job.epoch() + 1, 1);
  return epochs > 0 ? std::to_string(epoch) + "/" + std::to_string(epochs) : std::to_string(epoch);
}

std::string fixed1(double value) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << value;
  return out.str();
}

/// "mAP 56.7  rank-1 78.9  rank-5 88.0" (or the classification kinds' accuracy).
std::string metrics_text(const v1::Metrics& m) {
  std::ostringstream out;
  if (m.map() != 0 || m.rank1() != 0) {
    out << "mAP " << fixed1(m.map()) << "  rank-1 " << fixed1(m.rank1());
    if (m.rank5() > 0) out << "  rank-5 " << fixed1(m.rank5());
  } else {
    out << "target accuracy " << fixed1(100 * m.target_accuracy()) << "%";
  }
  return out.str();
}

/// Loss names in the trainers' order first (ce, tri, soft_ce, soft_tri), then
/// the rest by name.
std::vector<std::pair<std::string, double>> ordered(
    const google::protobuf::Map<std::string, double>& values) {
  static const std::vector<std::string> kFirst = {"ce", "tri", "soft_ce", "soft_tri"};
  std::vector<std::pair<std::string, double>> out;
  for (const auto& name : kFirst) {
    const auto it = values.find(name);
    if (it != values.end()) out.emplace_back(name, it->second);
  }
  std::map<std::string, double> rest;
  for (const auto& [name, value] : values) {
    if (std::find(kFirst.begin(), kFirst.end(), name) == kFirst.end()) rest[name] = value;
  }
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

std::string bar(double fraction, int width) {
  const auto filled = static_cast<int>(std::clamp(fraction, 0.0, 1.0) * width);
  return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
}

/// A left-aligned text table with a header row.
void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows,
                 const std::vector<bool>& right_aligned) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const bool right = c < right_aligned.size() && right_aligned[c];
      const std::string pad(width[c] - row[c].size(), ' ');
      line += (c ? "  " : "") + (right ? pad + row[c] : row[c] + pad);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  }
}

bool ended(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

/// The connection to the server and the error reporting of one command.
class Client {
 public:
  Client(const ClientFlags& flags, std::string command)
      : flags_(flags), command_(std::move(command)) {
    auto channel = rpc::make_channel(flags.server, security_of(flags));
    if (channel.ok()) {
      stub_ = v1::Tandem::NewStub(*channel);
    } else {
      setup_error_ = std::string(channel.status().message());
    }
  }

  /// Whether the channel could be made (TLS files readable); when not,
  /// setup_failed() reports why. Every command checks it first.
  bool ready() const { return stub_ != nullptr; }
  int setup_failed() const { return fail(setup_error_); }

  v1::Tandem::Stub& stub() { return *stub_; }
  const ClientFlags& flags() const { return flags_; }
  const std::string& command() const { return command_; }

  /// A context whose deadline is --timeout from now.
  std::unique_ptr<grpc::ClientContext> unary() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(flags_.timeout_s * 1000)));
    return context;
  }

  /// Prints `tandem <command>: <CODE>: <message>` and returns 1.
  int fail(const grpc::Status& status) const {
    std::cerr << "tandem " << command_ << ": " << rpc::code_name(status.error_code()) << ": ";
    switch (status.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
        std::cerr << "the server at " << flags_.server << " is not reachable ("
                  << status.error_message() << "). Start one with `tandem server --listen "
                  << flags_.server << "`, or point --server (or TANDEM_SERVER) at a running one.";
        break;
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        std::cerr << "no answer from the server at " << flags_.server << " within "
                  << flags_.timeout_s << " s (--timeout)";
        break;
      case grpc::StatusCode::UNAUTHENTICATED:
        std::cerr << "the server at " << flags_.server
                  << " refused the call: " << status.error_message()
                  << ". Give a token with --token or TANDEM_TOKEN";
        break;
      // PERMISSION_DENIED: the server's message names the role and what it lacks.
      default: std::cerr << status.error_message();
    }
    std::cerr << "\n";
    return kExitFailure;
  }

  /// Prints a local error (a spec, a file, a TLS file) and returns 1.
  int fail(const std::string& message) const {
    std::cerr << "tandem " << command_ << ": " << message << "\n";
    return kExitFailure;
  }

 private:
  ClientFlags flags_;
  std::string command_;
  std::unique_ptr<v1::Tandem::Stub> stub_;  // null when the channel could not be made
  std::string setup_error_;
};

/// Draws a job's WatchJob events for people: on a terminal, a bar for the
/// epochs and one for the current epoch's iterations, redrawn in place;
/// otherwise plain lines, at most ten per epoch and one per phase change.
/// Epoch summaries, the mAP history and state changes are always lines.
class WatchView {
 public:
  WatchView(std::ostream& out, bool terminal) : out_(out), terminal_(terminal) {
    winsize size{};
    if (terminal_ && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 20) {
      columns_ = size.ws_col;
    }
  }

  void on_event(const v1::JobEvent& event) {
    switch (event.event_case()) {
      case v1::JobEvent::kJob: on_job(event.job()); break;
      case v1::JobEvent::kIteration: on_iteration(event.iteration()); break;
      case v1::JobEvent::kEpoch: on_epoch(event.epoch()); break;
      case v1::JobEvent::kError:
        clear();
        std::cerr << "error: " << event.error() << std::endl;
        redraw();
        break;
      case v1::JobEvent::EVENT_NOT_SET: break;
    }
  }

  const v1::Job& job() const { return job_; }
  const std::vector<v1::Metrics>& history() const { return history_; }

  /// Removes the bars (before the final lines).
  void clear() {
    if (!drawn_) return;
    out_ << "\r\x1b[K\x1b[1A\r\x1b[K" << std::flush;
    drawn_ = false;
  }

 private:
  void on_job(const v1::Job& job) {
    const bool first = !seen_job_;
    const bool state_changed = first || job.state() != job_.state();
    const bool phase_changed = first || job.phase() != job_.phase() || job.epoch() != job_.epoch();
    job_ = job;
    seen_job_ = true;
    epochs_ = planned_epochs(job.spec());
    if (first) {
      for (const auto& m : job.metrics()) history_.push_back(m);
    }
    if (state_changed && !ended(job.state())) {  // the end has its own line
      clear();
      out_ << "job " << job.id() << " (" << job.spec().kind()
           << "): " << v1::JobState_Name(job.state());
      if (job.workers_size() > 0) {
        out_ << " on " << job.workers_size() << " rank" << (job.workers_size() > 1 ? "s" : "");
      }
      out_ << std::endl;
    }
    if (job.state() == v1::QUEUED && !job.waiting_reason().empty() &&
        job.waiting_reason() != printed_waiting_) {
      clear();
      out_ << "  " << job.waiting_reason() << std::endl;
    }
    printed_waiting_ = job.waiting_reason();
    if (phase_changed && !terminal_ && job.state() == v1::RUNNING &&
        job.phase() != v1::JOB_PHASE_UNSPECIFIED) {
      out_ << "  epoch " << epoch_text(job.epoch()) << " " << lower(v1::JobPhase_Name(job.phase()))
           << std::endl;
    }
    if (job.state() == v1::RUNNING) redraw();
  }

  void on_iteration(const v1::IterationSummary& it) {
    iteration_ = it;
    seen_iteration_ = true;
    if (terminal_) {
      redraw();
      return;
    }
    // Plain lines: one per tenth of an epoch that the events reach.
    const int64_t tenth = it.iterations() > 0 ? it.iteration() * 10 / it.iterations() : 0;
    if (it.epoch() == printed_epoch_ && tenth <= printed_tenth_ &&
        it.iteration() != it.iterations()) {
      return;
    }
    printed_epoch_ = it.epoch();
    printed_tenth_ = tenth;
    out_ << "  epoch " << epoch_text(it.epoch()) << "  " << iteration_text(it) << std::endl;
  }

  void on_epoch(const v1::EpochSummary& e) {
    clear();
    std::ostringstream line;
    line << "epoch " << epoch_text(e.epoch());
    for (const auto& [name, value] : ordered(e.values()))
      line << "  " << name << " " << figure(value);
    if (e.has_metrics()) {
      line << "  |  " << metrics_text(e.metrics());
      history_.push_back(e.metrics());
    }
    out_ << line.str() << std::endl;
    if (e.has_metrics()) out_ << "  " << history_text() << std::endl;
    seen_iteration_ = false;
    completed_epochs_ = std::max(completed_epochs_, e.epoch() + 1);
    redraw();
  }

  std::string epoch_text(int64_t epoch) const {
    return std::to_string(epoch + 1) + (epochs_ > 0 ? "/" + std::to_string(epochs_) : "");
  }

  std::string iteration_text(const v1::IterationSummary& it) const {
    std::ostringstream line;
    line << it.iteration() << "/" << it.iterations() << std::fixed << std::setprecision(3);
    for (const auto& [name, value] : ordered(it.losses())) line << "  " << name << " " << value;
    line << std::setprecision(0) << "  " << it.images_per_second() << " img/s  ETA "
         << clock(it.eta_seconds());
    return line.str();
  }

  /// "mAP 12.3 25.6 34.5 (best 34.5, epoch 3)", the last eight evaluations.
  std::string history_text() const {
    std::ostringstream line;
    const bool accuracy =
        !history_.empty() && history_.back().map() == 0 && history_.back().rank1() == 0;
    const auto value = [accuracy](const v1::Metrics& m) {
      return accuracy ? 100 * m.target_accuracy() : m.map();
    };
    line << (accuracy ? "accuracy by epoch:" : "mAP by epoch:");
    const size_t first = history_.size() > 8 ? history_.size() - 8 : 0;
    if (first > 0) line << " ...";
    for (size_t i = first; i < history_.size(); ++i) {
      line << " " << history_[i].epoch() + 1 << ":" << fixed1(value(history_[i]));
    }
    const auto best = std::max_element(
        history_.begin(), history_.end(),
        [&](const v1::Metrics& a, const v1::Metrics& b) { return value(a) < value(b); });
    line << "  (best " << fixed1(value(*best)) << " at epoch " << best->epoch() + 1 << ")";
    return line.str();
  }

  std::string fit(std::string line) const {
    if (line.size() > columns_ - 1) line.resize(columns_ - 1);
    return line;
  }

  /// Terminal only: the two bars, in place of the previous ones.
  void redraw() {
    if (!terminal_ || job_.state() != v1::RUNNING) return;
    std::ostringstream epochs;
    const int64_t epoch = job_.epoch();
    double done = static_cast<double>(std::max(epoch, completed_epochs_));
    if (seen_iteration_ && iteration_.epoch() == epoch && iteration_.iterations() > 0) {
      done += static_cast<double>(iteration_.iteration()) / iteration_.iterations();
    }
    epochs << "epochs ";
    if (epochs_ > 0) epochs << bar(done / epochs_, 24) << " ";
    epochs << epoch_text(epoch);
    if (job_.phase() != v1::JOB_PHASE_UNSPECIFIED) {
      epochs << "  " << lower(v1::JobPhase_Name(job_.phase()));
    }
    if (!history_.empty()) epochs << "  |  last " << metrics_text(history_.back());
    std::ostringstream iterations;
    iterations << "epoch  ";
    if (seen_iteration_ && iteration_.epoch() == epoch) {
      iterations << bar(static_cast<double>(iteration_.iteration()) /
                            std::max<int64_t>(1, iteration_.iterations()),
                        24)
                 << " " << iteration_text(iteration_);
    } else {
      iterations << bar(0, 24) << " waiting for the first iteration";
    }
    if (drawn_) out_ << "\r\x1b[1A";
    out_ << "\r" << fit(epochs.str()) << "\x1b[K\n"
         << fit(iterations.str()) << "\x1b[K" << std::flush;
    drawn_ = true;
  }

  std::ostream& out_;
  bool terminal_;
  size_t columns_ = 100;
  bool drawn_ = false;
  bool seen_job_ = false;
  std::string printed_waiting_;  // the waiting reason last printed
  v1::Job job_;
  int64_t epochs_ = 0;
  bool seen_iteration_ = false;
  int64_t completed_epochs_ = 0;
  v1::IterationSummary iteration_;
  int64_t printed_epoch_ = -1;
  int64_t printed_tenth_ = -1;
  std::vector<v1::Metrics> history_;
};

/// Follows job `id` until it ends: 0 for SUCCEEDED, 1 for FAILED or CANCELLED
/// (or a broken stream). A stream broken by a lost server (UNAVAILABLE) is
/// opened again once the server answers, for up to `reconnect_seconds`: a
/// server restarted mid-job (its jobs resume) keeps its watchers.
int watch_job(Client& client, const std::string& id, double rate, double reconnect_seconds) {
  const bool json = client.flags().json;
  const auto get_job = [&](v1::Job& job) {
    v1::GetJobRequest request;
    request.set_id(id);
    auto context = client.unary();
    return client.stub().GetJob(context.get(), request, &job);
  };
  {
    // Fails fast (and within --timeout) when the server is not there or the
    // job is unknown, before the stream, which has no deadline.
    v1::Job job;
    const grpc::Status status = get_job(job);
    if (!status.ok()) return client.fail(status);
  }
  v1::WatchJobRequest request;
  request.set_id(id);
  request.set_max_iteration_events_per_second(rate);
  WatchView view(std::cout, !json && ::isatty(STDOUT_FILENO) == 1);
  v1::Job last;
  std::string error_event;
  const auto show = [&](const v1::JobEvent& event) {
    if (event.has_job()) last = event.job();
    if (event.event_case() == v1::JobEvent::kError) error_event = event.error();
    if (json) {
      std::cout << to_json(event) << std::endl;
    } else {
      view.on_event(event);
    }
  };
  // Polls GetJob until the server answers (into `last`) or the time is up.
  const auto wait_for_server = [&](const grpc::Status& lost) {
    std::cerr << "tandem " << client.command() << ": lost the server at " << client.flags().server
              << " (" << lost.error_message() << "); reconnecting for up to "
              << figure(reconnect_seconds) << " s" << std::endl;
    const auto give_up = std::chrono::steady_clock::now() +
                         std::chrono::milliseconds(static_cast<int64_t>(reconnect_seconds * 1000));
    grpc::Status got = lost;
    while (std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      got = get_job(last);
      if (got.error_code() != grpc::StatusCode::UNAVAILABLE &&
          got.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED)
        break;
    }
    return got;
  };
  grpc::Status status;
  while (true) {
    grpc::ClientContext context;
    auto reader = client.stub().WatchJob(&context, request);
    v1::JobEvent event;
    while (reader->Read(&event)) show(event);
    status = reader->Finish();
    if (status.ok() || status.error_code() != grpc::StatusCode::UNAVAILABLE ||
        ended(last.state()) || !(reconnect_seconds > 0))
      break;
    if (!json) view.clear();
    const grpc::Status got = wait_for_server(status);
    if (!got.ok()) return client.fail(got);
    std::cerr << "tandem " << client.command() << ": reconnected; job " << id << " is "
              << v1::JobState_Name(last.state()) << std::endl;
    if (ended(last.state())) {
      // It ended while the server was away: its final state, as the stream
      // would have shown it.
      v1::JobEvent final_state;
      *final_state.mutable_job() = last;
      show(final_state);
      break;
    }
  }
  if (!json) view.clear();
  if (!status.ok() && !ended(last.state())) return client.fail(status);
  if (!ended(last.state())) {
    // The stream ended without the final state: ask for it.
    const grpc::Status got = get_job(last);
    if (!got.ok()) return client.fail(got);
  }
  const std::string error = last.error().empty() ? error_event : last.error();
  switch (last.state()) {
    case v1::SUCCEEDED:
      if (!json) {
        std::cout << "job " << id << " SUCCEEDED";
        if (last.started_ms() > 0 && last.finished_ms() >= last.started_ms()) {
          std::cout << " in " << clock((last.finished_ms() - last.started_ms()) / 1000.0);
        }
        if (last.metrics_size() > 0) {
          std::cout << ": " << metrics_text(*last.metrics().rbegin());
        } else if (!view.history().empty()) {
          std::cout << ": " << metrics_text(view.history().back());
        }
        std::cout << std::endl;
      }
      return kExitOk;
    case v1::FAILED:
      std::cerr << "tandem " << client.command() << ": job " << id << " FAILED"
                << (error.empty() ? "" : ": " + error) << std::endl;
      return kExitFailure;
    case v1::CANCELLED:
      std::cerr << "tandem " << client.command() << ": job " << id << " CANCELLED" << std::endl;
      return kExitFailure;
    default:
      std::cerr << "tandem " << client.command() << ": the stream of job " << id
                << " ended while it is " << v1::JobState_Name(last.state()) << std::endl;
      return kExitFailure;
  }
}

// ---- submit ----------------------------------------------------------------

struct SubmitFlags {
  ClientFlags client;
  std::string spec;
  bool watch = false;
  int world_size = 0;
  double rate = 0;
  double reconnect_seconds = kDefaultReconnectSeconds;
};

int run_submit(const SubmitFlags& flags) {
  Client client(flags.client, "submit");
  if (!client.ready()) return client.setup_failed();
  v1::SubmitJobRequest request;
  try {
    *request.mutable_spec() = spec::read_job_spec_file(flags.spec);
  } catch (const std::invalid_argument& error) {
    return client.fail(error.what());
  }
  if (flags.world_size > 0) request.mutable_spec()->set_world_size(flags.world_size);
  v1::Job job;
  auto context = client.unary();
  const grpc::Status status = client.stub().SubmitJob(context.get(), request, &job);
  if (!status.ok()) return client.fail(status);
  std::cout << (flags.client.json ? to_json(job) : job.id()) << std::endl;
  return flags.watch ? watch_job(client, job.id(), flags.rate, flags.reconnect_seconds) : kExitOk;
}

// ---- status ----------------------------------------------------------------

struct StatusFlags {
  ClientFlags client;
  std::string job;
  std::vector<std::string> states;
  int limit = 0;
};

void print_job(const v1::Job& job) {
  std::vector<std::vector<std::string>> rows = {
      {"id", job.id()},
      {"kind", job.spec().kind()},
      {"state", v1::JobState_Name(job.state())},
  };
  if (!job.owner().empty()) rows.push_back({"owner", job.owner()});
  if (job.state() == v1::RUNNING) {
    if (job.phase() != v1::JOB_PHASE_UNSPECIFIED) {
      rows.push_back({"phase", lower(v1::JobPhase_Name(job.phase()))});
    }
    rows.push_back({"epoch", epoch_column(job)});
    rows.push_back({"iteration", std::to_string(job.iteration())});
  }
  if (job.spec().has_world_size())
    rows.push_back({"world size", std::to_string(job.spec().world_size())});
  if (!job.waiting_reason().empty()) rows.push_back({"waiting", job.waiting_reason()});
  if (job.workers_size() > 0) {
    std::string workers;
    for (const auto& w : job.workers()) workers += (workers.empty() ? "" : ", ") + w;
    rows.push_back({"workers", workers});
  }
  if (!job.spec().output_dir().empty()) rows.push_back({"output", job.spec().output_dir()});
  rows.push_back({"created", age(job.created_ms()) + " ago"});
  if (job.started_ms() > 0) rows.push_back({"started", age(job.started_ms()) + " ago"});
  if (job.finished_ms() > 0) rows.push_back({"finished", age(job.finished_ms()) + " ago"});
  if (!job.checkpoint().empty()) rows.push_back({"checkpoint", job.checkpoint()});
  if (!job.error().empty()) rows.push_back({"error", job.error()});
  for (auto& row : rows) row[0] += ":";
  print_table(std::cout, rows, {});
  if (job.metrics_size() > 0) {
    std::cout << "\n";
    std::vector<std::vector<std::string>> table = {{"EPOCH", "mAP", "RANK-1", "RANK-5", "ACC"}};
    for (const auto& m : job.metrics()) {
      table.push_back({std::to_string(m.epoch() + 1), fixed1(m.map()), fixed1(m.rank1()),
                       fixed1(m.rank5()), fixed1(100 * m.target_accuracy())});
    }
    print_table(std::cout, table, {true, true, true, true, true});
  }
}

int run_status(const StatusFlags& flags) {
  Client client(flags.client, "status");
  if (!client.ready()) return client.setup_failed();
  if (!flags.job.empty()) {
    v1::GetJobRequest request;
    request.set_id(flags.job);
    v1::Job job;
    auto context = client.unary();
    const grpc::Status status = client.stub().GetJob(context.get(), request, &job);
    if (!status.ok()) return client.fail(status);
    if (flags.client.json) {
      std::cout << to_json(job) << std::endl;
    } else {
      print_job(job);
    }
    return kExitOk;
  }
  v1::ListJobsRequest request;
  for (const auto& name : flags.states) {
    v1::JobState state;
    std::string upper = name;
    std::transform(upper.begin(), upper.end(), upper.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    if (!v1::JobState_Parse(upper, &state) || state == v1::JOB_STATE_UNSPECIFIED) {
      return client.fail("--state " + name +
                         ": not a job state (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)");
    }
    request.add_states(state);
  }
  request.set_limit(flags.limit);
  v1::ListJobsResponse response;
  auto context = client.unary();
  const grpc::Status status = client.stub().ListJobs(context.get(), request, &response);
  if (!status.ok()) return client.fail(status);
  if (flags.client.json) {
    std::cout << to_json(response) << std::endl;
    return kExitOk;
  }
  if (response.jobs_size() == 0) {
    std::cout << "no jobs\n";
    return kExitOk;
  }
  // A WAITING column (why a queued job is not running) when a job waits.
  const bool any_waiting =
      std::any_of(response.jobs().begin(), response.jobs().end(),
                  [](const v1::Job& job) { return !job.waiting_reason().empty(); });
  std::vector<std::vector<std::string>> rows = {
      {"ID", "KIND", "STATE", "PHASE", "EPOCH", "mAP", "AGE"}};
  if (any_waiting) rows[0].push_back("WAITING");
  for (const auto& job : response.jobs()) {
    const bool running = job.state() == v1::RUNNING;
    rows.push_back(
        {job.id(), job.spec().kind(), v1::JobState_Name(job.state()),
         running && job.phase() != v1::JOB_PHASE_UNSPECIFIED ? lower(v1::JobPhase_Name(job.phase()))
                                                             : "-",
         epoch_column(job), job.metrics_size() > 0 ? fixed1(job.metrics().rbegin()->map()) : "-",
         age(job.created_ms())});
    if (any_waiting) rows.back().push_back(job.waiting_reason());
  }
  std::vector<bool> right_aligned = {false, false, false, false, true, true, true};
  if (any_waiting) right_aligned.push_back(false);
  print_table(std::cout, rows, right_aligned);
  return kExitOk;
}

// ---- watch, cancel -----------------------------------------------------------

struct WatchFlags {
  ClientFlags client;
  std::string job;
  double rate = 0;
  double reconnect_seconds = kDefaultReconnectSeconds;
};

int run_watch(const WatchFlags& flags) {
  Client client(flags.client, "watch");
  if (!client.ready()) return client.setup_failed();
  return watch_job(client, flags.job, flags.rate, flags.reconnect_seconds);
}

struct CancelFlags {
  ClientFlags client;
  std::string job;
};

int run_cancel(const CancelFlags& flags) {
  Client client(flags.client, "cancel");
  if (!client.ready()) return client.setup_failed();
  v1::CancelJobRequest request;
  request.set_id(flags.job);
  v1::Job job;
  auto context = client.unary();
  const grpc::Status status = client.stub().CancelJob(context.get(), request, &job);
  if (!status.ok()) return client.fail(status);
  if (flags.client.json) {
    std::cout << to_json(job) << std::endl;
  } else {
    std::cout << "job " << job.id() << ": " << v1::JobState_Name(job.state()) << std::endl;
  }
  return kExitOk;
}

// ---- delete ------------------------------------------------------------------

struct DeleteFlags {
  ClientFlags client;
  std::string job;
};

int run_delete(const DeleteFlags& flags) {
  Client client(flags.client, "delete");
  if (!client.ready()) return client.setup_failed();
  v1::DeleteJobRequest request;
  request.set_id(flags.job);
  v1::DeleteJobResponse response;
  auto context = client.unary();
  const grpc::Status status = client.stub().DeleteJob(context.get(), request, &response);
  if (!status.ok()) return client.fail(status);
  if (flags.client.json) {
    std::cout << to_json(response) << std::endl;
  } else {
    std::cout << "deleted job " << response.id();
    if (!response.removed_output_dir().empty())
      std::cout << " (removed " << response.removed_output_dir() << ")";
    std::cout << std::endl;
  }
  return kExitOk;
}

// ---- rank --------------------------------------------------------------------

struct RankFlags {
  ClientFlags client;
  std::string job;
  int64_t query = -1;
  bool has_query = false;
  std::string image;
  int top = 10;
};

int run_rank(const RankFlags& flags) {
  Client client(flags.client, "rank");
  if (!client.ready()) return client.setup_failed();
  if (flags.has_query == !flags.image.empty()) {
    return client.fail("give one of --query N (a query of the job's target) or --image FILE");
  }
  v1::RankRequest request;
  request.set_job_id(flags.job);
  request.set_top_k(flags.top);
  if (flags.has_query) {
    request.set_query_index(flags.query);
  } else {
    std::ifstream in(flags.image, std::ios::binary);
    if (!in) return client.fail(flags.image + ": cannot read the image");
    std::ostringstream bytes;
    bytes << in.rdbuf();
    request.set_image(bytes.str());
  }
  v1::RankResponse response;
  auto context = client.unary();
  const grpc::Status status = client.stub().Rank(context.get(), request, &response);
  if (!status.ok()) return client.fail(status);
  if (flags.client.json) {
    std::cout << to_json(response) << std::endl;
    return kExitOk;
  }
  const bool marked = flags.has_query;
  if (marked) {
    std::cout << "query " << flags.query << ": person " << response.query_person_id() << ", camera "
              << response.query_camera_id() << "\n";
  } else {
    std::cout << "query " << flags.image << "\n";
  }
  std::vector<std::vector<std::string>> rows = {{"RANK", "DISTANCE", "PERSON", "CAMERA", "PATH"}};
  if (marked) rows[0].push_back("MATCH");
  int right = 0;
  for (int i = 0; i < response.entries_size(); ++i) {
    const auto& entry = response.entries(i);
    std::ostringstream distance;
    distance << std::fixed << std::setprecision(4) << entry.distance();
    rows.push_back({std::to_string(i + 1), distance.str(), std::to_string(entry.person_id()),
                    std::to_string(entry.camera_id()), entry.gallery_path()});
    if (marked) {
      const bool is_right = entry.person_id() == response.query_person_id();
      right += is_right ? 1 : 0;
      rows.back().push_back(is_right ? "right" : "wrong");
    }
  }
  print_table(std::cout, rows, {true, true, true, true, false, false});
  if (marked && response.entries_size() > 0) {
    std::cout << right << " of " << response.entries_size() << " right (rank-1 "
              << (response.entries(0).person_id() == response.query_person_id() ? "right" : "wrong")
              << ")\n";
  }
  return kExitOk;
}

}  // namespace

void add_client_commands(CLI::App& app, Action& action) {
  {
    auto flags = std::make_shared<SubmitFlags>();
    auto* command = app.add_subcommand("submit", "Submit a job spec to a Tandem server");
    command->add_option("SPEC", flags->spec, "the job spec (YAML or JSON)")->required();
    command->add_flag("--watch", flags->watch, "then follow the job until it ends (as watch)");
    command->add_option("--world-size", flags->world_size, "data-parallel ranks (spec.world_size)")
        ->check(CLI::PositiveNumber);
    command
        ->add_option("--rate", flags->rate,
                     "with --watch: iteration events per second at most (0: the server's 2)")
        ->check(CLI::NonNegativeNumber);
    add_reconnect_flag(*command, flags->reconnect_seconds);
    add_client_flags(*command, flags->client);
    command->callback([flags, &action] { action = [flags] { return run_submit(*flags); }; });
  }
  {
    auto flags = std::make_shared<StatusFlags>();
    auto* command =
        app.add_subcommand("status", "One job's status, or a table of the server's jobs");
    command->add_option("JOB", flags->job, "job id (none: list the jobs, newest first)");
    command
        ->add_option("--state", flags->states,
                     "list only jobs in this state (QUEUED, RUNNING, SUCCEEDED, FAILED, "
                     "CANCELLED; repeatable, or comma-separated)")
        ->delimiter(',')
        ->allow_extra_args(false);
    command->add_option("--limit", flags->limit, "list at most this many jobs (0: 100)")
        ->check(CLI::NonNegativeNumber);
    add_client_flags(*command, flags->client);
    command->callback([flags, &action] { action = [flags] { return run_status(*flags); }; });
  }
  {
    auto flags = std::make_shared<WatchFlags>();
    auto* command = app.add_subcommand(
        "watch", "Follow a job until it ends (exit 0: SUCCEEDED; 1: FAILED, CANCELLED)");
    command->add_option("JOB", flags->job, "job id")->required();
    command
        ->add_option("--rate", flags->rate,
                     "iteration events per second at most (0: the server's 2)")
        ->check(CLI::NonNegativeNumber);
    add_reconnect_flag(*command, flags->reconnect_seconds);
    add_client_flags(*command, flags->client);
    command->callback([flags, &action] { action = [flags] { return run_watch(*flags); }; });
  }
  {
    auto flags = std::make_shared<CancelFlags>();
    auto* command = app.add_subcommand("cancel", "Cancel a job (its last checkpoint is kept)");
    command->add_option("JOB", flags->job, "job id")->required();
    add_client_flags(*command, flags->client);
    command->callback([flags, &action] { action = [flags] { return run_cancel(*flags); }; });
  }
  {
    auto flags = std::make_shared<DeleteFlags>();
    auto* command =
        app.add_subcommand("delete", "Remove an ended job and its output folder from the server");
    command->add_option("JOB", flags->job, "job id")->required();
    add_client_flags(*command, flags->client);
    command->callback([flags, &action] { action = [flags] { return run_delete(*flags); }; });
  }
  {
    auto flags = std::make_shared<RankFlags>();
    auto* command =
        app.add_subcommand("rank", "Top-k gallery entries of a finished job's model for a query");
    command->add_option("JOB", flags->job, "job id")->required();
    auto* query = command
                      ->add_option("--query", flags->query,
                                   "index of a query in the job's target query set (entries "
                                   "are marked right/wrong by person id)")
                      ->check(CLI::NonNegativeNumber);
    auto* image = command->add_option("--image", flags->image, "a JPEG or PNG query image");
    query->excludes(image);
    command->add_option("--top", flags->top, "entries to return")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    add_client_flags(*command, flags->client);
    command->callback([flags, query, &action] {
      flags->has_query = query->count() > 0;
      action = [flags] { return run_rank(*flags); };
    });
  }
}

}  // namespace tandem::client
