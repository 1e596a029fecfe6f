#include "net/reachability.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstring>
#include <vector>

#include "base/system_error.h"

namespace omni::net {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kBusyAnswerers = 8;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
}

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  Fd(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string hex16(const ReachNonce& nonce) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : nonce) {
    s += kDigits[b >> 4];
    s += kDigits[b & 15];
  }
  return s;
}

Result<ReachNonce> parse_hex16(std::string_view text) {
  ReachNonce n{};
  if (text.size() != 32) return Error{ErrorCode::InvalidArgument, "the nonce must be 32 hex digits"};
  for (size_t i = 0; i < 32; ++i) {
    const char c = text[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return Error{ErrorCode::InvalidArgument, "the nonce must be 32 lower-case hex digits"};
    n[i / 2] = static_cast<uint8_t>(n[i / 2] << 4 | v);
  }
  return n;
}

// Splits on single spaces.
std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t sp = line.find(' ', start);
    out.push_back(line.substr(start, sp == std::string_view::npos ? std::string_view::npos : sp - start));
    if (sp == std::string_view::npos) return out;
    start = sp + 1;
  }
}

bool printable(std::string_view s) {
  for (char c : s)
    if (c < 0x20 || c > 0x7e) return false;
  return true;
}

// The address as text, an IPv4-mapped IPv6 one as IPv4; and the key the rate counts it by (IPv6:
// its /64, which one subscriber usually holds whole).
struct Peer {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;
  std::string key;
};

Peer describe(const sockaddr_storage& ss, socklen_t len) {
  Peer p;
  p.addr = ss;
  p.len = len;
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET6) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
      sockaddr_in a4{};
      a4.sin_family = AF_INET;
      std::memcpy(&a4.sin_addr, a6->sin6_addr.s6_addr + 12, 4);
      std::memset(&p.addr, 0, sizeof p.addr);
      std::memcpy(&p.addr, &a4, sizeof a4);
      p.len = sizeof a4;
      inet_ntop(AF_INET, &a4.sin_addr, buf, sizeof buf);
      p.text = p.key = buf;
      return p;
    }
    inet_ntop(AF_INET6, &a6->sin6_addr, buf, sizeof buf);
    p.text = buf;
    in6_addr prefix = a6->sin6_addr;
    std::memset(prefix.s6_addr + 8, 0, 8);
    inet_ntop(AF_INET6, &prefix, buf, sizeof buf);
    p.key = std::string(buf) + "/64";
    return p;
  }
  inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  p.text = p.key = buf;
  return p;
}

void set_port(sockaddr_storage& ss, uint16_t port) {
  if (ss.ss_family == AF_INET6)
    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
  else
    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
}

// Connects within `timeout_ms`; the errno of the failure (ETIMEDOUT when time ran out) otherwise.
Result<Fd> connect_within(const sockaddr* addr, socklen_t len, int timeout_ms, int* err_out) {
  Fd fd(::socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.fd < 0) {
    *err_out = errno;
    return errno_error(errno, "socket");
  }
  int err = 0;
  if (::connect(fd.fd, addr, len) != 0) {
    if (errno != EINPROGRESS) {
      err = errno;
    } else {
      pollfd p{fd.fd, POLLOUT, 0};
      int r;
      do r = ::poll(&p, 1, timeout_ms);
      while (r < 0 && errno == EINTR);
      if (r == 0) {
        err = ETIMEDOUT;
      } else {
        socklen_t el = sizeof err;
        if (::getsockopt(fd.fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) err = errno;
      }
    }
  }
  *err_out = err;
  if (err != 0) return errno_error(err, "connect");
  return fd;
}

Result<void> send_all(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return Error{ErrorCode::DeadlineExceeded, "send timed out"};
      continue;
    }
    return errno_error(errno, "send");
  }
  return {};
}

// One line (without its newline) of at most kMaxReachLine bytes, by `deadline`. The peers write
// nothing after their line, so reading past it loses nothing.
Result<std::string> read_line(int fd, Clock::time_point deadline) {
  std::string line;
  char buf[kMaxReachLine];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return Error{ErrorCode::DeadlineExceeded, "no complete line in time"};
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return errno_error(errno, "recv");
    if (n == 0) return Error{ErrorCode::Unavailable, "the connection ended before a complete line"};
    line.append(buf, static_cast<size_t>(n));
    const auto nl = line.find('\n');
    if (nl != std::string::npos) {
      line.resize(nl);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    if (line.size() >= kMaxReachLine) return Error{ErrorCode::InvalidArgument, "line too long"};
  }
}

std::string probe_line(const ReachNonce& nonce) { return std::string(kReachMagic) + " PROBE " + hex16(nonce) + "\n"; }

}  // namespace

const char* reach_verdict_name(ReachVerdict verdict) {
  switch (verdict) {
    case ReachVerdict::Open:
      return "open";
    case ReachVerdict::Refused:
      return "refused";
    case ReachVerdict::TimedOut:
      return "timeout";
    case ReachVerdict::Unreachable:
      return "unreachable";
  }
  return "unreachable";
}

std::string format_reach_request(const ReachRequest& request) {
  return std::string(kReachMagic) + " CHECK " + std::to_string(request.port) + " " + hex16(request.nonce) + "\n";
}

Result<ReachRequest> parse_reach_request(std::string_view line) {
  const auto w = words(line);
  if (w.size() != 4 || w[0] != kReachMagic || w[1] != "CHECK")
    return Error{ErrorCode::InvalidArgument, "not a reachability request (expected \"OMNI-REACH/1 CHECK PORT NONCE\")"};
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(w[2].data(), w[2].data() + w[2].size(), port);
  if (ec != std::errc() || end != w[2].data() + w[2].size() || port < 1024 || port > 65535)
    return Error{ErrorCode::InvalidArgument, "the port must be a number from 1024 to 65535"};
  auto nonce = parse_hex16(w[3]);
  if (!nonce) return nonce.error();
  return ReachRequest{static_cast<uint16_t>(port), *nonce};
}

std::string format_reach_result(const ReachReply& reply) {
  return std::string("RESULT ") + reach_verdict_name(reply.verdict) + " " + reply.address + "\n";
}

std::string format_reach_error(std::string_view reason, std::string_view sentence) {
  std::string s(sentence);
  for (char& c : s)
    if (c < 0x20 || c > 0x7e) c = '?';
  std::string line = "ERR " + std::string(reason) + " " + s;
  if (line.size() > kMaxReachLine - 1) line.resize(kMaxReachLine - 1);
  return line + "\n";
}

Result<ReachReply> parse_reach_reply(std::string_view line) {
  if (!printable(line)) return Error{ErrorCode::Corruption, "the reply is not a bootstrap's reachability answer"};
  const auto w = words(line);
  if (w.size() == 3 && w[0] == "RESULT") {
    for (ReachVerdict v : {ReachVerdict::Open, ReachVerdict::Refused, ReachVerdict::TimedOut, ReachVerdict::Unreachable})
      if (w[1] == reach_verdict_name(v)) return ReachReply{v, std::string(w[2])};
  }
  if (w.size() >= 2 && w[0] == "ERR") {
    const std::string sentence(line.substr(std::min(line.size(), 5 + w[1].size())));
    if (w[1] == "busy" || w[1] == "rate") return Error{ErrorCode::ResourceExhausted, "the bootstrap says: " + sentence};
    if (w[1] == "bad") return Error{ErrorCode::InvalidArgument, "the bootstrap says: " + sentence};
  }
  return Error{ErrorCode::Corruption, "the reply is not a bootstrap's reachability answer: \"" + std::string(line) + "\""};
}

Result<std::unique_ptr<ReachabilityServer>> ReachabilityServer::start(const HostPort& listen,
                                                                      const ReachabilityServerOptions& options) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(listen.port);
  const bool any = listen.host.empty() || listen.host == "0.0.0.0" || listen.host == "::";
  if (const int rc = ::getaddrinfo(any ? nullptr : listen.host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return Error{ErrorCode::InvalidArgument, "cannot resolve " + listen.to_string() + ": " + gai_strerror(rc)};
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> list(found, ::freeaddrinfo);
  // "0.0.0.0" means IPv4 only, as the DHT socket on the same --listen does.
  const addrinfo* chosen = nullptr;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (listen.host == "0.0.0.0" && a->ai_family != AF_INET) continue;
    if (chosen == nullptr || (any && listen.host != "0.0.0.0" && a->ai_family == AF_INET6)) chosen = a;
  }
  if (chosen == nullptr) return Error{ErrorCode::InvalidArgument, "no address for " + listen.to_string()};
  Fd fd(::socket(chosen->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.fd < 0) return errno_error(errno, "socket");
  const int one = 1, zero = 0;
  ::setsockopt(fd.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (chosen->ai_family == AF_INET6) ::setsockopt(fd.fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (::bind(fd.fd, chosen->ai_addr, chosen->ai_addrlen) != 0)
    return errno_error(errno, "reachability checks: tcp " + listen.to_string());
  if (::listen(fd.fd, 64) != 0) return errno_error(errno, "listen");
  sockaddr_storage bound{};
  socklen_t bl = sizeof bound;
  ::getsockname(fd.fd, reinterpret_cast<sockaddr*>(&bound), &bl);
  const uint16_t bound_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                                : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  std::unique_ptr<ReachabilityServer> server(new ReachabilityServer(fd.fd, bound_port, options));
  fd.fd = -1;
  if (::pipe2(server->wake_, O_CLOEXEC) != 0) return errno_error(errno, "pipe");
  server->acceptor_ = std::thread([s = server.get()] { s->accept_loop(); });
  return server;
}

ReachabilityServer::ReachabilityServer(int fd, uint16_t port, const ReachabilityServerOptions& options)
    : fd_(fd), port_(port), options_(options) {}

ReachabilityServer::~ReachabilityServer() {
  if (acceptor_.joinable()) {
    const char byte = 0;
    [[maybe_unused]] const ssize_t n = ::write(wake_[1], &byte, 1);
    acceptor_.join();
  }
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [this] { return active_ == 0; });
  lock.unlock();
  ::close(fd_);
  for (int f : wake_)
    if (f >= 0) ::close(f);
}

void ReachabilityServer::accept_loop() {
  for (;;) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents != 0) return;
    const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      // Out of descriptors: wait a little rather than spin on the pending connection.
      if (errno == EMFILE || errno == ENFILE) ::poll(nullptr, 0, 100);
      continue;
    }
    bool busy = false;
    {
      std::lock_guard lock(mutex_);
      // Past max_concurrent checks, a few more threads only answer "busy" (closing at once could
      // reset the connection before the asker reads why); past those, connections are just closed.
      if (active_ >= options_.max_concurrent + kBusyAnswerers) {
        ::close(client);
        continue;
      }
      busy = active_ >= options_.max_concurrent;
      ++active_;
    }
    std::thread([this, client, busy] {
      if (busy)
        (void)send_all(client, format_reach_error("busy", "too many reachability checks at once; try again later"),
                       Clock::now() + std::chrono::milliseconds(200));
      else
        serve(client);
      // Closing with unread bytes would reset the connection and could discard our answer at the
      // asker: end our side, then read what is left for a moment.
      ::shutdown(client, SHUT_WR);
      const auto until = Clock::now() + std::chrono::milliseconds(200);
      char sink[512];
      for (pollfd p{client, POLLIN, 0}; ::poll(&p, 1, remaining_ms(until)) > 0;)
        if (::recv(client, sink, sizeof sink, 0) <= 0) break;
      ::close(client);
      std::lock_guard lock(mutex_);
      --active_;
      idle_.notify_all();
    }).detach();
  }
}

ReachabilityServer::Admit ReachabilityServer::admit(const std::string& key) {
  std::lock_guard lock(mutex_);
  const int64_t now = now_ms();
  auto prune = [now](std::deque<int64_t>& times) {
    while (!times.empty() && now - times.front() >= 60000) times.pop_front();
  };
  auto it = recent_.find(key);
  if (it == recent_.end()) {
    if (recent_.size() >= options_.max_tracked_askers) {
      for (auto i = recent_.begin(); i != recent_.end();) {
        prune(i->second);
        i = i->second.empty() ? recent_.erase(i) : std::next(i);
      }
      if (recent_.size() >= options_.max_tracked_askers) return Admit::Full;
    }
    it = recent_.emplace(key, std::deque<int64_t>{}).first;
  }
  prune(it->second);
  if (it->second.size() >= options_.checks_per_minute) return Admit::Rate;
  it->second.push_back(now);
  return Admit::Yes;
}

void ReachabilityServer::serve(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
  const Peer peer = describe(ss, len);
  const auto reply_deadline = Clock::now() + std::chrono::milliseconds(options_.request_timeout_ms);
  auto line = read_line(fd, reply_deadline);
  if (!line) {
    if (line.error().code == ErrorCode::InvalidArgument)
      (void)send_all(fd, format_reach_error("bad", "the request line is too long"), reply_deadline);
    return;
  }
  auto request = parse_reach_request(*line);
  if (!request) {
    (void)send_all(fd, format_reach_error("bad", request.error().message), reply_deadline);
    return;
  }
  switch (admit(peer.key)) {
    case Admit::Yes:
      break;
    case Admit::Rate:
      (void)send_all(fd,
                     format_reach_error("rate", "at most " + std::to_string(options_.checks_per_minute) +
                                                    " checks a minute per address; try again in a minute"),
                     reply_deadline);
      return;
    case Admit::Full:
      (void)send_all(fd, format_reach_error("busy", "too many addresses checked this minute; try again later"),
                     reply_deadline);
      return;
  }
  sockaddr_storage back = peer.addr;
  set_port(back, request->port);
  int err = 0;
  auto conn = connect_within(reinterpret_cast<const sockaddr*>(&back), peer.len,
                             static_cast<int>(options_.connect_timeout_ms), &err);
  ReachReply reply{ReachVerdict::Open, peer.text};
  if (conn) {
    (void)send_all(conn->fd, probe_line(request->nonce),
                   Clock::now() + std::chrono::milliseconds(options_.connect_timeout_ms));
  } else {
    reply.verdict = err == ECONNREFUSED ? ReachVerdict::Refused
                    : err == ETIMEDOUT  ? ReachVerdict::TimedOut
                                        : ReachVerdict::Unreachable;
  }
  conn = Fd();
  (void)send_all(fd, format_reach_result(reply), Clock::now() + std::chrono::milliseconds(options_.request_timeout_ms));
}

Result<ReachabilityResult> check_reachability(const HostPort& bootstrap, uint16_t port,
                                              const ReachabilityCheckOptions& options) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(options.timeout_ms);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(bootstrap.port);
  if (const int rc = ::getaddrinfo(bootstrap.host.c_str(), port_text.c_str(), &hints, &found); rc != 0)
    return Error{ErrorCode::Unavailable, "cannot resolve the bootstrap " + bootstrap.to_string() + ": " + gai_strerror(rc)};
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> list(found, ::freeaddrinfo);
  Fd control;
  Error last{ErrorCode::Unavailable, "no address"};
  for (const addrinfo* a = found; a != nullptr && control.fd < 0; a = a->ai_next) {
    int err = 0;
    auto c = connect_within(a->ai_addr, a->ai_addrlen, std::min(remaining_ms(deadline), 5000), &err);
    if (c) control = std::move(*c);
    else last = c.error();
  }
  if (control.fd < 0)
    return Error{last.code == ErrorCode::DeadlineExceeded ? ErrorCode::DeadlineExceeded : ErrorCode::Unavailable,
                 "cannot reach the bootstrap's reachability check at tcp " + bootstrap.to_string() + ": " + last.message};
  sockaddr_storage local{};
  socklen_t ll = sizeof local;
  ::getsockname(control.fd, reinterpret_cast<sockaddr*>(&local), &ll);

  ReachabilityResult result;
  Fd listener;
  if (options.listen) {
    // The port on every address of the family the bootstrap sees us by.
    sockaddr_storage any{};
    any.ss_family = local.ss_family;
    set_port(any, port);
    const socklen_t al = local.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    Fd l(::socket(local.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (l.fd < 0) return errno_error(errno, "socket");
    const int one = 1;
    ::setsockopt(l.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(l.fd, reinterpret_cast<const sockaddr*>(&any), al) == 0 && ::listen(l.fd, 8) == 0) {
      listener = std::move(l);
      result.listened = true;
    } else if (errno != EADDRINUSE) {
      return errno_error(errno, "listening on port " + std::to_string(port) + " for the check");
    }
  }
  ReachRequest request{port, {}};
  if (::getrandom(request.nonce.data(), request.nonce.size(), 0) != static_cast<ssize_t>(request.nonce.size()))
    return errno_error(errno, "getrandom");

  // Accepts on our port until the probe with our nonce arrives or `stop` is set.
  std::atomic<bool> stop{false}, received{false};
  std::thread acceptor;
  if (listener.fd >= 0) {
    acceptor = std::thread([&] {
      const std::string expected = probe_line(request.nonce);
      while (!stop && !received) {
        pollfd p{listener.fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        Fd c(::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC));
        if (c.fd < 0) continue;
        auto line = read_line(c.fd, Clock::now() + std::chrono::milliseconds(2000));
        if (line && *line + "\n" == expected) received = true;
      }
    });
  }
  auto finish = [&] {
    stop = true;
    if (acceptor.joinable()) acceptor.join();
  };
  if (auto sent = send_all(control.fd, format_reach_request(request), deadline); !sent) {
    finish();
    return Error{sent.error().code, "sending the check to the bootstrap: " + sent.error().message};
  }
  auto line = read_line(control.fd, deadline);
  if (!line) {
    finish();
    return Error{line.error().code == ErrorCode::DeadlineExceeded ? ErrorCode::DeadlineExceeded : ErrorCode::Unavailable,
                 "no answer from the bootstrap's reachability check at " + bootstrap.to_string() + ": " +
                     line.error().message};
  }
  auto reply = parse_reach_reply(*line);
  if (!reply) {
    finish();
    return reply.error();
  }
  // The bootstrap sent the probe before its answer; give it a moment to be accepted here.
  if (reply->verdict == ReachVerdict::Open && listener.fd >= 0) {
    const auto grace = std::min(deadline, Clock::now() + std::chrono::milliseconds(2000));
    while (!received && Clock::now() < grace) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  finish();
  result.verdict = reply->verdict;
  result.seen_address = reply->address;
  result.probe_received = received;
  return result;
}

}  // namespace omni::net
