#include "gateway/http_listener.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/system_error.h"
#include "gateway/api_error.h"

namespace omni::gateway {
namespace {

// Whether `sock` has one of `events` within the timeout.
bool wait_for(socket_t sock, short events, std::chrono::milliseconds timeout) {
  pollfd p{sock, events, 0};
  int r;
  do r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  while (r < 0 && errno == EINTR);
  return r > 0;
}

std::chrono::milliseconds to_ms(time_t sec, time_t usec) {
  return std::chrono::milliseconds(sec * 1000 + usec / 1000);
}

void numeric_name(const sockaddr_storage& addr, socklen_t len, std::string& ip, int& port) {
  char host[NI_MAXHOST];
  char serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return;
  ip = host;
  port = std::atoi(serv);
}

// One connection as httplib reads and writes it (what its own SocketStream does), except that the
// bytes and lines of each request's head are counted as httplib reads them. Past the cap the
// client is sent 431 at once and every further read fails, so httplib abandons the request; its
// own answer to that failure is discarded.
class HeadCappedStream final : public httplib::Stream {
 public:
  HeadCappedStream(socket_t sock, HeadLimits limits, std::chrono::milliseconds read_timeout,
                   std::chrono::milliseconds write_timeout)
      : sock_(sock), limits_(limits), read_timeout_(read_timeout), write_timeout_(write_timeout) {}

  void begin_request() {
    in_head_ = true;
    head_bytes_ = head_lines_ = line_bytes_ = 0;
  }
  bool over_limit() const { return over_limit_; }
  bool has_buffered() const { return pos_ < end_; }

  bool is_readable() const override { return has_buffered() || wait_for(sock_, POLLIN, read_timeout_); }
  // Also false once the client has closed its side, as httplib's own stream does: a stream's
  // next write then fails, which is how a disconnected client's generation gets cancelled.
  bool is_writable() const override { return wait_for(sock_, POLLOUT, write_timeout_) && peer_open(); }

  ssize_t read(char* ptr, size_t size) override {
    if (over_limit_) return -1;
    if (!has_buffered()) {
      if (!wait_for(sock_, POLLIN, read_timeout_)) return -1;
      ssize_t n;
      do n = ::recv(sock_, buffer_, sizeof buffer_, 0);
      while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      pos_ = 0;
      end_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, end_ - pos_);
    if (in_head_) count_head(buffer_ + pos_, n);
    if (over_limit_) {
      refuse();
      return -1;
    }
    std::memcpy(ptr, buffer_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (over_limit_) return static_cast<ssize_t>(size);  // httplib's answer to the failed read: not sent
    if (!is_writable()) return -1;
    ssize_t n;
    do n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getpeername(sock_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) numeric_name(addr, len, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(sock_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) numeric_name(addr, len, ip, port);
  }
  socket_t socket() const override { return sock_; }

 private:
  // Counts the head in bytes about to be handed out; the head ends at its first empty line.
  void count_head(const char* p, size_t n) {
    for (size_t i = 0; i < n && in_head_ && !over_limit_; ++i) {
      if (++head_bytes_ > limits_.max_head_bytes) over_limit_ = true;
      if (p[i] == '\n') {
        if (line_bytes_ == 0) {
          in_head_ = false;
        } else if (++head_lines_ > limits_.max_header_lines + 1) {  // + the request line
          over_limit_ = true;
        }
        line_bytes_ = 0;
      } else if (p[i] != '\r') {
        ++line_bytes_;
      }
    }
  }

  bool peer_open() const {
    if (!wait_for(sock_, POLLIN, std::chrono::milliseconds(0))) return true;
    char byte;
    ssize_t n;
    do n = ::recv(sock_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
  }

  void refuse() {
    const std::string body = ApiError{431,
                                      "the request head is over the limit of " +
                                          std::to_string(limits_.max_header_lines) + " header lines or " +
                                          std::to_string(limits_.max_head_bytes) + " bytes",
                                      "invalid_request_error", std::nullopt, "request_header_fields_too_large", 0}
                                 .to_json()
                                 .dump();
    const std::string response = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n"
                                 "Content-Length: " + std::to_string(body.size()) +
                                 "\r\nConnection: close\r\n\r\n" + body;
    size_t sent = 0;
    while (sent < response.size() && wait_for(sock_, POLLOUT, write_timeout_)) {
      const ssize_t n = ::send(sock_, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
      if (n <= 0 && errno != EINTR) break;
      if (n > 0) sent += static_cast<size_t>(n);
    }
  }

  socket_t sock_;
  HeadLimits limits_;
  std::chrono::milliseconds read_timeout_, write_timeout_;
  char buffer_[4096];
  size_t pos_ = 0, end_ = 0;
  bool in_head_ = true, over_limit_ = false;
  size_t head_bytes_ = 0, head_lines_ = 0, line_bytes_ = 0;
};

// Whether host:port is bound by another socket (the reason a bind failed, told apart from an
// address this machine does not have).
bool address_in_use(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.empty() ? nullptr : host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0)
    return false;
  bool in_use = false;
  for (addrinfo* a = found; a && !in_use; a = a->ai_next) {
    const int sock = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (sock < 0) continue;
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    in_use = ::bind(sock, a->ai_addr, a->ai_addrlen) != 0 && errno == EADDRINUSE;
    ::close(sock);
  }
  ::freeaddrinfo(found);
  return in_use;
}

// After a 431: closing with the rest of the flood unread would reset the connection, and a reset
// can destroy the 431 before the client reads it. So the write side is closed first and the
// client's remaining bytes read and dropped, for a bounded time and amount.
void drain_before_close(socket_t sock) {
  ::shutdown(sock, SHUT_WR);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  char discard[4096];
  size_t left = 1 << 20;
  while (left > 0 && std::chrono::steady_clock::now() < deadline &&
         wait_for(sock, POLLIN, std::chrono::milliseconds(100))) {
    const ssize_t n = ::recv(sock, discard, std::min(sizeof discard, left), 0);
    if (n <= 0) break;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

HttpListener::HttpListener(HeadLimits limits) : limits_(limits) {
  // httplib's default options add SO_REUSEPORT, with which a second server binds the same port and
  // the kernel splits connections between the two. SO_REUSEADDR alone only lets a restarted server
  // rebind while old connections linger in TIME_WAIT.
  set_socket_options([this](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listening_ = sock;
  });
}

Result<int> HttpListener::bind_listener(const std::string& host, int port) {
  listening_ = INVALID_SOCKET;
  const int bound = port == 0 ? bind_to_any_port(host) : (bind_to_port(host, port) ? port : -1);
  const std::string where = host + ":" + (port == 0 ? std::string("any port") : std::to_string(port));
  if (bound < 0) {
    if (port != 0 && address_in_use(host, port))
      return Error{ErrorCode::AlreadyExists,
                   "cannot listen on " + where + ": the address is in use (another gateway?)"};
    return Error{ErrorCode::Unavailable,
                 "cannot listen on " + where + " (not an address of this machine, or a port this user may not bind)"};
  }
  // httplib listened with a backlog of 5; listening again on a listening socket only changes it.
  if (listening_ == INVALID_SOCKET)
    return Error{ErrorCode::Internal, "cannot set the listen backlog on " + where + ": no listening socket was seen"};
  if (::listen(listening_, SOMAXCONN) != 0) return errno_error(errno, "cannot set the listen backlog on " + where);
  return bound;
}

bool HttpListener::process_and_close_socket(socket_t sock) {
  HeadCappedStream stream(sock, limits_, to_ms(read_timeout_sec_, read_timeout_usec_),
                          to_ms(write_timeout_sec_, write_timeout_usec_));
  // httplib's keep-alive loop: up to keep_alive_max_count_ requests, each arriving within
  // keep_alive_timeout_sec_ of the last, while the server runs.
  bool ok = false;
  for (size_t left = keep_alive_max_count_; left > 0 && svr_sock_ != INVALID_SOCKET; --left) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(keep_alive_timeout_sec_);
    bool next_request = stream.has_buffered();
    while (!next_request && svr_sock_ != INVALID_SOCKET && std::chrono::steady_clock::now() < deadline)
      next_request = wait_for(sock, POLLIN, std::chrono::milliseconds(50));
    if (!next_request) break;
    stream.begin_request();
    bool connection_closed = false;
    ok = process_request(stream, left == 1, connection_closed, nullptr);
    if (!ok || connection_closed || stream.over_limit()) break;
  }
  if (stream.over_limit()) drain_before_close(sock);
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace omni::gateway
