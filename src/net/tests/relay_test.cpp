// The relay: preamble lines (every refusal), the splice (both directions, half-close, idle, a
// failing side), and a RelayServer with a RelayClient in-process: a client reaches a TLS echo
// "node" through the relay with the node's peer id proven end to end; unknown ids, the limits on
// nodes and on connections per node (the relay's and the node's own), stray dial-backs, garbage
// and silent connections are refused; idle relayed connections are closed; control connections
// with a wrong version, that never register or that stop pinging are dropped; a node re-registers
// after the relay restarts on the same port.
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "net/errors.h"
#include "net/node_connection.h"
#include "net/relay_client.h"
#include "net/relay_preamble.h"
#include "net/relay_server.h"
#include "net/relay_splice.h"
#include "net/tls.h"
#include "proto/relay.capnp.h"

namespace omni::net {
namespace {

std::string an_id() { return Identity::generate()->peer_id(); }

// ---------------------------------------------------------------------------------------------
// Preamble

TEST(RelayPreamble, RoundTrips) {
  const std::string id = an_id();
  RelayRequest c{RelayRequest::Kind::Connect, id, {}};
  const std::string line = format_relay_request(c);
  EXPECT_EQ(line, "OMNI-RELAY/1 CONNECT " + id + "\n");
  auto parsed = parse_relay_request(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->kind, RelayRequest::Kind::Connect);
  EXPECT_EQ(parsed->peer_id, id);

  auto reg = parse_relay_request("OMNI-RELAY/1 REGISTER");
  ASSERT_TRUE(reg.ok());
  EXPECT_EQ(reg->kind, RelayRequest::Kind::Register);

  const RelayToken token = random_relay_token();
  const std::string accept = format_relay_request({RelayRequest::Kind::Accept, {}, token});
  EXPECT_EQ(accept.size(), std::string("OMNI-RELAY/1 ACCEPT \n").size() + 32);
  auto acc = parse_relay_request(std::string_view(accept).substr(0, accept.size() - 1));
  ASSERT_TRUE(acc.ok()) << acc.error().message;
  EXPECT_EQ(acc->token, token);
  EXPECT_NE(random_relay_token(), token);
}

TEST(RelayPreamble, RefusesBadLines) {
  const std::string id = an_id();
  struct Case {
    std::string line, says;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1", "not a relay request"},
      {"OMNI-RELAY/2 CONNECT " + id, "is not supported"},
      {"OMNI-RELAY/1 CONNECT", "needs a peer id"},
      {"OMNI-RELAY/1 CONNECT nope", "needs a peer id"},
      {"OMNI-RELAY/1 CONNECT " + id + " extra", "needs a peer id"},
      {"OMNI-RELAY/1 REGISTER now", "takes no argument"},
      {"OMNI-RELAY/1 ACCEPT 0123", "not 32 hex digits"},
      {"OMNI-RELAY/1 ACCEPT 0123456789ABCDEF0123456789abcdef", "lower-case hex"},
      {"OMNI-RELAY/1 ACCEPT 0123456789abcdef0123456789abcdeg", "lower-case hex"},
      {"OMNI-RELAY/1 LISTEN", "unknown relay request"},
      {"OMNI-RELAY/1 CONNECT\t" + id, "non-printable"},
      {std::string(600, 'A'), "longer than"},
      {"", "not a relay request"},
  };
  for (const auto& c : cases) {
    auto r = parse_relay_request(c.line);
    ASSERT_FALSE(r.ok()) << c.line;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << r.error().message;
    EXPECT_NE(r.error().message.find(c.says), std::string::npos) << c.line << " -> " << r.error().message;
  }
}

TEST(RelayPreamble, Replies) {
  EXPECT_TRUE(parse_relay_reply("OK").ok());
  auto err = parse_relay_reply("ERR no node with peer id x is registered");
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.error().message, "the relay says: no node with peer id x is registered");
  auto junk = parse_relay_reply("SSH-2.0-OpenSSH");
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.error().message.find("is this a relay?"), std::string::npos);
  // An error sentence is one printable line that fits.
  const std::string line = format_relay_error("two\nlines and " + std::string(1000, 'x'));
  EXPECT_LE(line.size(), kMaxRelayLine);
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_EQ(line.rfind("ERR two lines", 0), 0u);
}

struct Loop {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  // The error of a call that must fail, as decoded on this side; an empty Internal one if it succeeded.
  template <class F>
  Error failure_of(F&& f) {
    Error out{ErrorCode::Internal, ""};
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { f(); })) { out = to_error(*e); }
    return out;
  }
  template <class F>
  std::string error_of(F&& f) {
    return failure_of(std::forward<F>(f)).message;
  }
};

TEST(RelayPreamble, ReadsOneLineAndNothingMore) {
  Loop l;
  // kj's in-memory pipes do not buffer: a write completes as the other end reads it.
  auto pipe = kj::newTwoWayPipe();
  const std::string sent = "OMNI-RELAY/1 REGISTER\n\x16\x03\x01rest";
  auto writing = pipe.ends[0]->write(sent.data(), sent.size()).eagerlyEvaluate(nullptr);
  EXPECT_EQ(read_relay_line(*pipe.ends[1]).wait(l.io.waitScope), "OMNI-RELAY/1 REGISTER");
  char after[7] = {};
  pipe.ends[1]->read(after, 7).wait(l.io.waitScope);
  EXPECT_EQ(std::string(after, 7), "\x16\x03\x01rest");  // the TLS bytes are still there
  writing.wait(l.io.waitScope);

  auto eof = kj::newTwoWayPipe();
  auto& eof_end = *eof.ends[0];
  auto cut = eof_end.write("OMNI-RE", 7).then([&eof_end] { eof_end.shutdownWrite(); }).eagerlyEvaluate(nullptr);
  auto eof_err = l.failure_of([&] { read_relay_line(*eof.ends[1]).wait(l.io.waitScope); });
  EXPECT_EQ(eof_err.code, ErrorCode::Unavailable) << eof_err.message;

  auto longer = kj::newTwoWayPipe();
  const std::string flood(1000, 'A');
  auto flooding = longer.ends[0]->write(flood.data(), flood.size()).eagerlyEvaluate(nullptr);
  auto long_err = l.failure_of([&] { read_relay_line(*longer.ends[1]).wait(l.io.waitScope); });
  EXPECT_EQ(long_err.code, ErrorCode::InvalidArgument) << long_err.message;
  EXPECT_NE(long_err.message.find("512 bytes"), std::string::npos) << long_err.message;  // names the limit
}

// ---------------------------------------------------------------------------------------------
// Splice

TEST(RelaySplice, BothWaysWithHalfClose) {
  Loop l;
  auto left = kj::newTwoWayPipe();   // ends[0]: the client; ends[1]: the relay's client side
  auto right = kj::newTwoWayPipe();  // ends[0]: the relay's node side; ends[1]: the node
  auto counters = std::make_shared<SpliceCounters>();
  auto spliced = splice(kj::mv(left.ends[1]), kj::mv(right.ends[0]), l.io.provider->getTimer(),
                        SpliceOptions{.idle_timeout = 10 * kj::SECONDS}, counters)
                     .eagerlyEvaluate(nullptr);
  // 1 MiB client -> node, in pieces, checked byte for byte.
  std::vector<uint8_t> big(1 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  auto writing = left.ends[0]->write(big.data(), big.size()).eagerlyEvaluate(nullptr);
  std::vector<uint8_t> got(big.size());
  right.ends[1]->read(got.data(), got.size()).wait(l.io.waitScope);
  writing.wait(l.io.waitScope);
  EXPECT_TRUE(got == big);
  EXPECT_EQ(counters->a_to_b, big.size());
  // Half-close: the client's end of input reaches the node, which can still answer.
  left.ends[0]->shutdownWrite();
  char c;
  EXPECT_EQ(right.ends[1]->tryRead(&c, 1, 1).wait(l.io.waitScope), 0u);
  right.ends[1]->write("answer", 6).wait(l.io.waitScope);
  char answer[6];
  left.ends[0]->read(answer, 6).wait(l.io.waitScope);
  EXPECT_EQ(std::string(answer, 6), "answer");
  right.ends[1]->shutdownWrite();
  auto result = spliced.wait(l.io.waitScope);
  EXPECT_EQ(result.ended, "closed");
  EXPECT_EQ(result.a_to_b, big.size());
  EXPECT_EQ(result.b_to_a, 6u);
  EXPECT_EQ(left.ends[0]->tryRead(&c, 1, 1).wait(l.io.waitScope), 0u);
}

TEST(RelaySplice, EndsWhenIdle) {
  Loop l;
  auto left = kj::newTwoWayPipe();
  auto right = kj::newTwoWayPipe();
  auto& timer = l.io.provider->getTimer();
  const auto start = timer.now();
  auto result = splice(kj::mv(left.ends[1]), kj::mv(right.ends[0]), timer,
                       SpliceOptions{.idle_timeout = 200 * kj::MILLISECONDS})
                    .wait(l.io.waitScope);
  EXPECT_EQ(result.ended, "idle for 0.2 s");
  EXPECT_GE(timer.now() - start, 200 * kj::MILLISECONDS);
  // Both sides see the end.
  char c;
  EXPECT_EQ(left.ends[0]->tryRead(&c, 1, 1).wait(l.io.waitScope), 0u);
  EXPECT_EQ(right.ends[1]->tryRead(&c, 1, 1).wait(l.io.waitScope), 0u);
}

// The node closes its side; the client never closes its own: the splice ends after the linger,
// and the client sees the end, instead of holding the connection until the idle timeout.
TEST(RelaySplice, ClosesTheOtherSideOnceOneSideHasClosed) {
  Loop l;
  auto left = kj::newTwoWayPipe();   // ends[0]: the client
  auto right = kj::newTwoWayPipe();  // ends[1]: the node
  auto& timer = l.io.provider->getTimer();
  const auto start = timer.now();
  auto spliced = splice(kj::mv(right.ends[0]), kj::mv(left.ends[1]), timer,
                        SpliceOptions{.idle_timeout = 60 * kj::SECONDS, .linger = 300 * kj::MILLISECONDS})
                     .eagerlyEvaluate(nullptr);
  right.ends[1]->write("bye", 3).wait(l.io.waitScope);
  right.ends[1]->shutdownWrite();
  char bye[3];
  left.ends[0]->read(bye, 3).wait(l.io.waitScope);
  EXPECT_EQ(std::string(bye, 3), "bye");
  char c;
  EXPECT_EQ(left.ends[0]->tryRead(&c, 1, 1).wait(l.io.waitScope), 0u);  // the half-close, at once
  auto result = spliced.wait(l.io.waitScope);
  EXPECT_EQ(result.ended, "one side closed, the other did not within 0.3 s");
  EXPECT_GE(timer.now() - start, 300 * kj::MILLISECONDS);
  EXPECT_LT(timer.now() - start, 10 * kj::SECONDS);
  EXPECT_EQ(right.ends[1]->tryRead(&c, 1, 1).wait(l.io.waitScope), 0u);  // the node's side is closed too
}

// Side b (the client) must send its first byte in time; once it has, the deadline is gone.
TEST(RelaySplice, EndsWhenTheSecondSideSendsNoFirstByte) {
  Loop l;
  auto& timer = l.io.provider->getTimer();
  const SpliceOptions quick{.idle_timeout = 60 * kj::SECONDS, .first_byte_timeout = 200 * kj::MILLISECONDS};
  {
    auto left = kj::newTwoWayPipe();
    auto right = kj::newTwoWayPipe();
    const auto start = timer.now();
    auto result = splice(kj::mv(right.ends[0]), kj::mv(left.ends[1]), timer, quick).wait(l.io.waitScope);
    EXPECT_EQ(result.ended, "no first byte within 0.2 s");
    EXPECT_GE(timer.now() - start, 200 * kj::MILLISECONDS);
    char c;
    EXPECT_EQ(left.ends[0]->tryRead(&c, 1, 1).wait(l.io.waitScope), 0u);
    EXPECT_EQ(right.ends[1]->tryRead(&c, 1, 1).wait(l.io.waitScope), 0u);
  }
  auto left = kj::newTwoWayPipe();
  auto right = kj::newTwoWayPipe();
  auto spliced = splice(kj::mv(right.ends[0]), kj::mv(left.ends[1]), timer, quick).eagerlyEvaluate(nullptr);
  left.ends[0]->write("hello", 5).wait(l.io.waitScope);
  char got[5];
  right.ends[1]->read(got, 5).wait(l.io.waitScope);
  timer.afterDelay(500 * kj::MILLISECONDS).wait(l.io.waitScope);
  EXPECT_FALSE(spliced.poll(l.io.waitScope));  // still open past the deadline
  right.ends[1]->write("world", 5).wait(l.io.waitScope);
  left.ends[0]->read(got, 5).wait(l.io.waitScope);
  EXPECT_EQ(std::string(got, 5), "world");
}

// A stream whose reads fail, as a reset connection's do.
class BrokenStream final : public kj::AsyncIoStream {
 public:
  kj::Promise<size_t> tryRead(void*, size_t, size_t) override {
    return KJ_EXCEPTION(DISCONNECTED, "connection reset by peer");
  }
  kj::Promise<void> write(const void*, size_t) override { return kj::READY_NOW; }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>>) override { return kj::READY_NOW; }
  kj::Promise<void> whenWriteDisconnected() override { return kj::NEVER_DONE; }
  void shutdownWrite() override {}
};

TEST(RelaySplice, OneFailingSideEndsBoth) {
  Loop l;
  auto right = kj::newTwoWayPipe();
  auto result = splice(kj::heap<BrokenStream>(), kj::mv(right.ends[0]), l.io.provider->getTimer(),
                       SpliceOptions{.idle_timeout = 10 * kj::SECONDS})
                    .wait(l.io.waitScope);
  EXPECT_NE(result.ended.find("connection reset by peer"), std::string::npos) << result.ended;
  char c;
  EXPECT_EQ(right.ends[1]->tryRead(&c, 1, 1).wait(l.io.waitScope), 0u);  // not left hanging
}

// ---------------------------------------------------------------------------------------------
// Relay, node and client in-process

// Runs `body(io, stop)` on its own thread and event loop until destroyed.
class LoopThread {
 public:
  using Body = std::function<void(kj::AsyncIoContext&, kj::Promise<void>)>;
  explicit LoopThread(Body body) {
    std::promise<void> started;
    auto ready = started.get_future();
    thread_ = std::thread([this, body = std::move(body), &started] {
      auto io = kj::setupAsyncIo();
      auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
      stop_ = kj::mv(paf.fulfiller);
      started.set_value();
      body(io, kj::mv(paf.promise));
    });
    ready.wait();
  }
  ~LoopThread() {
    stop_->fulfill();
    thread_.join();
  }

 private:
  std::thread thread_;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_;
};

// A value set on one thread and awaited on another.
template <class T>
class Mailbox {
 public:
  void put(T v) {
    std::lock_guard<std::mutex> lock(mutex_);
    values_.push_back(std::move(v));
    changed_.notify_all();
  }
  // The n-th value (0-based), waiting up to 10 s for it.
  std::optional<T> get(size_t n) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!changed_.wait_for(lock, std::chrono::seconds(10), [&] { return values_.size() > n; })) return std::nullopt;
    return values_[n];
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return values_.size();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<T> values_;
};

struct TestRelay {
  explicit TestRelay(RelayOptions options, uint16_t port = 0) {
    auto identity = *Identity::generate();
    peer_id = identity.peer_id();
    std::promise<std::string> bound;
    auto address = bound.get_future();
    options.log = [this](const std::string& line) { log.put(line); };
    thread = std::make_unique<LoopThread>([&, options, identity, port](kj::AsyncIoContext& io, kj::Promise<void> stop) {
      auto server = RelayServer::create(options, identity);
      if (!server) {
        bound.set_value("error: " + server.error().message);
        return;
      }
      server_ = server->get();
      executor_ = &kj::getCurrentThreadExecutor();
      auto r = (*server)->serve(io, "127.0.0.1:" + std::to_string(port), [&](const std::string& a) { bound.set_value(a); },
                                kj::mv(stop));
      if (!r) log.put("serve: " + r.error().message);
      server_ = nullptr;
    });
    host_port = address.get();
  }
  RelayStats stats() { return executor_->executeSync([this] { return server_->stats(); }); }
  uint16_t port() const { return static_cast<uint16_t>(std::stoi(host_port.substr(host_port.rfind(':') + 1))); }
  bool logged(const std::string& part) {
    for (size_t i = 0; i < log.size(); ++i)
      if (log.get(i)->find(part) != std::string::npos) return true;
    return false;
  }

  std::string peer_id, host_port;
  Mailbox<std::string> log;
  RelayServer* server_ = nullptr;
  const kj::Executor* executor_ = nullptr;
  std::unique_ptr<LoopThread> thread;  // last: stops first
};

// A relayed "node": a TLS echo server on a loopback port that only its RelayClient connects to.
struct TestNode {
  TestNode(const std::string& relay_host_port, uint32_t max_connections = 64) {
    auto identity = *Identity::generate();
    peer_id = identity.peer_id();
    thread = std::make_unique<LoopThread>([this, identity, relay_host_port, max_connections](
                                              kj::AsyncIoContext& io, kj::Promise<void> stop) {
      std::shared_ptr<TlsContext> tls = *TlsContext::create(identity);
      auto listener = io.provider->getNetwork().parseAddress("127.0.0.1:0").wait(io.waitScope)->listen();
      RelayClientOptions o;
      o.relay = *parse_peer_address(relay_host_port);
      o.local = "127.0.0.1:" + std::to_string(listener->getPort());
      o.max_connections = max_connections;
      o.log = [this](const std::string& line) { log.put(line); };
      o.on_registered = [this](const std::string& address) { registered.put(address); };
      RelayClient client(*io.provider, tls, o);
      struct Errors : kj::TaskSet::ErrorHandler {
        void taskFailed(kj::Exception&&) override {}
      } errors;
      kj::TaskSet echoes(errors);
      auto serve = serve_echo(*listener, *tls, echoes);
      client.run().exclusiveJoin(kj::mv(serve)).exclusiveJoin(kj::mv(stop)).wait(io.waitScope);
    });
  }

  static kj::Promise<void> serve_echo(kj::ConnectionReceiver& listener, TlsContext& tls, kj::TaskSet& tasks) {
    return listener.accept().then([&listener, &tls, &tasks](kj::Own<kj::AsyncIoStream> tcp) {
      tasks.add(tls.accept(kj::mv(tcp)).then([](TlsPeer peer) { return echo_forever(kj::mv(peer.stream)); }));
      return serve_echo(listener, tls, tasks);
    });
  }

  static kj::Promise<void> echo_forever(kj::Own<kj::AsyncIoStream> s) {
    auto buffer = kj::heapArray<kj::byte>(4096);
    auto& stream = *s;
    auto* b = buffer.begin();
    return stream.tryRead(b, 1, 4096).then([&stream, b, s = kj::mv(s), buffer = kj::mv(buffer)](size_t n) mutable
                                           -> kj::Promise<void> {
      if (n == 0) return kj::READY_NOW;
      auto written = stream.write(b, n);
      return written.then([s = kj::mv(s), buffer = kj::mv(buffer)]() mutable { return echo_forever(kj::mv(s)); });
    });
  }

  std::string peer_id;
  Mailbox<std::string> registered, log;
  std::unique_ptr<LoopThread> thread;  // last: stops first
};

struct Client : Loop {
  std::shared_ptr<TlsContext> tls = *TlsContext::create(*Identity::generate());

  // Opens a TLS stream to `address` (through its relay when relayed), the node's id checked.
  TlsPeer connect(const std::string& address) {
    auto a = parse_peer_address(address);
    EXPECT_TRUE(a.ok()) << address;
    auto stream = open_node_stream(*io.provider, *a).wait(io.waitScope);
    return tls->connect(kj::mv(stream), a->peer_id).wait(io.waitScope);
  }
  std::string round_trip(kj::AsyncIoStream& s, const std::string& text) {
    s.write(text.data(), text.size()).wait(io.waitScope);
    std::string back(text.size(), '\0');
    s.read(back.data(), back.size()).wait(io.waitScope);
    return back;
  }
};

RelayOptions quick_options() {
  RelayOptions o;
  o.keepalive_s = 1;
  o.handshake_timeout_s = 1;
  o.dial_timeout_s = 2;
  return o;
}

TEST(Relay, ClientReachesNodeEndToEnd) {
  TestRelay relay(quick_options());
  TestNode node(relay.host_port);
  auto address = node.registered.get(0);
  ASSERT_TRUE(address) << "the node did not register";
  EXPECT_EQ(*address, node.peer_id + "@relay:" + relay.host_port);
  EXPECT_TRUE(relay.logged("node " + node.peer_id + " registered"));

  Client c;
  auto peer = c.connect(*address);
  EXPECT_EQ(peer.peer_id, node.peer_id);  // TLS proved the node's key through the relay
  EXPECT_EQ(c.round_trip(*peer.stream, "hello through the relay"), "hello through the relay");
  const std::string big(200000, 'z');
  EXPECT_EQ(c.round_trip(*peer.stream, big), big);
  auto s = relay.stats();
  EXPECT_EQ(s.nodes, 1u);
  EXPECT_EQ(s.active, 1u);
  EXPECT_EQ(s.relayed, 1u);
  // The relay moved TLS records: more bytes than the plaintext, in both directions.
  EXPECT_GT(s.bytes_to_nodes, big.size());
  EXPECT_GT(s.bytes_from_nodes, big.size());
  peer.stream = nullptr;
  for (int i = 0; i < 100 && relay.stats().active != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(relay.stats().active, 0u);
  EXPECT_TRUE(relay.logged("closed client"));

  // A client that expects another key through the same relay entry is refused by TLS itself.
  auto a = *parse_peer_address(*address);
  auto stream = open_node_stream(*c.io.provider, a).wait(c.io.waitScope);
  const std::string other = an_id();
  auto err = c.failure_of([&] { c.tls->connect(kj::mv(stream), other).wait(c.io.waitScope); });
  EXPECT_EQ(err.code, ErrorCode::PermissionDenied) << err.message;
}

TEST(Relay, RefusesUnknownIdsGarbageAndStrayDialBacks) {
  TestRelay relay(quick_options());
  Client c;
  const std::string nobody = an_id();
  auto unknown = c.failure_of([&] { c.connect(nobody + "@relay:" + relay.host_port); });
  EXPECT_EQ(unknown.code, ErrorCode::Unavailable);
  EXPECT_EQ(unknown.message, "the relay says: no node with peer id " + nobody + " is registered at this relay");

  auto raw = [&](const std::string& line) {
    auto s = connect_tcp(*c.io.provider, relay.host_port).wait(c.io.waitScope);
    if (!line.empty()) s->write(line.data(), line.size()).wait(c.io.waitScope);
    std::string reply;
    char b[256];
    for (;;) {
      size_t n = s->tryRead(b, 1, sizeof b).wait(c.io.waitScope);
      if (n == 0) break;
      reply.append(b, n);
    }
    return reply;  // everything until the relay closed
  };
  EXPECT_EQ(raw("GET / HTTP/1.1\r\n").rfind("ERR not a relay request", 0), 0u);
  EXPECT_EQ(raw("OMNI-RELAY/1 ACCEPT " + relay_token_hex(random_relay_token()) + "\n"), "");
  EXPECT_TRUE(relay.logged("unknown or expired token"));
  // Silent connections are closed after the handshake timeout (1 s here).
  auto& timer = c.io.provider->getTimer();
  const auto start = timer.now();
  EXPECT_EQ(raw(""), "");
  EXPECT_GE(timer.now() - start, 900 * kj::MILLISECONDS);
  EXPECT_EQ(relay.stats().refused, 2u);
}

TEST(Relay, LimitsConnectionsPerNodeAndClosesIdleOnes) {
  RelayOptions o = quick_options();
  o.max_per_node = 1;
  o.idle_timeout_s = 1;
  TestRelay relay(o);
  TestNode node(relay.host_port);
  auto address = node.registered.get(0);
  ASSERT_TRUE(address);
  Client c;
  auto first = c.connect(*address);
  EXPECT_EQ(c.round_trip(*first.stream, "one"), "one");
  auto err = c.error_of([&] { c.connect(*address); });
  EXPECT_NE(err.find("already has 1 relayed connections, this relay's limit"), std::string::npos) << err;
  // Idle for more than a second: the relay closes it, and the slot is free again.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  char b;
  auto closed = c.error_of([&] {
    auto n = first.stream->tryRead(&b, 1, 1).wait(c.io.waitScope);
    if (n == 0) throw_rpc_error(ErrorCode::Unavailable, "eof");
  });
  EXPECT_FALSE(closed.empty());
  EXPECT_TRUE(relay.logged("(idle for 1.0 s)"));
  auto second = c.connect(*address);
  EXPECT_EQ(c.round_trip(*second.stream, "two"), "two");
}

// One address cannot take a node's connections: beyond max_per_source it is refused (others are
// still served), and a relayed client that sends nothing is closed after the first-byte timeout,
// which frees its place.
TEST(Relay, LimitsConnectionsPerSourceAndClosesSilentClients) {
  RelayOptions o = quick_options();
  o.max_per_source = 2;
  o.first_byte_timeout_s = 1;
  TestRelay relay(o);
  TestNode node(relay.host_port);
  auto address = node.registered.get(0);
  ASSERT_TRUE(address);
  Client c;
  const std::string connect_line = format_relay_request({RelayRequest::Kind::Connect, node.peer_id, {}});
  auto silent = [&] {
    auto s = connect_tcp(*c.io.provider, relay.host_port).wait(c.io.waitScope);
    s->write(connect_line.data(), connect_line.size()).wait(c.io.waitScope);
    return s;
  };
  auto reply_of = [&](kj::AsyncIoStream& s) { return read_relay_line(s).wait(c.io.waitScope); };
  auto first = silent();
  auto second = silent();
  EXPECT_EQ(reply_of(*first), "OK");
  EXPECT_EQ(reply_of(*second), "OK");
  auto third = silent();
  const std::string refused = reply_of(*third);
  EXPECT_EQ(refused.rfind("ERR 127.0.0.1 already has 2 relayed connections, this relay's limit per address", 0), 0u)
      << refused;
  auto& timer = c.io.provider->getTimer();
  const auto start = timer.now();
  char b;
  EXPECT_EQ(first->tryRead(&b, 1, 1).wait(c.io.waitScope), 0u);
  EXPECT_GE(timer.now() - start, 500 * kj::MILLISECONDS);
  EXPECT_EQ(second->tryRead(&b, 1, 1).wait(c.io.waitScope), 0u);
  EXPECT_TRUE(relay.logged("(no first byte within 1.0 s)"));
  auto peer = c.connect(*address);  // the places are free again
  EXPECT_EQ(c.round_trip(*peer.stream, "served"), "served");
}

// The relay's limits are checked: none may be 0.
TEST(Relay, RefusesZeroLimits) {
  for (uint32_t RelayOptions::*limit : {&RelayOptions::max_relayed, &RelayOptions::max_per_source,
                                        &RelayOptions::max_pending_per_source,
                                        &RelayOptions::max_unidentified_per_source,
                                        &RelayOptions::first_byte_timeout_s}) {
    RelayOptions o;
    o.*limit = 0;
    auto r = RelayServer::create(o, *Identity::generate());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << r.error().message;
  }
}

TEST(Relay, NodeRefusalReachesTheClient) {
  TestRelay relay(quick_options());
  TestNode node(relay.host_port, /*max_connections=*/1);
  auto address = node.registered.get(0);
  ASSERT_TRUE(address);
  Client c;
  auto first = c.connect(*address);
  auto err = c.error_of([&] { c.connect(*address); });
  EXPECT_NE(err.find("did not take the connection"), std::string::npos) << err;
  EXPECT_NE(err.find("maximum of 1 relayed connections"), std::string::npos) << err;
}

TEST(Relay, NodeReregistersAfterRelayRestart) {
  auto relay = std::make_unique<TestRelay>(quick_options());
  const uint16_t port = relay->port();
  TestNode node(relay->host_port);
  ASSERT_TRUE(node.registered.get(0));
  Client c;
  auto before = c.connect(*node.registered.get(0));
  EXPECT_EQ(c.round_trip(*before.stream, "before"), "before");
  relay.reset();  // the relay goes away, and with it the relayed connection
  char b;
  auto lost = c.error_of([&] {
    if (before.stream->tryRead(&b, 1, 1).wait(c.io.waitScope) == 0)
      throw_rpc_error(ErrorCode::Unavailable, "eof");
  });
  EXPECT_FALSE(lost.empty());
  relay = std::make_unique<TestRelay>(quick_options(), port);
  auto again = node.registered.get(1);
  ASSERT_TRUE(again) << "the node did not register again";
  auto after = c.connect(*again);
  EXPECT_EQ(c.round_trip(*after.stream, "after"), "after");
  bool reconnect_logged = false;
  for (size_t i = 0; i < node.log.size(); ++i) reconnect_logged |= node.log.get(i)->find("reconnecting in") != std::string::npos;
  EXPECT_TRUE(reconnect_logged);
}

TEST(Relay, RefusesNodesBeyondItsLimit) {
  RelayOptions o = quick_options();
  o.max_nodes = 1;
  TestRelay relay(o);
  TestNode first(relay.host_port);
  ASSERT_TRUE(first.registered.get(0));
  TestNode second(relay.host_port);
  auto line = second.log.get(0);
  ASSERT_TRUE(line);
  EXPECT_NE(line->find("this relay serves its maximum of 1 nodes"), std::string::npos) << *line;
  EXPECT_NE(line->find("reconnecting in"), std::string::npos) << *line;
  EXPECT_EQ(second.registered.size(), 0u);
}

// A dialer that is never called (the tests below never send a client).
class IdleDialer final : public proto::RelayDialer::Server {};

// A control connection opened by hand: REGISTER, TLS with `identity`, RPC.
struct RawControl {
  RawControl(Client& c, const std::string& relay, const Identity& identity)
      : tls(*TlsContext::create(identity)) {
    auto tcp = connect_tcp(*c.io.provider, relay).wait(c.io.waitScope);
    const std::string line = format_relay_request({RelayRequest::Kind::Register, {}, {}});
    tcp->write(line.data(), line.size()).wait(c.io.waitScope);
    stream = tls->connect(kj::mv(tcp), "").wait(c.io.waitScope).stream;
    network = kj::heap<capnp::TwoPartyVatNetwork>(*stream, capnp::rpc::twoparty::Side::CLIENT);
    rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcClient(*network));
    capnp::MallocMessageBuilder message;
    auto vat = message.initRoot<capnp::rpc::twoparty::VatId>();
    vat.setSide(capnp::rpc::twoparty::Side::SERVER);
    gate = rpc->bootstrap(vat).castAs<proto::RelayGate>();
  }
  std::shared_ptr<TlsContext> tls;
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  proto::RelayGate::Client gate = nullptr;
};

TEST(Relay, DropsSilentAndUnregisteredControlConnections) {
  TestRelay relay(quick_options());  // keepalive 1 s, handshake 1 s
  Client c;
  auto& timer = c.io.provider->getTimer();
  const auto identity = *Identity::generate();

  // Registers with a wrong version: refused by name.
  {
    RawControl control(c, relay.host_port, identity);
    auto request = control.gate.registerNodeRequest();
    request.setProtocolVersion(7);
    request.setDialer(kj::heap<IdleDialer>());
    auto err = c.failure_of([&] { request.send().wait(c.io.waitScope); });
    EXPECT_EQ(err.code, ErrorCode::InvalidArgument);
    EXPECT_EQ(err.message, "relay protocol version mismatch: the node speaks version 7, this relay speaks version 1");
  }
  // Never registers: closed after the handshake timeout.
  {
    RawControl control(c, relay.host_port, identity);
    const auto start = timer.now();
    control.network->onDisconnect().wait(c.io.waitScope);
    EXPECT_GE(timer.now() - start, 900 * kj::MILLISECONDS);
  }
  // Registers, then never pings: dropped after 3 keepalive periods, and clients are told so.
  RawControl control(c, relay.host_port, identity);
  auto request = control.gate.registerNodeRequest();
  request.setProtocolVersion(proto::RELAY_PROTOCOL_VERSION);
  request.setDialer(kj::heap<IdleDialer>());
  auto response = request.send().wait(c.io.waitScope);
  EXPECT_EQ(response.getTerms().getKeepaliveSeconds(), 1u);
  EXPECT_EQ(relay.stats().nodes, 1u);
  // A second registration on the same connection is refused.
  auto again = control.gate.registerNodeRequest();
  again.setProtocolVersion(proto::RELAY_PROTOCOL_VERSION);
  again.setDialer(kj::heap<IdleDialer>());
  EXPECT_EQ(c.failure_of([&] { again.send().wait(c.io.waitScope); }).code, ErrorCode::AlreadyExists);
  const auto start = timer.now();
  control.network->onDisconnect().wait(c.io.waitScope);
  EXPECT_GE(timer.now() - start, 2 * kj::SECONDS);
  EXPECT_TRUE(relay.logged("stopped pinging"));
  EXPECT_EQ(relay.stats().nodes, 0u);
  auto err = c.error_of([&] { c.connect(identity.peer_id() + "@relay:" + relay.host_port); });
  EXPECT_NE(err.find("is registered at this relay"), std::string::npos) << err;
}

}  // namespace
}  // namespace omni::net
