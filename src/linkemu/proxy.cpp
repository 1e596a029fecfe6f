#include "linkemu/proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <limits>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/system_error.h"

namespace omni::linkemu {

namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
// Bytes read from one socket per readiness event: keeps one fast sender from starving the rest.
constexpr std::size_t kReadBudgetPerEvent = 256 * 1024;
constexpr Nanos kNever = std::numeric_limits<Nanos>::max();

Nanos monotonic_now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<Nanos>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string errno_text(int err) { return std::strerror(err); }

std::string sockaddr_text(const sockaddr_storage& addr, socklen_t len) {
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, host, sizeof host, port, sizeof port,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  const bool v6 = addr.ss_family == AF_INET6;
  return (v6 ? std::string("[") + host + "]" : std::string(host)) + ":" + port;
}

// All addresses of an endpoint, in getaddrinfo's order of preference.
Result<std::vector<sockaddr_storage>> resolve(const Endpoint& e, bool passive, std::vector<socklen_t>& lens) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* found = nullptr;
  const std::string port = std::to_string(e.port);
  const int rc = getaddrinfo(e.host.empty() ? nullptr : e.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) return Error{ErrorCode::Unavailable, "cannot resolve " + e.to_string() + ": " + gai_strerror(rc)};
  std::vector<sockaddr_storage> out;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    sockaddr_storage s{};
    std::memcpy(&s, a->ai_addr, a->ai_addrlen);
    out.push_back(s);
    lens.push_back(a->ai_addrlen);
  }
  freeaddrinfo(found);
  if (out.empty()) return Error{ErrorCode::NotFound, "cannot resolve " + e.to_string() + ": no address"};
  return out;
}

void set_nodelay(int fd) {
  // The emulator decides when bytes leave; Nagle's algorithm would add its own delays on top.
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Closes with RST instead of FIN, so the peer sees the failure as the reset it was.
void close_with_reset(int fd) {
  if (fd < 0) return;
  linger hard{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  close(fd);
}

// epoll user data: which object an event is for. Connections are found by id, so an event for a
// connection closed earlier in the same batch finds nothing instead of freed memory.
constexpr std::uint64_t kListenTag = 0;
constexpr std::uint64_t kTimerTag = 1;
constexpr std::uint64_t kStopTag = 2;
constexpr std::uint64_t kFirstConnectionTag = 4;  // tag = id << 1 | side (0 client, 1 target)

// One direction of a connection: bytes read from `src` wait here until due, then go to `dst`.
struct Direction {
  Direction(DirectionParams params, std::uint64_t seed, Bottleneck& link) : shaper(params, seed, link) {}

  LinkShaper shaper;
  std::vector<char> buffer;         // bytes [written, read) of the stream, from buffer_head on
  std::size_t buffer_head = 0;
  std::uint64_t read_total = 0;
  std::uint64_t written_total = 0;
  std::uint64_t released_end = 0;   // bytes up to here are due and may be written
  std::deque<Segment> pending;      // scheduled segments not yet due
  bool src_eof = false;
  Nanos fin_due = kNever;
  bool fin_sent = false;
  bool write_blocked = false;       // dst's send buffer is full: wait for EPOLLOUT

  std::uint64_t queued() const { return read_total - written_total; }
  bool drained() const { return written_total == read_total; }

  // When this direction next needs the loop's attention for a delivery (kNever if it does not).
  Nanos next_due() const {
    if (write_blocked) return kNever;  // EPOLLOUT will wake us instead
    if (released_end > written_total) return 0;
    if (!pending.empty()) return pending.front().due;
    if (src_eof && !fin_sent && drained()) return fin_due;
    return kNever;
  }
};

struct Socket {
  int fd = -1;
  std::uint32_t registered_events = 0;
  bool registered = false;
};

}  // namespace

struct Proxy::Impl {
  struct Connection {
    Connection(std::uint64_t id, const ProxyConfig& c, Bottleneck& up_link, Bottleneck& down_link)
        : id(id),
          up(c.up, c.seed * 0x9E3779B97F4A7C15ULL + 2 * id, up_link),
          down(c.down, c.seed * 0x9E3779B97F4A7C15ULL + 2 * id + 1, down_link) {}
    std::uint64_t id;
    Socket client;
    Socket target;
    bool connected = false;
    Direction up;    // client → target
    Direction down;  // target → client
    std::string peer;
  };

  explicit Impl(const ProxyConfig& c) : config(c), up_link(c.up.rate_bits_per_s), down_link(c.down.rate_bits_per_s) {}

  ProxyConfig config;
  // All connections share the link's rate in each direction, as on a real link.
  Bottleneck up_link;
  Bottleneck down_link;
  std::size_t up_limit = 0;
  std::size_t down_limit = 0;
  std::vector<sockaddr_storage> target_addrs;
  std::vector<socklen_t> target_lens;
  int listen_fd = -1;
  int epoll_fd = -1;
  int timer_fd = -1;
  int stop_fd = -1;
  std::string bound;
  std::uint16_t bound_port = 0;
  std::uint64_t next_id = 0;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections;
  std::atomic<std::size_t> open_count{0};
  std::atomic<std::size_t> peak_queued{0};
  std::atomic<bool> shaping{true};
  static_assert(std::atomic<bool>::is_always_lock_free, "set_shaping() is called from signal handlers");
  Nanos armed_for = kNever;

  ~Impl() {
    for (auto& [id, c] : connections) {
      if (c->client.fd >= 0) close(c->client.fd);
      if (c->target.fd >= 0) close(c->target.fd);
    }
    for (int fd : {listen_fd, epoll_fd, timer_fd, stop_fd}) {
      if (fd >= 0) close(fd);
    }
  }

  void log(const Connection& c, const std::string& what) const {
    std::fprintf(stderr, "omni-linkemu: connection %llu (%s): %s\n", static_cast<unsigned long long>(c.id),
                 c.peer.c_str(), what.c_str());
  }

  Result<void> add_fd(int fd, std::uint64_t tag, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) return errno_error(errno, "epoll_ctl");
    return {};
  }

  // Registers exactly the events wanted; a socket that wants none is removed from epoll, because
  // EPOLLHUP/EPOLLERR are reported regardless of the mask and would wake a paused loop forever.
  void want(Socket& s, std::uint64_t tag, std::uint32_t events) {
    if (s.fd < 0) return;
    if (events == 0) {
      if (s.registered) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, s.fd, nullptr);
      s.registered = false;
      s.registered_events = 0;
      return;
    }
    if (s.registered && s.registered_events == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    epoll_ctl(epoll_fd, s.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s.fd, &ev);
    s.registered = true;
    s.registered_events = events;
  }

  static std::uint64_t tag(const Connection& c, int side) { return kFirstConnectionTag + (c.id << 1 | side); }

  bool may_read(const Connection& c, const Direction& d, std::size_t limit) const {
    return c.connected && !d.src_eof && d.queued() < limit;
  }

  void update_interest(Connection& c) {
    if (!c.connected) {
      want(c.client, tag(c, 0), 0);
      want(c.target, tag(c, 1), EPOLLOUT);  // connect completion
      return;
    }
    want(c.client, tag(c, 0), (may_read(c, c.up, up_limit) ? EPOLLIN : 0u) | (c.down.write_blocked ? EPOLLOUT : 0u));
    want(c.target, tag(c, 1), (may_read(c, c.down, down_limit) ? EPOLLIN : 0u) | (c.up.write_blocked ? EPOLLOUT : 0u));
  }

  void abort_connection(Connection& c, const std::string& why) {
    log(c, why);
    close_with_reset(c.client.fd);
    close_with_reset(c.target.fd);
    c.client.fd = c.target.fd = -1;
  }

  void finish_connection(Connection& c) {
    if (config.verbose) {
      log(c, "closed after " + std::to_string(c.up.written_total) + " bytes up, " +
                 std::to_string(c.down.written_total) + " bytes down");
    }
    close(c.client.fd);
    close(c.target.fd);
    c.client.fd = c.target.fd = -1;
  }

  // Reads what `src` has (within the queue limit and this event's budget) and schedules it.
  // Returns false if the connection was aborted.
  bool read_from(Connection& c, Direction& d, int src, std::size_t limit) {
    std::size_t budget = kReadBudgetPerEvent;
    while (budget > 0 && !d.src_eof && d.queued() < limit) {
      if (d.buffer_head > 0 && d.buffer_head >= d.buffer.size() / 2) {
        d.buffer.erase(d.buffer.begin(), d.buffer.begin() + static_cast<std::ptrdiff_t>(d.buffer_head));
        d.buffer_head = 0;
      }
      const std::size_t want_bytes = std::min(kReadChunk, budget);
      const std::size_t old_size = d.buffer.size();
      d.buffer.resize(old_size + want_bytes);
      const ssize_t n = recv(src, d.buffer.data() + old_size, want_bytes, 0);
      if (n < 0) {
        d.buffer.resize(old_size);
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        abort_connection(c, "read failed: " + errno_text(errno));
        return false;
      }
      d.buffer.resize(old_size + static_cast<std::size_t>(n));
      const Nanos arrival = monotonic_now();
      if (n == 0) {
        d.src_eof = true;
        d.fin_due = d.shaper.schedule_close(arrival, shaping.load(std::memory_order_relaxed));
        return true;
      }
      d.read_total += static_cast<std::uint64_t>(n);
      if (d.queued() > peak_queued.load(std::memory_order_relaxed)) {
        peak_queued.store(static_cast<std::size_t>(d.queued()), std::memory_order_relaxed);
      }
      budget -= static_cast<std::size_t>(std::min<std::size_t>(budget, static_cast<std::size_t>(n)));
      if (shaping.load(std::memory_order_relaxed)) {
        d.shaper.schedule(arrival, static_cast<std::size_t>(n), d.pending);
      } else {
        d.shaper.pass_through(arrival, static_cast<std::size_t>(n), d.pending);
      }
    }
    return true;
  }

  // Writes whatever of `d` is due by `now` to `dst`, then the FIN if it is due.
  // Returns false if the connection was aborted.
  bool deliver(Connection& c, Direction& d, int dst, Nanos now) {
    while (!d.pending.empty() && d.pending.front().due <= now) {
      d.released_end = d.pending.front().end;
      d.pending.pop_front();
    }
    d.write_blocked = false;
    while (d.written_total < d.released_end) {
      const std::size_t n = static_cast<std::size_t>(d.released_end - d.written_total);
      const ssize_t sent = send(dst, d.buffer.data() + d.buffer_head, n, MSG_NOSIGNAL);
      if (sent < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          d.write_blocked = true;
          return true;
        }
        abort_connection(c, "write failed: " + errno_text(errno));
        return false;
      }
      d.written_total += static_cast<std::uint64_t>(sent);
      d.buffer_head += static_cast<std::size_t>(sent);
    }
    if (d.drained()) {
      d.buffer.clear();
      d.buffer_head = 0;
    }
    if (d.src_eof && !d.fin_sent && d.drained() && d.fin_due <= now) {
      shutdown(dst, SHUT_WR);
      d.fin_sent = true;
    }
    return true;
  }

  void on_accept() {
    while (true) {
      sockaddr_storage peer{};
      socklen_t peer_len = sizeof peer;
      const int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) std::fprintf(stderr, "omni-linkemu: accept: %s\n", std::strerror(errno));
        return;
      }
      set_nodelay(fd);
      auto c = std::make_unique<Connection>(next_id++, config, up_link, down_link);
      c->client.fd = fd;
      c->peer = sockaddr_text(peer, peer_len);
      if (!start_connect(*c)) continue;
      if (config.verbose) log(*c, "opened");
      open_count.fetch_add(1);
      update_interest(*c);
      const std::uint64_t id = c->id;
      connections.emplace(id, std::move(c));
    }
  }

  // Starts the non-blocking connect to the target; false (and the client reset) if it failed at once.
  bool start_connect(Connection& c) {
    const sockaddr_storage& addr = target_addrs.front();
    const int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      abort_connection(c, "socket: " + errno_text(errno));
      return false;
    }
    set_nodelay(fd);
    c.target.fd = fd;
    if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), target_lens.front()) == 0) {
      c.connected = true;
    } else if (errno != EINPROGRESS) {
      abort_connection(c, "cannot connect to " + config.target.to_string() + ": " + errno_text(errno));
      return false;
    }
    return true;
  }

  void on_connection_event(Connection& c, int side, std::uint32_t events) {
    if (!c.connected) {
      if (side != 1) return;
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.target.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        abort_connection(c, "cannot connect to " + config.target.to_string() + ": " + errno_text(err));
        return;
      }
      if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
      c.connected = true;
      return;
    }
    Direction& in = side == 0 ? c.up : c.down;    // read from this side
    Direction& out = side == 0 ? c.down : c.up;   // written to this side
    const int fd = side == 0 ? c.client.fd : c.target.fd;
    const std::size_t limit = side == 0 ? up_limit : down_limit;
    const bool error_or_hangup = (events & (EPOLLERR | EPOLLHUP)) != 0;
    if ((events & EPOLLIN) || (error_or_hangup && may_read(c, in, limit))) {
      if (!read_from(c, in, fd, limit)) return;
    }
    if ((events & EPOLLOUT) || (error_or_hangup && out.write_blocked)) {
      // The send buffer has room again: deliver what became due meanwhile (written in the sweep).
      out.write_blocked = false;
    }
  }

  // Delivers what is due on every connection, closes finished ones, re-registers interest and
  // re-arms the timer for the earliest next delivery.
  Result<void> sweep() {
    const Nanos now = monotonic_now();
    Nanos earliest = kNever;
    for (auto it = connections.begin(); it != connections.end();) {
      Connection& c = *it->second;
      bool alive = c.client.fd >= 0;
      if (alive && c.connected) {
        alive = deliver(c, c.up, c.target.fd, now) && deliver(c, c.down, c.client.fd, now);
        if (alive && c.up.fin_sent && c.down.fin_sent) {
          finish_connection(c);
          alive = false;
        }
      }
      if (!alive) {
        open_count.fetch_sub(1);
        it = connections.erase(it);
        continue;
      }
      update_interest(c);
      if (c.connected) earliest = std::min({earliest, c.up.next_due(), c.down.next_due()});
      ++it;
    }
    return arm_timer(earliest);
  }

  Result<void> arm_timer(Nanos when) {
    if (when == armed_for) return {};
    itimerspec spec{};
    if (when != kNever) {
      // A time already past fires at once; 0 would disarm the timer, so use at least 1 ns.
      const Nanos at = std::max<Nanos>(when, 1);
      spec.it_value.tv_sec = static_cast<time_t>(at / 1'000'000'000);
      spec.it_value.tv_nsec = static_cast<long>(at % 1'000'000'000);
    }
    if (timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &spec, nullptr) != 0) {
      return errno_error(errno, "timerfd_settime");
    }
    armed_for = when;
    return {};
  }
};

Proxy::Proxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Proxy::~Proxy() = default;

Result<std::unique_ptr<Proxy>> Proxy::start(const ProxyConfig& config) {
  auto impl = std::make_unique<Impl>(config);
  impl->shaping = config.start_shaped;
  impl->up_limit = config.queue_limit_bytes ? config.queue_limit_bytes : LinkShaper::default_queue_limit(config.up);
  impl->down_limit = config.queue_limit_bytes ? config.queue_limit_bytes : LinkShaper::default_queue_limit(config.down);

  auto target = resolve(config.target, false, impl->target_lens);
  if (!target) return target.error().with_context("target");
  impl->target_addrs = std::move(*target);

  std::vector<socklen_t> listen_lens;
  auto listen_addrs = resolve(config.listen, true, listen_lens);
  if (!listen_addrs) return listen_addrs.error().with_context("listen");
  Error last_error{ErrorCode::NotFound, "no address"};
  for (std::size_t i = 0; i < listen_addrs->size() && impl->listen_fd < 0; ++i) {
    const sockaddr_storage& addr = (*listen_addrs)[i];
    const int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_error = errno_error(errno, "socket");
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), listen_lens[i]) != 0 || listen(fd, SOMAXCONN) != 0) {
      last_error = errno_error(errno, "bind");
      close(fd);
      continue;
    }
    impl->listen_fd = fd;
  }
  if (impl->listen_fd < 0) return last_error.with_context("cannot listen on " + config.listen.to_string());

  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  getsockname(impl->listen_fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  impl->bound = sockaddr_text(bound, bound_len);
  impl->bound_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                       : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  impl->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  impl->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  impl->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl->epoll_fd < 0 || impl->timer_fd < 0 || impl->stop_fd < 0)
    return errno_error(errno, "cannot create epoll/timerfd/eventfd");
  for (auto [fd, tag] : {std::pair{impl->listen_fd, kListenTag}, {impl->timer_fd, kTimerTag}, {impl->stop_fd, kStopTag}}) {
    if (auto r = impl->add_fd(fd, tag, EPOLLIN); !r) return r.error();
  }
  return std::unique_ptr<Proxy>(new Proxy(std::move(impl)));
}

std::string Proxy::listen_address() const { return impl_->bound; }
std::uint16_t Proxy::listen_port() const { return impl_->bound_port; }
std::size_t Proxy::open_connections() const { return impl_->open_count.load(); }
void Proxy::set_shaping(bool on) { impl_->shaping.store(on); }
std::size_t Proxy::peak_queued_bytes() const { return impl_->peak_queued.load(); }

void Proxy::stop() {
  const std::uint64_t one = 1;
  // write() is async-signal-safe; a full counter (impossible in practice) still leaves it readable.
  [[maybe_unused]] const ssize_t ignored = write(impl_->stop_fd, &one, sizeof one);
}

Result<void> Proxy::run() {
  Impl& s = *impl_;
  epoll_event events[64];
  while (true) {
    const int n = epoll_wait(s.epoll_fd, events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, "epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const std::uint64_t tag = events[i].data.u64;
      if (tag == kStopTag) {
        std::uint64_t count = 0;
        [[maybe_unused]] const ssize_t ignored = read(s.stop_fd, &count, sizeof count);
        return {};
      }
      if (tag == kListenTag) {
        s.on_accept();
      } else if (tag == kTimerTag) {
        std::uint64_t expirations = 0;
        [[maybe_unused]] const ssize_t ignored = read(s.timer_fd, &expirations, sizeof expirations);
        s.armed_for = kNever;  // it fired; the sweep re-arms it
      } else {
        const std::uint64_t key = tag - kFirstConnectionTag;
        auto it = s.connections.find(key >> 1);
        if (it == s.connections.end() || it->second->client.fd < 0) continue;
        s.on_connection_event(*it->second, static_cast<int>(key & 1), events[i].events);
      }
    }
    if (auto r = s.sweep(); !r) return r;
  }
}

}  // namespace omni::linkemu
