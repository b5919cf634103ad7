#include "tandem/server/rendezvous.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <stdexcept>
#include <string>

namespace tandem::server {

Rendezvous::Rendezvous(int world_size) {
  c10d::TCPStoreOptions options;
  options.port = 0;
  options.isServer = true;
  options.numWorkers = world_size + 1;
  options.waitWorkers = false;
  try {
    // The daemon listens on every interface; this host is the store's own
    // client connection.
    store_ = std::make_unique<c10d::TCPStore>("127.0.0.1", options);
  } catch (const std::exception& error) {
    throw std::runtime_error(std::string("cannot serve a rendezvous store: ") + error.what());
  }
  port_ = store_->getPort();
}

Rendezvous::~Rendezvous() = default;

}  // namespace tandem::server
