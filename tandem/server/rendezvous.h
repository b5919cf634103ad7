// The rendezvous TCPStore of one attempt of a data-parallel job, served by
// the server (like torchrun's agent store: the ranks get
// TORCHELASTIC_USE_AGENT_STORE=True and connect as clients).
//
// The store listens on the advertised address only (the MASTER_ADDR the
// ranks are given), not on every interface: the store has no
// authentication, so it is reachable only where the ranks must reach it.
#pragma once

#include <memory>
#include <string>

namespace c10d {
class TCPStore;
}  // namespace c10d

namespace tandem::server {

class Rendezvous {
 public:
  /// Serves a store for `world_size` ranks on `bind_host` (a hostname such
  /// as docker-compose's "server", an IPv4 address, or an IPv6 one with or
  /// without brackets: "::1", "[::1]") and a port the kernel picks. Binds
  /// the first address `bind_host` resolves to. Throws std::runtime_error
  /// naming `bind_host` when it does not resolve or nothing can be bound.
  Rendezvous(int world_size, const std::string& bind_host);
  ~Rendezvous();
  Rendezvous(const Rendezvous&) = delete;
  Rendezvous& operator=(const Rendezvous&) = delete;

  int port() const { return port_; }

 private:
  std::unique_ptr<c10d::TCPStore> store_;
  int port_ = 0;
};

}  // namespace tandem::server
