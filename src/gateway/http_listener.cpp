#include "gateway/http_listener.h"

#include <malloc.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/system_error.h"

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

// One request a worker answers: httplib reads it from memory (the reframed request the reader
// received) and writes the response to the client's socket, as its own SocketStream would. Writes
// fail once the client has closed its side, which is how a disconnected client's generation gets
// cancelled.
class BufferedRequestStream final : public httplib::Stream {
 public:
  BufferedRequestStream(const ClientConnection& connection, std::chrono::milliseconds write_timeout)
      : connection_(connection), write_timeout_(write_timeout) {}

  bool is_readable() const override { return pos_ < size(); }
  bool is_writable() const override { return wait_for(connection_.fd, POLLOUT, write_timeout_) && peer_open(); }

  ssize_t read(char* ptr, size_t n) override {
    const std::string& head = connection_.request.head;
    const std::string& body = connection_.request.body;
    size_t done = 0;
    if (pos_ < head.size()) {
      done = std::min(n, head.size() - pos_);
      std::memcpy(ptr, head.data() + pos_, done);
    } else if (pos_ < size()) {
      done = std::min(n, size() - pos_);
      std::memcpy(ptr, body.data() + (pos_ - head.size()), done);
    }
    pos_ += done;
    return static_cast<ssize_t>(done);
  }

  ssize_t write(const char* ptr, size_t n) override {
    for (;;) {
      const ssize_t sent = ::send(connection_.fd, ptr, n, MSG_NOSIGNAL);
      if (sent >= 0) return sent;
      if (errno == EINTR) continue;
      if ((errno != EAGAIN && errno != EWOULDBLOCK) || !wait_for(connection_.fd, POLLOUT, write_timeout_)) return -1;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = connection_.ip;
    port = connection_.port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(connection_.fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) numeric_name(addr, len, ip, port);
  }
  socket_t socket() const override { return connection_.fd; }

 private:
  size_t size() const { return connection_.request.head.size() + connection_.request.body.size(); }

  // Whether the client has not closed its side: readable with nothing to read means it has.
  bool peer_open() const {
    if (!wait_for(connection_.fd, POLLIN, std::chrono::milliseconds(0))) return true;
    char byte;
    ssize_t n;
    do n = ::recv(connection_.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
  }

  const ClientConnection& connection_;
  std::chrono::milliseconds write_timeout_;
  size_t pos_ = 0;
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

}  // namespace

// httplib's task queue for one listen: the accept loop's "task" for each socket is handing it to the
// reader, done at once on the accepting thread; complete requests go to the worker pool.
class HttpListener::Serving final : public httplib::TaskQueue {
 public:
  explicit Serving(HttpListener& listener) : listener_(listener), workers_(listener.worker_threads_) {
    listener_.serving_ = this;
    if (listener_.reader_) listener_.reader_->start();
  }
  void enqueue(std::function<void()> fn) override { fn(); }  // process_and_close_socket(sock)
  void shutdown() override {
    if (listener_.reader_) listener_.reader_->stop();
    workers_.shutdown();
    listener_.serving_ = nullptr;
  }
  void answer(std::unique_ptr<ClientConnection> connection) {
    auto taken = std::make_shared<std::unique_ptr<ClientConnection>>(std::move(connection));
    workers_.enqueue([this, taken] { listener_.answer(std::move(*taken)); });
  }

 private:
  HttpListener& listener_;
  httplib::ThreadPool workers_;
};

HttpListener::HttpListener(HeadLimits head_limits, ConnectionLimits connection_limits)
    : head_limits_(head_limits), connection_limits_(connection_limits) {
  // httplib's default options add SO_REUSEPORT, with which a second server binds the same port and
  // the kernel splits connections between the two. SO_REUSEADDR alone only lets a restarted server
  // rebind while old connections linger in TIME_WAIT.
  set_socket_options([this](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listening_ = sock;
  });
  new_task_queue = [this] { return new Serving(*this); };
}

HttpListener::~HttpListener() = default;

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
  FramingLimits framing;
  framing.head = head_limits_;
  framing.max_body_bytes = payload_max_length_;
  auto reader = ConnectionReader::create(connection_limits_, framing, [this](std::unique_ptr<ClientConnection> c) {
    serving_->answer(std::move(c));  // the reader runs only while serving_ is set
  });
  if (!reader) return Error{ErrorCode::Unavailable, reader.error().message};
  reader_ = std::move(*reader);
  if (head_screen_) reader_->set_head_screen(head_screen_);
  return bound;
}

bool HttpListener::process_and_close_socket(socket_t sock) {
  if (!reader_) {  // listen() without bind_listener(): nothing to serve with
    ::close(sock);
    return false;
  }
  reader_->adopt(sock);
  return true;
}

void HttpListener::answer(std::unique_ptr<ClientConnection> connection) {
  ++connection->requests_served;  // resume() then waits for the next request under the idle deadline
  const bool large = connection->request.body.size() >= kLargeRequestBytes;
  const bool last = !connection->request.keep_alive || connection->requests_served >= keep_alive_max_count_ ||
                    svr_sock_ == INVALID_SOCKET;
  bool connection_closed = false;
  BufferedRequestStream stream(*connection, to_ms(write_timeout_sec_, write_timeout_usec_));
  const bool ok = process_request(stream, last, connection_closed, nullptr);
  connection->request = {};
  // What a large request's copies and parse left in the allocator's free lists goes back to the
  // system, so a gateway's resident size follows its load instead of its largest burst.
  if (large) ::malloc_trim(0);
  if (ok && !last && !connection_closed) reader_->resume(std::move(connection));
}

}  // namespace omni::gateway
