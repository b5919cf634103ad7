#include "tandem/server/rendezvous.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace tandem::server {
namespace {

/// The host without the brackets of an IPv6 literal ("[::1]" → "::1").
std::string unbracketed(const std::string& host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    return host.substr(1, host.size() - 2);
  }
  return host;
}

/// A listening TCP socket on the first address of `host` that binds, on a
/// port the kernel picks; sets `port`. Throws naming `host`.
int listen_on(const std::string& host, int& port) {
  const std::string name = unbracketed(host);
  if (name.empty()) throw std::runtime_error("cannot serve a rendezvous store: empty bind host");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addresses = nullptr;
  if (const int error = ::getaddrinfo(name.c_str(), "0", &hints, &addresses); error != 0) {
    throw std::runtime_error("cannot serve a rendezvous store on '" + host +
                             "': the host does not resolve: " + ::gai_strerror(error));
  }
  std::string failure = "no address";
  int fd = -1;
  for (const addrinfo* address = addresses; address != nullptr; address = address->ai_next) {
    fd = ::socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC, address->ai_protocol);
    if (fd < 0) {
      failure = std::string("socket: ") + std::strerror(errno);
      continue;
    }
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (address->ai_family == AF_INET6)
      ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (::bind(fd, address->ai_addr, address->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) {
      break;
    }
    failure = std::string("bind/listen: ") + std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(addresses);
  if (fd < 0) {
    throw std::runtime_error("cannot serve a rendezvous store on '" + host + "': " + failure);
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
    const std::string error = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("cannot serve a rendezvous store on '" + host +
                             "': getsockname: " + error);
  }
  port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return fd;
}

}  // namespace

Rendezvous::Rendezvous(int world_size, const std::string& bind_host) {
  int port = 0;
  const int fd = listen_on(bind_host, port);
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(port);
  options.isServer = true;
  options.numWorkers = world_size + 1;
  options.waitWorkers = false;
  // The store's daemon takes over (and closes) the bound socket. Both
  // backends honour masterListenFd (LibUVStoreDaemon::init opens it with
  // uv_tcp_open); tests/server/rendezvous_test.cpp checks the default libuv
  // one serves on it and on nothing else. The port check below catches a
  // release that would ignore it.
  options.masterListenFd = fd;
  options.useLibUV = true;
  try {
    // The store's own client connects to the address it serves.
    store_ = std::make_unique<c10d::TCPStore>(unbracketed(bind_host), options);
  } catch (const std::exception& error) {
    throw std::runtime_error("cannot serve a rendezvous store on '" + bind_host +
                             "': " + error.what());
  }
  port_ = store_->getPort();
  if (port_ != port) {
    throw std::runtime_error("cannot serve a rendezvous store on '" + bind_host +
                             "': the store serves port " + std::to_string(port_) +
                             ", not the bound socket's " + std::to_string(port));
  }
}

Rendezvous::~Rendezvous() = default;

}  // namespace tandem::server
