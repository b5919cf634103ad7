#include "tandem/server/rendezvous.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::server {
namespace {

/// A c10d client of the store at host:port that sets and reads back a key.
std::string round_trip(const std::string& host, int port) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(port);
  options.isServer = false;
  options.waitWorkers = false;
  options.timeout = std::chrono::seconds(10);
  c10d::TCPStore client(host, options);
  client.set("rank0", std::vector<uint8_t>{'o', 'k'});
  const std::vector<uint8_t> value = client.get("rank0");
  return std::string(value.begin(), value.end());
}

/// Whether a plain TCP connect() to address:port succeeds.
bool can_connect(const sockaddr* address, socklen_t length) {
  const int fd = ::socket(address->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool connected = ::connect(fd, address, length) == 0;
  ::close(fd);
  return connected;
}

/// The first IPv4 address of an up, non-loopback interface, if any.
std::optional<in_addr> non_loopback_ipv4() {
  ifaddrs* interfaces = nullptr;
  if (::getifaddrs(&interfaces) != 0) return std::nullopt;
  std::optional<in_addr> found;
  for (const ifaddrs* i = interfaces; i != nullptr && !found; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    const in_addr address = reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr;
    if ((ntohl(address.s_addr) >> 24) == 127) continue;  // 127.0.0.0/8
    found = address;
  }
  ::freeifaddrs(interfaces);
  return found;
}

TEST(Rendezvous, ServesTheStoreOnTheBoundAddress) {
  Rendezvous rendezvous(2, "127.0.0.1");
  ASSERT_GT(rendezvous.port(), 0);
  EXPECT_EQ(round_trip("127.0.0.1", rendezvous.port()), "ok");
  // A hostname resolves ("localhost" may be ::1 or 127.0.0.1 first).
  Rendezvous by_name(2, "localhost");
  EXPECT_EQ(round_trip("localhost", by_name.port()), "ok");
}

TEST(Rendezvous, IsNotReachableOnOtherInterfaces) {
  const std::optional<in_addr> other = non_loopback_ipv4();
  if (!other) GTEST_SKIP() << "this host has no non-loopback IPv4 address (getifaddrs)";
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &*other, text, sizeof(text));
  Rendezvous rendezvous(2, "127.0.0.1");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(rendezvous.port()));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_TRUE(can_connect(reinterpret_cast<sockaddr*>(&address), sizeof(address)))
      << "127.0.0.1:" << rendezvous.port();
  address.sin_addr = *other;
  EXPECT_FALSE(can_connect(reinterpret_cast<sockaddr*>(&address), sizeof(address)))
      << "the store bound to 127.0.0.1 accepts connections on " << text << ":" << rendezvous.port();
  // Bound to that address instead: reachable there, not on loopback.
  Rendezvous outside(2, text);
  address.sin_port = htons(static_cast<uint16_t>(outside.port()));
  EXPECT_TRUE(can_connect(reinterpret_cast<sockaddr*>(&address), sizeof(address))) << text;
  EXPECT_EQ(round_trip(text, outside.port()), "ok");
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_FALSE(can_connect(reinterpret_cast<sockaddr*>(&address), sizeof(address)))
      << "the store bound to " << text << " accepts connections on 127.0.0.1";
}

TEST(Rendezvous, ServesOnIpv6Loopback) {
  sockaddr_in6 probe{};
  probe.sin6_family = AF_INET6;
  probe.sin6_addr = in6addr_loopback;
  const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool has_ipv6 =
      fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&probe), sizeof(probe)) == 0;
  if (fd >= 0) ::close(fd);
  if (!has_ipv6) GTEST_SKIP() << "this host cannot bind ::1 (no IPv6 loopback)";
  for (const std::string host : {"::1", "[::1]"}) {
    Rendezvous rendezvous(2, host);
    EXPECT_EQ(round_trip("::1", rendezvous.port()), "ok") << host;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(rendezvous.port()));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_FALSE(can_connect(reinterpret_cast<sockaddr*>(&address), sizeof(address)))
        << "the store bound to ::1 accepts IPv4 connections";
  }
}

TEST(Rendezvous, AnUnresolvableHostIsAnErrorNamingIt) {
  try {
    Rendezvous rendezvous(2, "no-such-host.invalid");
    FAIL() << "no error";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("'no-such-host.invalid'"), std::string::npos)
        << error.what();
  }
  EXPECT_THROW(Rendezvous(2, ""), std::runtime_error);
  // An address of no interface of this host cannot be bound.
  try {
    Rendezvous rendezvous(2, "192.0.2.1");  // TEST-NET-1
    FAIL() << "bound an address of no interface";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("'192.0.2.1'"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace tandem::server
