// c10d process groups for Tandem's data-parallel workers.
//
// Rendezvous goes through a c10d::TCPStore served by rank 0; the backend is
// NCCL for CUDA tensors (when compiled with TANDEM_WITH_CUDA) and Gloo
// otherwise. Configuration follows torchrun's environment variables so that
// torchrun-style launchers and Slurm wrappers can start Tandem workers.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace tandem::worker {

enum class Backend { kGloo, kNccl };

/// Where and how one rank joins its group. Defaults are torchrun's.
struct DistributedOptions {
  /// Host of the TCPStore (rank 0 serves it). torchrun: MASTER_ADDR.
  std::string master_addr = "127.0.0.1";
  /// Port of the TCPStore. torchrun: MASTER_PORT.
  int master_port = 29500;
  /// Number of ranks. torchrun: WORLD_SIZE.
  int world_size = 1;
  /// This process's rank in [0, world_size). torchrun: RANK.
  int rank = 0;
  /// Rank on this host, used to pick the GPU. torchrun: LOCAL_RANK.
  int local_rank = 0;
  /// Collective backend; NCCL needs a CUDA build.
  Backend backend = Backend::kGloo;
  /// Address Gloo binds to; empty: 127.0.0.1 for a loopback master_addr,
  /// else this host's resolved name. torchrun: GLOO_SOCKET_IFNAME's role.
  std::string gloo_hostname;
  /// Limit for the rendezvous and for every collective and store wait.
  std::chrono::milliseconds timeout = std::chrono::minutes(5);
  /// The launcher serves the TCPStore and every rank, rank 0 too, connects
  /// to it (torchrun: TORCHELASTIC_USE_AGENT_STORE=True); so no rank races
  /// another program for the port, and each restart gets a fresh store.
  bool agent_store = false;
};

/// Reads MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK and
/// TORCHELASTIC_USE_AGENT_STORE (True/False) from
/// `env` over the defaults in `base`. A malformed or out-of-range value fails
/// with a c10::Error naming the variable.
DistributedOptions distributed_options_from_env(const std::map<std::string, std::string>& env,
                                                DistributedOptions base = {});

/// Same, from the process environment.
DistributedOptions distributed_options_from_process_env(DistributedOptions base = {});

/// Validates options; throws c10::Error naming the offending field.
void validate(const DistributedOptions& options);

/// A joined process group: the store used for rendezvous (also handy for
/// side-channel waits with explicit timeouts) and the c10d::ProcessGroup,
/// LibTorch 2.x's front over its backend: Gloo serves CPU tensors; in a
/// CUDA build with Backend::kNccl, NCCL serves CUDA tensors and Gloo (when
/// the build has it) still serves CPU ones, as torch.distributed's
/// "cuda:nccl,cpu:gloo". Collectives dispatch on the tensors' device.
struct ProcessGroupHandle {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  DistributedOptions options;
};

/// Joins the group described by `options`: rank 0 serves the TCPStore, every
/// rank connects, and the backend performs its own rendezvous through a
/// prefix of the store. Blocks until all ranks joined or the timeout passes
/// (then throws c10::Error).
ProcessGroupHandle init_process_group(const DistributedOptions& options);

/// Joins a group whose rendezvous goes through an existing store (FileStore,
/// HashStore, TCPStore), as tests that simulate ranks in one process do.
ProcessGroupHandle init_process_group(const c10::intrusive_ptr<c10d::Store>& store,
                                      const DistributedOptions& options);

/// Human-readable backend name: "gloo" or "nccl".
std::string to_string(Backend backend);

}  // namespace tandem::worker
