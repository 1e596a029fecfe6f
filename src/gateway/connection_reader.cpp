#include "gateway/connection_reader.h"

#include <fcntl.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "base/system_error.h"
#include "gateway/api_error.h"

namespace omni::gateway {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kDrainBytes = 1 << 20;                 // read and dropped after an error answer
constexpr auto kDrainTime = std::chrono::seconds(1);
constexpr size_t kReadsPerWake = 4;                      // per connection, so one cannot starve the rest
constexpr auto kSweepInterval = std::chrono::milliseconds(100);

const char* error_code(int status) {
  switch (status) {
    case 408: return "request_timeout";
    case 413: return "request_too_large";
    case 431: return "request_header_fields_too_large";
    case 501: return "transfer_coding_not_supported";
    case 503: return "too_many_connections";
    case 505: return "http_version_not_supported";
    default: return "bad_request_framing";
  }
}

// A complete response with an OpenAI error object, after which the connection is closed.
std::string error_response(int status, const std::string& reason) {
  return closing_http_response(ApiError{status, reason,
                                        status >= 500 && status != 501 && status != 505 ? "server_error"
                                                                                        : "invalid_request_error",
                                        std::nullopt, std::string(error_code(status)), status == 503 ? 1 : 0});
}

// Best effort and without blocking: error answers are small enough for an empty socket buffer.
void send_now(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) sent += static_cast<size_t>(n);
    else if (!(n < 0 && errno == EINTR)) return;
  }
}

bool peer_address(int fd, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return false;
  char host[NI_MAXHOST];
  char serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return false;
  ip = host;
  port = std::atoi(serv);
  return true;
}

}  // namespace

bool ConnectionSlots::try_take(const std::string& ip) {
  std::lock_guard lock(mutex_);
  size_t& mine = per_ip_[ip];
  if (total_ >= limits_.max_connections || mine >= limits_.max_connections_per_ip) {
    if (mine == 0) per_ip_.erase(ip);
    return false;
  }
  ++total_;
  ++mine;
  return true;
}

void ConnectionSlots::release(const std::string& ip) {
  std::lock_guard lock(mutex_);
  --total_;
  if (auto it = per_ip_.find(ip); it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
}

ClientConnection::~ClientConnection() {
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  slots->release(ip);
}

Result<std::unique_ptr<ConnectionReader>> ConnectionReader::create(ConnectionLimits limits, FramingLimits framing,
                                                                   Dispatch dispatch) {
  const int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return errno_error(errno, "cannot create the gateway's epoll descriptor");
  const int wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    const int e = errno;
    ::close(epoll_fd);
    return errno_error(e, "cannot create the gateway's event descriptor");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_fd;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &ev) != 0) {
    const int e = errno;
    ::close(wake_fd);
    ::close(epoll_fd);
    return errno_error(e, "cannot watch the gateway's event descriptor");
  }
  return std::unique_ptr<ConnectionReader>(new ConnectionReader(limits, framing, std::move(dispatch), epoll_fd, wake_fd));
}

ConnectionReader::ConnectionReader(ConnectionLimits limits, FramingLimits framing, Dispatch dispatch, int epoll_fd,
                                   int wake_fd)
    : limits_(limits),
      framing_(framing),
      dispatch_(std::move(dispatch)),
      slots_(std::make_shared<ConnectionSlots>(limits)),
      epoll_fd_(epoll_fd),
      wake_fd_(wake_fd) {}

ConnectionReader::~ConnectionReader() {
  stop();
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void ConnectionReader::start() {
  std::lock_guard lock(mutex_);
  if (running_) return;
  running_ = true;
  thread_ = std::thread([this] { run(); });
}

void ConnectionReader::stop() {
  {
    std::lock_guard lock(mutex_);
    if (!running_) return;
    running_ = false;
  }
  const uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof one);
  thread_.join();
  held_.clear();
  std::lock_guard lock(mutex_);
  inbox_.clear();
}

void ConnectionReader::adopt(int fd) {
  std::string ip;
  int port = 0;
  const int flags = ::fcntl(fd, F_GETFL);
  if (!peer_address(fd, ip, port) || flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    ::close(fd);
    return;
  }
  if (!slots_->try_take(ip)) {
    // Whatever the client sent already is read first: closing with it unread would reset the
    // connection, and a reset can destroy the 503 before the client reads it.
    char discard[16384];
    for (int i = 0; i < 4 && ::recv(fd, discard, sizeof discard, MSG_DONTWAIT) > 0; ++i) {
    }
    send_now(fd, error_response(503, "too many connections from this address or in all; retry shortly"));
    ::shutdown(fd, SHUT_WR);
    ::close(fd);
    return;
  }
  auto connection = std::make_unique<ClientConnection>(fd, std::move(ip), port, framing_, slots_);
  connection->deadline = Clock::now() + limits_.head_timeout;
  resume(std::move(connection));
}

void ConnectionReader::resume(std::unique_ptr<ClientConnection> connection) {
  if (connection->requests_served > 0) {
    connection->awaiting = ClientConnection::Awaiting::NextRequest;
    connection->deadline = Clock::now() + limits_.idle_timeout;
  }
  {
    std::lock_guard lock(mutex_);
    if (!running_) return;  // closed as it goes out of scope
    inbox_.push_back(std::move(connection));
  }
  const uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof one);
}

void ConnectionReader::run() {
  std::array<epoll_event, 64> events;
  auto next_sweep = Clock::now() + kSweepInterval;
  for (;;) {
    const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                               static_cast<int>(kSweepInterval.count()));
    {
      std::lock_guard lock(mutex_);
      if (!running_) return;
    }
    for (int i = 0; i < n; ++i) {
      if (events[static_cast<size_t>(i)].data.fd == wake_fd_) {
        uint64_t count;
        (void)::read(wake_fd_, &count, sizeof count);
      } else {
        on_readable(events[static_cast<size_t>(i)].data.fd);
      }
    }
    take_inbox();
    if (Clock::now() >= next_sweep) {
      sweep_deadlines();
      next_sweep = Clock::now() + kSweepInterval;
    }
  }
}

void ConnectionReader::take_inbox() {
  std::vector<std::unique_ptr<ClientConnection>> arrived;
  {
    std::lock_guard lock(mutex_);
    arrived.swap(inbox_);
  }
  for (auto& c : arrived) hold(std::move(c));
}

void ConnectionReader::hold(std::unique_ptr<ClientConnection> connection) {
  const int fd = connection->fd;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) return;  // closed as it goes out of scope
  Held& held = held_[fd];
  held.connection = std::move(connection);
  // Pipelined bytes that arrived with the last request: the next request may be complete already.
  if (!held.connection->unread.empty()) {
    const std::string unread = std::move(held.connection->unread);
    held.connection->unread.clear();
    advance(held, unread);
  }
}

void ConnectionReader::on_readable(int fd) {
  auto it = held_.find(fd);
  if (it == held_.end()) return;
  Held& held = it->second;
  static thread_local std::array<char, 64 << 10> buffer;
  for (size_t reads = 0; reads < kReadsPerWake; ++reads) {
    const size_t want = held.draining ? std::min(buffer.size(), held.drain_left) : buffer.size();
    const ssize_t n = ::recv(fd, buffer.data(), want, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) return close_held(fd);  // the client closed (mid-request too: nothing to answer)
    if (held.draining) {
      held.drain_left -= static_cast<size_t>(n);
      if (held.drain_left == 0) return close_held(fd);
      continue;
    }
    if (!advance(held, std::string_view(buffer.data(), static_cast<size_t>(n)))) return;
  }
}

bool ConnectionReader::advance(Held& held, std::string_view bytes) {
  ClientConnection& c = *held.connection;
  const size_t used = c.framer.feed(bytes);
  switch (c.framer.state()) {
    case RequestFramer::State::Failed:
      refuse(held, c.framer.error().status, c.framer.error().reason);
      return false;
    case RequestFramer::State::Complete: {
      c.unread.assign(bytes.substr(used));
      c.request = c.framer.take();
      c.continue_sent = false;
      const int fd = c.fd;
      (void)::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      std::unique_ptr<ClientConnection> connection = std::move(held.connection);
      held_.erase(fd);
      dispatch_(std::move(connection));
      return false;
    }
    case RequestFramer::State::NeedMore:
      break;
  }
  if (c.awaiting == ClientConnection::Awaiting::NextRequest && c.framer.started()) {
    c.awaiting = ClientConnection::Awaiting::Head;
    c.deadline = Clock::now() + limits_.head_timeout;
  }
  if (c.awaiting == ClientConnection::Awaiting::Head && c.framer.head_complete()) {
    if (screen_) {
      if (std::optional<std::string> refusal = screen_(c.framer.head())) {
        refuse_with(held, *refusal);
        return false;
      }
    }
    c.awaiting = ClientConnection::Awaiting::Body;
    c.deadline = Clock::now() + limits_.body_timeout;
  }
  if (c.framer.expects_continue() && !c.continue_sent) {
    send_now(c.fd, "HTTP/1.1 100 Continue\r\n\r\n");
    c.continue_sent = true;
  }
  return true;
}

void ConnectionReader::refuse(Held& held, int status, const std::string& reason) {
  refuse_with(held, error_response(status, reason));
}

void ConnectionReader::refuse_with(Held& held, const std::string& response) {
  send_now(held.connection->fd, response);
  ::shutdown(held.connection->fd, SHUT_WR);
  held.draining = true;
  held.drain_left = kDrainBytes;
  held.connection->deadline = Clock::now() + kDrainTime;
}

void ConnectionReader::close_held(int fd) {
  (void)::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  held_.erase(fd);
}

void ConnectionReader::sweep_deadlines() {
  const auto now = Clock::now();
  std::vector<int> expired;
  for (auto& [fd, held] : held_) {
    if (now < held.connection->deadline) continue;
    if (held.draining || held.connection->awaiting == ClientConnection::Awaiting::NextRequest) {
      expired.push_back(fd);
    } else {
      refuse(held, 408,
             held.connection->awaiting == ClientConnection::Awaiting::Head
                 ? "the request head did not arrive within " + std::to_string(limits_.head_timeout.count()) + " ms"
                 : "the request body did not arrive within " + std::to_string(limits_.body_timeout.count()) + " ms");
    }
  }
  for (int fd : expired) close_held(fd);
}

}  // namespace omni::gateway
