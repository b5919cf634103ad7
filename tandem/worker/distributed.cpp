#include "tandem/worker/distributed.h"

#include <cstdlib>
#include <limits>
#include <mutex>

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
// Both headers are empty unless their USE_C10D_* macro is set, which
// worker/CMakeLists.txt does for this file when the build has the backend
// (Gloo: Gloo's headers found; NCCL: a CUDA LibTorch).
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

namespace tandem::worker {
namespace {

int parse_int_variable(const std::string& name, const std::string& text, int min_value,
                       int max_value) {
  std::size_t consumed = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &consumed);
  } catch (const std::exception&) {
    consumed = 0;
  }
  TORCH_CHECK(consumed == text.size() && !text.empty(), name, " must be an integer, got '", text,
              "'");
  TORCH_CHECK(value >= min_value && value <= max_value, name, " must be in [", min_value, ", ",
              max_value, "], got ", value);
  return static_cast<int>(value);
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

#ifdef USE_C10D_GLOO
// Gloo's transport device: the address other ranks reach this one on. With a
// loopback rendezvous every rank is on this host; otherwise the host's own
// name is resolved, as torch.distributed does by default.
std::shared_ptr<::gloo::transport::Device> make_gloo_device(const DistributedOptions& options) {
  if (!options.gloo_hostname.empty()) {
    return c10d::ProcessGroupGloo::createDeviceForHostname(options.gloo_hostname);
  }
  if (is_loopback(options.master_addr)) {
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif

// Gloo's backend; it rendezvouses with every other rank before it returns.
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    const DistributedOptions& options) {
#ifdef USE_C10D_GLOO
  auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
  gloo_options->devices.push_back(make_gloo_device(options));
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, options.rank, options.world_size,
                                                     gloo_options);
#else
  TORCH_CHECK(false,
              "this build of Tandem has no Gloo backend (it was compiled without Gloo's "
              "headers, see docs/building.md); CPU tensors cannot be reduced across ranks");
#endif
}

// NCCL's backend for CUDA tensors; its communicator forms on the first
// collective.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    const DistributedOptions& options) {
#ifdef USE_C10D_NCCL
  auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
  nccl_options->timeout = options.timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, options.rank, options.world_size,
                                                     nccl_options);
#else
  TORCH_CHECK(false, "backend nccl needs a CUDA build of Tandem");
#endif
}

}  // namespace

std::string to_string(Backend backend) {
  return backend == Backend::kNccl ? "nccl" : "gloo";
}

DistributedOptions distributed_options_from_env(const std::map<std::string, std::string>& env,
                                                DistributedOptions base) {
  const auto lookup = [&](const char* name) -> const std::string* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : &it->second;
  };
  constexpr int kMaxInt = std::numeric_limits<int>::max();
  if (const auto* v = lookup("MASTER_ADDR")) {
    TORCH_CHECK(!v->empty(), "MASTER_ADDR must not be empty");
    base.master_addr = *v;
  }
  if (const auto* v = lookup("MASTER_PORT")) {
    base.master_port = parse_int_variable("MASTER_PORT", *v, 1, 65535);
  }
  if (const auto* v = lookup("WORLD_SIZE")) {
    base.world_size = parse_int_variable("WORLD_SIZE", *v, 1, kMaxInt);
  }
  if (const auto* v = lookup("RANK")) {
    base.rank = parse_int_variable("RANK", *v, 0, kMaxInt);
  }
  if (const auto* v = lookup("LOCAL_RANK")) {
    base.local_rank = parse_int_variable("LOCAL_RANK", *v, 0, kMaxInt);
  }
  if (const auto* v = lookup("TORCHELASTIC_USE_AGENT_STORE")) {
    TORCH_CHECK(*v == "True" || *v == "False" || *v == "1" || *v == "0",
                "TORCHELASTIC_USE_AGENT_STORE must be True or False, got '", *v, "'");
    base.agent_store = *v == "True" || *v == "1";
  }
  validate(base);
  return base;
}

DistributedOptions distributed_options_from_process_env(DistributedOptions base) {
  std::map<std::string, std::string> env;
  for (const char* name : {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK",
                           "TORCHELASTIC_USE_AGENT_STORE"}) {
    if (const char* value = std::getenv(name)) env.emplace(name, value);
  }
  return distributed_options_from_env(env, std::move(base));
}

void validate(const DistributedOptions& options) {
  TORCH_CHECK(!options.master_addr.empty(), "master_addr must not be empty");
  TORCH_CHECK(options.master_port > 0 && options.master_port <= 65535,
              "master_port must be in [1, 65535], got ", options.master_port);
  TORCH_CHECK(options.world_size >= 1, "world_size must be at least 1, got ", options.world_size);
  TORCH_CHECK(options.rank >= 0 && options.rank < options.world_size,
              "rank must be in [0, world_size=", options.world_size, "), got ", options.rank);
  TORCH_CHECK(options.local_rank >= 0, "local_rank must be non-negative, got ", options.local_rank);
  TORCH_CHECK(options.timeout.count() > 0, "timeout must be positive, got ",
              options.timeout.count(), " ms");
#ifndef TANDEM_WITH_CUDA
  TORCH_CHECK(options.backend != Backend::kNccl,
              "backend nccl needs a CUDA build of Tandem (this build is CPU-only); use gloo");
#endif
}

ProcessGroupHandle init_process_group(const DistributedOptions& options) {
  validate(options);
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(options.master_port);
  store_options.isServer = options.rank == 0 && !options.agent_store;
  store_options.numWorkers = static_cast<std::size_t>(options.world_size);
  store_options.waitWorkers = true;
  store_options.timeout = options.timeout;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(options.master_addr, store_options);
  } catch (const std::exception& error) {
    TORCH_CHECK(false, "rank ", options.rank, " could not join the rendezvous at ",
                options.master_addr, ":", options.master_port, " (world_size ", options.world_size,
                ", timeout ", options.timeout.count(), " ms): ", error.what());
  }
  return init_process_group(store, options);
}

static void disable_flight_recorder_unless_asked() {
  // LibTorch 2.x records every collective in c10d's process-wide
  // FlightRecorder (TORCH_FR_BUFFER_SIZE, default 2000 entries, each with a
  // captured traceback). Its first record per process group inserts into a
  // map outside its mutex, so two groups enqueuing at once (MmtStep's two
  // lanes; ranks as threads in tests) can corrupt it: a segfault in
  // recordWithResetEnabled, seen in MmtTrainer.TwoRanks* on 2.11. Tandem
  // turns it off unless the user asked for a buffer size; once, before any
  // group records (the recorder reads the variables when first used).
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("TORCH_FR_BUFFER_SIZE") == nullptr &&
        std::getenv("TORCH_NCCL_TRACE_BUFFER_SIZE") == nullptr) {
      ::setenv("TORCH_FR_BUFFER_SIZE", "0", /*overwrite=*/0);
    }
  });
}

ProcessGroupHandle init_process_group(const c10::intrusive_ptr<c10d::Store>& store,
                                      const DistributedOptions& options) {
  validate(options);
  disable_flight_recorder_unless_asked();
  TORCH_CHECK(store, "init_process_group: store must not be null");
  store->setTimeout(options.timeout);
  // Each backend rendezvouses under its own prefix so that the same store can
  // carry Tandem's own keys (epoch barriers, clustering results) beside it.
  const auto prefixed = [&](const char* name) {
    return c10::make_intrusive<c10d::PrefixStore>(std::string("tandem/") + name, store);
  };
  ProcessGroupHandle handle;
  handle.store = store;
  handle.options = options;
  try {
    auto group = c10::make_intrusive<c10d::ProcessGroup>(store, options.rank, options.world_size);
    if (options.backend == Backend::kGloo) {
      // Gloo for every tensor, as torch.distributed's backend "gloo".
      auto gloo = make_gloo_backend(prefixed("gloo"), options);
      group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::GLOO, gloo);
#ifdef TANDEM_WITH_CUDA
      group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::GLOO, gloo);
#endif
      group->setDefaultBackend(c10d::ProcessGroup::GLOO);
    } else {
      // NCCL for CUDA tensors and, where the build has it, Gloo for CPU ones
      // (the store-shared clustering and the loss gathers of small tensors).
      auto nccl = make_nccl_backend(prefixed("nccl"), options);
      group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::NCCL, nccl);
#ifdef USE_C10D_GLOO
      group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::GLOO,
                        make_gloo_backend(prefixed("gloo"), options));
#endif
      group->setDefaultBackend(c10d::ProcessGroup::NCCL);
    }
    handle.group = std::move(group);
  } catch (const std::exception& error) {
    const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
    TORCH_CHECK(false, "rank ", options.rank, " of ", options.world_size, " could not form the ",
                to_string(options.backend), " group within ", options.timeout.count(),
                " ms: ", c10_error ? c10_error->what_without_backtrace() : error.what());
  }
  return handle;
}

}  // namespace tandem::worker
