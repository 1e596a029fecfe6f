#include "test_net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <random>
#include <stdexcept>

namespace omni::linkemu::testing {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int connect_to(std::uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool send_all(int fd, const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

bool recv_all(int fd, void* data, std::size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t k = recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

std::vector<char> recv_until_eof(int fd, int* error) {
  std::vector<char> out;
  char chunk[65536];
  if (error != nullptr) *error = 0;
  while (true) {
    const ssize_t k = recv(fd, chunk, sizeof chunk, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && error != nullptr) *error = errno;
    if (k <= 0) return out;
    out.insert(out.end(), chunk, chunk + k);
  }
}

std::vector<char> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<char> out(n);
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

Server::Server(std::function<void(int fd)> handle) : handle_(std::move(handle)) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd_, 128) != 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("test server: cannot listen");
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] {
    while (true) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // the listening socket was shut down
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard lock(mutex_);
      handlers_.emplace_back([this, fd] {
        handle_(fd);
        close(fd);
      });
    }
  });
}

Server::~Server() {
  shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  acceptor_.join();
  close(listen_fd_);
  for (auto& t : handlers_) t.join();
}

void echo(int fd) {
  char chunk[65536];
  while (true) {
    const ssize_t k = recv(fd, chunk, sizeof chunk, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    if (!send_all(fd, chunk, static_cast<std::size_t>(k))) return;
  }
  shutdown(fd, SHUT_WR);
}

RunningProxy::RunningProxy(const ProxyConfig& config) {
  auto started = Proxy::start(config);
  if (!started) throw std::runtime_error("proxy: " + started.error().message);
  proxy_ = std::move(*started);
  thread_ = std::thread([this] {
    auto r = proxy_->run();
    if (!r) throw std::runtime_error("proxy run: " + r.error().message);
  });
}

RunningProxy::~RunningProxy() {
  proxy_->stop();
  thread_.join();
}

ProxyConfig local_config(std::uint16_t target_port, DirectionParams up, DirectionParams down) {
  ProxyConfig c;
  c.listen = {"127.0.0.1", 0};
  c.target = {"127.0.0.1", target_port};
  c.up = up;
  c.down = down;
  return c;
}

bool wait_until(const std::function<bool()>& condition, double timeout_ms) {
  const double deadline = now_ms() + timeout_ms;
  while (now_ms() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return condition();
}

}  // namespace omni::linkemu::testing
