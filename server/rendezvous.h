// The rendezvous TCPStore of one attempt of a data-parallel job, served by
// the server (like torchrun's agent store: the ranks get
// TORCHELASTIC_USE_AGENT_STORE=True and connect as clients).
#pragma once

#include <memory>

namespace c10d {
class TCPStore;
}  // namespace c10d

namespace tandem::server {

class Rendezvous {
 public:
  /// Serves a store for `world_size` ranks on a port the kernel picks.
  /// Throws std::runtime_error when no port can be bound.
  explicit Rendezvous(int world_size);
  ~Rendezvous();
  Rendezvous(const Rendezvous&) = delete;
  Rendezvous& operator=(const Rendezvous&) = delete;

  int port() const { return port_; }

 private:
  std::unique_ptr<c10d::TCPStore> store_;
  int port_ = 0;
};

}  // namespace tandem::server
