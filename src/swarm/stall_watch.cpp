#include "swarm/stall_watch.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <kj/async-io.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>

#include "net/node_connection.h"
#include "net/tls.h"

namespace omni::swarm {
namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// An address in one comparable form (IPv4-mapped IPv6 as IPv4).
struct Endpoint {
  int family = 0;
  uint8_t addr[16] = {};
  uint16_t port = 0;
  bool operator==(const Endpoint& o) const {
    return family == o.family && port == o.port && std::memcmp(addr, o.addr, sizeof addr) == 0;
  }
};

std::optional<Endpoint> endpoint_of(const sockaddr* sa) {
  Endpoint e;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    e.family = AF_INET;
    std::memcpy(e.addr, &in->sin_addr, 4);
    e.port = ntohs(in->sin_port);
    return e;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    e.port = ntohs(in6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      e.family = AF_INET;
      std::memcpy(e.addr, in6->sin6_addr.s6_addr + 12, 4);
    } else {
      e.family = AF_INET6;
      std::memcpy(e.addr, in6->sin6_addr.s6_addr, 16);
    }
    return e;
  }
  return std::nullopt;
}

Result<std::vector<Endpoint>> resolve(const net::PeerAddress& address) {
  std::string host = address.host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const std::string port = std::to_string(address.port);
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &list); rc != 0)
    return Error{ErrorCode::Unavailable, "cannot resolve " + address.host_port() + ": " + gai_strerror(rc)};
  std::vector<Endpoint> out;
  for (auto* a = list; a; a = a->ai_next)
    if (auto e = endpoint_of(a->ai_addr)) out.push_back(*e);
  freeaddrinfo(list);
  return out;
}

// Calls fn(fd, inode) for every socket this process holds.
template <class Fn>
void for_each_socket(Fn&& fn) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return;
  const int own = dirfd(dir);
  while (const dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == own) continue;
    struct stat st;
    if (fstat(static_cast<int>(fd), &st) == 0 && S_ISSOCK(st.st_mode)) fn(static_cast<int>(fd), st.st_ino);
  }
  closedir(dir);
}

std::set<ino_t> socket_inodes() {
  std::set<ino_t> out;
  for_each_socket([&](int, ino_t inode) { out.insert(inode); });
  return out;
}

// Shuts down the TCP sockets opened since `before` that lead to one of `targets`; returns how many.
size_t cut_sockets(const std::set<ino_t>& before, const std::vector<Endpoint>& targets) {
  size_t cut = 0;
  for_each_socket([&](int fd, ino_t inode) {
    if (before.count(inode)) return;
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return;
    sockaddr_storage peer{};
    len = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return;
    auto e = endpoint_of(reinterpret_cast<const sockaddr*>(&peer));
    if (!e || std::find(targets.begin(), targets.end(), *e) == targets.end()) return;
    if (shutdown(fd, SHUT_RDWR) == 0) ++cut;
  });
  return cut;
}

}  // namespace

struct StallWatch::Impl {
  std::vector<net::PeerAddress> nodes;
  StallOptions options;
  OnStall on_stall;
  std::set<ino_t> sockets_before;  // the watched pipeline's sockets are the ones opened after
  std::vector<Endpoint> targets;   // every address of every node
  std::atomic<int64_t> call_since_ns{0};  // steady clock; 0: no call outstanding

  mutable std::mutex mutex;
  std::condition_variable ready_cv;
  bool ready = false;
  std::optional<std::string> stalled;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop;
  std::thread thread;

  void run(std::shared_ptr<net::TlsContext> tls);
  void declare(const net::PeerAddress& node, const std::string& reason) {
    {
      std::lock_guard lock(mutex);
      stalled = reason;
    }
    // Both before the cut: the call that fails now must find the reason, and whoever handles that
    // failure must find the callback's work done.
    if (on_stall) on_stall(node, reason);
    cut_sockets(sockets_before, targets);
  }
};

namespace {

// The watch's event loop side: its own connections, the heartbeats and the judgement.
class Monitor final : public kj::TaskSet::ErrorHandler {
 public:
  Monitor(StallWatch::Impl& impl, kj::AsyncIoContext& io, std::shared_ptr<net::TlsContext> tls)
      : impl_(impl), io_(io), tls_(std::move(tls)), tasks_(kj::heap<kj::TaskSet>(*this)) {
    const uint32_t stall = std::max(impl.options.stall_ms, 1u);
    interval_ns_ = int64_t{impl.options.interval_ms ? impl.options.interval_ms : std::max(stall / 6, 1u)} * 1000000;
    stall_ns_ = int64_t{stall} * 1000000;
    connect_timeout_ = (impl.options.connect_timeout_ms ? impl.options.connect_timeout_ms : stall) * kj::MILLISECONDS;
    nodes_.resize(impl.nodes.size());
    for (size_t i = 0; i < nodes_.size(); ++i) nodes_[i].address = impl.nodes[i];
    last_tick_ns_ = now_ns();
    tick();  // connect right away, so the connections are ready when a call gets long
  }

  kj::Promise<void> loop() {
    if (done_) return kj::NEVER_DONE;
    return io_.provider->getTimer().afterDelay(interval_ns_ * kj::NANOSECONDS).then([this] {
      tick();
      return loop();
    });
  }

  void taskFailed(kj::Exception&&) override {}  // every task catches its own failure

 private:
  struct Node {
    net::PeerAddress address;
    kj::Own<net::NodeConnection> connection;
    bool connecting = false, in_flight = false, broken = false;
    int64_t last_reply_ns = 0;
  };

  void tick() {
    if (done_) return;
    const int64_t now = now_ns();
    // A watch that was itself starved of CPU may not have read replies that did arrive: judge only
    // on a tick that came on time.
    const bool on_time = now - last_tick_ns_ < 2 * interval_ns_;
    last_tick_ns_ = now;
    for (auto& n : nodes_) {
      if (n.broken) {  // dropped here, not inside the failed call's continuation
        n.connection = nullptr;
        n.broken = n.in_flight = false;
      }
      if (!n.connection && !n.connecting) connect(n);
    }
    const int64_t since = impl_.call_since_ns.load();
    if (since == 0 || now - since < interval_ns_) return;
    for (auto& n : nodes_)
      if (n.connection && !n.in_flight) ping(n);
    if (!on_time) return;
    for (auto& n : nodes_) {
      const int64_t silent = now - std::max(n.last_reply_ns, since);
      if (silent < stall_ns_) continue;
      char reason[256];
      std::snprintf(reason, sizeof reason, "node %s stalled: no heartbeat answer for %.1f s while a call waited",
                    n.address.host_port().c_str(), static_cast<double>(silent) / 1e9);
      done_ = true;
      tasks_ = nullptr;  // cancels connects and heartbeats in flight
      for (auto& m : nodes_) m.connection = nullptr;  // closes the watch's own sockets before the cut
      impl_.declare(n.address, reason);
      return;
    }
  }

  void connect(Node& n) {
    n.connecting = true;
    tasks_->add(net::NodeConnection::connect(*io_.provider, *tls_, n.address, {}, connect_timeout_)
                    .then([&n](kj::Own<net::NodeConnection> c) { n.connection = kj::mv(c); },
                          [](kj::Exception&&) {})
                    .then([&n] { n.connecting = false; }));
  }

  void ping(Node& n) {
    n.in_flight = true;
    tasks_->add(n.connection->node()
                    .infoRequest()
                    .send()
                    .then([&n](capnp::Response<proto::Node::InfoResults>&&) { n.last_reply_ns = now_ns(); },
                          [&n](kj::Exception&&) { n.broken = true; })
                    .then([&n] { n.in_flight = false; }));
  }

  StallWatch::Impl& impl_;
  kj::AsyncIoContext& io_;
  std::shared_ptr<net::TlsContext> tls_;
  int64_t interval_ns_ = 0, stall_ns_ = 0, last_tick_ns_ = 0;
  kj::Duration connect_timeout_ = 0 * kj::SECONDS;
  bool done_ = false;
  std::vector<Node> nodes_;     // never resized: tasks hold references to its elements
  kj::Own<kj::TaskSet> tasks_;  // declared after nodes_: cancelled before they go
};

}  // namespace

void StallWatch::Impl::run(std::shared_ptr<net::TlsContext> tls) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
    auto io = kj::setupAsyncIo();
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    {
      std::lock_guard lock(mutex);
      stop = kj::mv(paf.fulfiller);
      ready = true;
    }
    ready_cv.notify_all();
    Monitor monitor(*this, io, tls);
    paf.promise.exclusiveJoin(monitor.loop()).wait(io.waitScope);
  })) {
    (void)e;
    // Only setting up the event loop can throw (the tasks catch their own failures); the watch
    // then never judges, and the call timeout still bounds every call.
    std::lock_guard lock(mutex);
    ready = true;
  }
  ready_cv.notify_all();
}

Result<std::unique_ptr<StallWatch>> StallWatch::start(const std::vector<net::PeerAddress>& nodes,
                                                      const net::Identity& identity, const StallOptions& options,
                                                      OnStall on_stall) {
  auto impl = std::make_unique<Impl>();
  impl->nodes = nodes;
  impl->options = options;
  impl->on_stall = std::move(on_stall);
  for (const auto& a : nodes) {
    auto endpoints = resolve(a);
    if (!endpoints) return endpoints.error();
    impl->targets.insert(impl->targets.end(), endpoints->begin(), endpoints->end());
  }
  auto tls = net::TlsContext::create(identity);
  if (!tls) return tls.error();
  impl->sockets_before = socket_inodes();
  Impl* p = impl.get();
  impl->thread = std::thread([p, tls = std::move(*tls)]() mutable { p->run(std::move(tls)); });
  std::unique_lock lock(p->mutex);
  p->ready_cv.wait(lock, [p] { return p->ready; });
  return std::unique_ptr<StallWatch>(new StallWatch(std::move(impl)));
}

StallWatch::StallWatch(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StallWatch::~StallWatch() {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stop) impl_->stop->fulfill();
  }
  impl_->thread.join();
  impl_->stop = nullptr;
}

void StallWatch::begin_call() { impl_->call_since_ns.store(now_ns()); }

void StallWatch::end_call() { impl_->call_since_ns.store(0); }

std::optional<std::string> StallWatch::stalled() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->stalled;
}

}  // namespace omni::swarm
