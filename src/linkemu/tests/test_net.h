// Small blocking-socket helpers and in-process servers for the link emulator's tests.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "linkemu/proxy.h"

namespace omni::linkemu::testing {

double now_ms();  // CLOCK_MONOTONIC, milliseconds

int connect_to(std::uint16_t port);  // 127.0.0.1:port, blocking, TCP_NODELAY; -1 on failure
bool send_all(int fd, const void* data, std::size_t n);
// Reads exactly n bytes; false on EOF or error first.
bool recv_all(int fd, void* data, std::size_t n);
// Reads until EOF; what was read. `error` gets errno if the stream ended with an error instead.
std::vector<char> recv_until_eof(int fd, int* error = nullptr);
std::vector<char> random_bytes(std::size_t n, std::uint64_t seed);

// A TCP server on 127.0.0.1 (port 0) that runs `handle(fd)` on its own thread for each connection,
// then closes the socket. Stops accepting and joins every handler on destruction.
class Server {
 public:
  explicit Server(std::function<void(int fd)> handle);
  ~Server();
  std::uint16_t port() const { return port_; }

 private:
  std::function<void(int)> handle_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<std::thread> handlers_;
};

// Echoes everything until EOF, then half-closes.
void echo(int fd);

// An in-process proxy running on its own thread; stopped and joined on destruction.
class RunningProxy {
 public:
  explicit RunningProxy(const ProxyConfig& config);
  ~RunningProxy();
  std::uint16_t port() const { return proxy_->listen_port(); }
  Proxy& proxy() { return *proxy_; }

 private:
  std::unique_ptr<Proxy> proxy_;
  std::thread thread_;
};

// A proxy from 127.0.0.1:0 to 127.0.0.1:target_port with the given directions.
ProxyConfig local_config(std::uint16_t target_port, DirectionParams up, DirectionParams down);

// Polls `condition` every millisecond for up to `timeout_ms`.
bool wait_until(const std::function<bool()>& condition, double timeout_ms);

}  // namespace omni::linkemu::testing
