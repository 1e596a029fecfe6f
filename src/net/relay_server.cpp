#include "net/relay_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <capnp/rpc-twoparty.h>
#include <cstdio>
#include <kj/debug.h>
#include <map>
#include <set>

#include "net/errors.h"
#include "net/node_connection.h"
#include "net/peer_address.h"
#include "net/relay_preamble.h"
#include "net/relay_splice.h"
#include "net/tls.h"
#include "proto/relay.capnp.h"

namespace omni::net {
namespace {

// One registration: the node's dialer and its relayed connections. Shared with those connections,
// which may outlive it (a node that re-registers keeps its open connections).
struct Registered {
  std::string peer_id;
  uint64_t generation = 0;
  proto::RelayDialer::Client dialer = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> drop;  // fulfilled: the relay closes the control connection
  kj::TimePoint last_seen = kj::origin<kj::TimePoint>();
  uint32_t active = 0;
  uint64_t closed_to = 0, closed_from = 0;  // bytes of its finished relayed connections
  std::set<std::shared_ptr<SpliceCounters>> live;

  uint64_t bytes_to() const {
    uint64_t n = closed_to;
    for (const auto& c : live) n += c->b_to_a;
    return n;
  }
  uint64_t bytes_from() const {
    uint64_t n = closed_from;
    for (const auto& c : live) n += c->a_to_b;
    return n;
  }
};

// Where a connection comes from: the address (what per-source limits count) and "address:port".
struct Remote {
  std::string host = "?";
  std::string text = "?";
};

Remote remote_of(kj::AsyncIoStream& stream) {
  struct sockaddr_storage ss {};
  kj::uint length = sizeof ss;
  Remote out;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
    stream.getpeername(reinterpret_cast<struct sockaddr*>(&ss), &length);
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET) {
      auto* a = reinterpret_cast<struct sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
      out.host = host;
      out.text = out.host + ":" + std::to_string(ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<struct sockaddr_in6*>(&ss);
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
      out.host = host;
      out.text = "[" + out.host + "]:" + std::to_string(ntohs(a->sin6_port));
    }
  })) {
    (void)e;  // not a socket (tests): no address to show
  }
  return out;
}

std::string kib(uint64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f KiB", static_cast<double>(bytes) / 1024.0);
  return b;
}

}  // namespace

struct RelayServer::State {
  RelayOptions options;
  Identity identity;
  std::shared_ptr<TlsContext> tls;
  kj::AsyncIoProvider* io = nullptr;
  std::map<std::string, std::shared_ptr<Registered>> nodes;  // by peer id
  std::map<RelayToken, kj::Own<kj::PromiseFulfiller<kj::Own<kj::AsyncIoStream>>>> pending;  // dial-backs awaited
  std::set<std::shared_ptr<SpliceCounters>> live;
  uint32_t unidentified = 0;
  uint32_t relayed = 0;  // relayed connections open or waiting for a dial-back (Slots)
  // Per source address; an entry goes once all its counts are back to 0.
  struct PerSource {
    uint32_t unidentified = 0, relayed = 0, pending = 0;
  };
  std::map<std::string, PerSource> sources;
  uint64_t next_generation = 1;
  RelayStats totals;  // nodes/active/bytes filled in by stats()

  void log(const std::string& line) const {
    if (options.log) options.log(line);
  }
  kj::Timer& timer() { return io->getTimer(); }
  void forget_if_idle(const std::string& host) {
    auto it = sources.find(host);
    if (it != sources.end() && it->second.unidentified == 0 && it->second.relayed == 0 && it->second.pending == 0)
      sources.erase(it);
  }
};

namespace {

using State = RelayServer::State;

// Counts a connection that has not finished its first line (the max_unidentified limits).
class Unidentified {
 public:
  Unidentified(std::shared_ptr<State> state, std::string host) : state_(std::move(state)), host_(std::move(host)) {
    state_->unidentified++;
    state_->sources[host_].unidentified++;
  }
  ~Unidentified() {
    state_->unidentified--;
    state_->sources[host_].unidentified--;
    state_->forget_if_idle(host_);
  }
  Unidentified(const Unidentified&) = delete;
  Unidentified& operator=(const Unidentified&) = delete;

 private:
  std::shared_ptr<State> state_;
  std::string host_;
};

// Counts a CONNECT waiting for its node's dial-back (max_pending_per_source).
class Pending {
 public:
  Pending(std::shared_ptr<State> state, std::string host) : state_(std::move(state)), host_(std::move(host)) {
    state_->sources[host_].pending++;
  }
  ~Pending() {
    state_->sources[host_].pending--;
    state_->forget_if_idle(host_);
  }
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;

 private:
  std::shared_ptr<State> state_;
  std::string host_;
};

// One relayed connection's claim on its node's max_per_node, its source's max_per_source and the
// relay's max_relayed, and its byte counters.
class Slot {
 public:
  Slot(std::shared_ptr<State> state, std::shared_ptr<Registered> node, std::string host)
      : state_(std::move(state)),
        node_(std::move(node)),
        host_(std::move(host)),
        counters_(std::make_shared<SpliceCounters>()) {
    node_->active++;
    node_->live.insert(counters_);
    state_->live.insert(counters_);
    state_->relayed++;
    state_->sources[host_].relayed++;
  }
  ~Slot() {
    state_->relayed--;
    state_->sources[host_].relayed--;
    state_->forget_if_idle(host_);
    node_->active--;
    node_->live.erase(counters_);
    node_->closed_to += counters_->b_to_a;
    node_->closed_from += counters_->a_to_b;
    state_->live.erase(counters_);
    state_->totals.bytes_to_nodes += counters_->b_to_a;
    state_->totals.bytes_from_nodes += counters_->a_to_b;
  }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  // a = the node's dial-back, b = the client.
  const std::shared_ptr<SpliceCounters>& counters() const { return counters_; }

 private:
  std::shared_ptr<State> state_;
  std::shared_ptr<Registered> node_;
  std::string host_;
  std::shared_ptr<SpliceCounters> counters_;
};

kj::Promise<void> refuse(std::shared_ptr<State> state, kj::Own<kj::AsyncIoStream> client, const std::string& from,
                         const std::string& why) {
  state->totals.refused++;
  state->log("refused client " + from + ": " + why);
  auto line = kj::heapString(format_relay_error(why).c_str());
  auto& stream = *client;
  auto written = stream.write(line.begin(), line.size());
  return written.attach(kj::mv(line), kj::mv(client)).catch_([](kj::Exception&&) {});
}

class RegistrationImpl final : public proto::RelayRegistration::Server {
 public:
  RegistrationImpl(std::shared_ptr<State> state, std::shared_ptr<Registered> node)
      : state_(std::move(state)), node_(std::move(node)) {}

  kj::Promise<void> ping(PingContext context) override {
    auto it = state_->nodes.find(node_->peer_id);
    if (it == state_->nodes.end() || it->second != node_)
      throw_rpc_error(ErrorCode::Unavailable, "this registration was replaced or dropped by the relay");
    node_->last_seen = state_->timer().now();
    auto r = context.getResults();
    r.setActiveConnections(node_->active);
    r.setBytesToNode(node_->bytes_to());
    r.setBytesFromNode(node_->bytes_from());
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<State> state_;
  std::shared_ptr<Registered> node_;
};

// The control connection of one node: TLS (its key proven), RPC with a RelayGate as bootstrap.
struct ControlConnection {
  ControlConnection(std::shared_ptr<State> s, TlsPeer peer, std::string from);
  std::shared_ptr<State> state;
  std::string peer_id, from;
  ~ControlConnection();
  uint64_t generation = 0;  // of its registration; 0: none yet
  std::shared_ptr<Registered> registered;
  kj::Own<kj::PromiseFulfiller<void>> drop;  // moves to the registration
  kj::Promise<void> dropped = nullptr;
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
};

class RelayGateImpl final : public proto::RelayGate::Server {
 public:
  explicit RelayGateImpl(ControlConnection& connection) : connection_(connection) {}

  kj::Promise<void> registerNode(RegisterNodeContext context) override {
    auto& c = connection_;
    auto& s = *c.state;
    auto params = context.getParams();
    if (params.getProtocolVersion() != proto::RELAY_PROTOCOL_VERSION)
      throw_rpc_error(ErrorCode::InvalidArgument, "relay protocol version mismatch: the node speaks version " +
                      std::to_string(params.getProtocolVersion()) + ", this relay speaks version " +
                      std::to_string(proto::RELAY_PROTOCOL_VERSION));
    if (c.generation != 0) throw_rpc_error(ErrorCode::AlreadyExists, "this control connection has already registered");
    auto it = s.nodes.find(c.peer_id);
    if (it == s.nodes.end() && s.nodes.size() >= s.options.max_nodes)
      throw_rpc_error(ErrorCode::ResourceExhausted, "this relay serves its maximum of " +
                                                        std::to_string(s.options.max_nodes) +
                                                        " nodes; try another relay or later");
    if (it != s.nodes.end()) {
      s.log("node " + c.peer_id + " registered again from " + c.from + "; closing its earlier control connection");
      if (it->second->drop->isWaiting()) it->second->drop->fulfill();
    }
    auto node = std::make_shared<Registered>();
    node->peer_id = c.peer_id;
    node->generation = c.generation = s.next_generation++;
    node->dialer = params.getDialer();
    node->drop = kj::mv(c.drop);
    node->last_seen = s.timer().now();
    s.nodes[c.peer_id] = node;
    c.registered = node;
    auto results = context.getResults();
    results.setRegistration(kj::heap<RegistrationImpl>(c.state, node));
    auto terms = results.initTerms();
    terms.setKeepaliveSeconds(s.options.keepalive_s);
    terms.setPublicAddress(s.options.public_address.c_str());
    terms.setMaxConnections(s.options.max_per_node);
    terms.setIdleTimeoutSeconds(s.options.idle_timeout_s);
    s.log("node " + c.peer_id + " registered from " + c.from);
    return kj::READY_NOW;
  }

 private:
  ControlConnection& connection_;
};

ControlConnection::ControlConnection(std::shared_ptr<State> s, TlsPeer peer, std::string f)
    : state(std::move(s)), peer_id(std::move(peer.peer_id)), from(std::move(f)), stream(kj::mv(peer.stream)) {
  auto paf = kj::newPromiseAndFulfiller<void>();
  drop = kj::mv(paf.fulfiller);
  dropped = kj::mv(paf.promise);
  network = kj::heap<capnp::TwoPartyVatNetwork>(*stream, capnp::rpc::twoparty::Side::SERVER,
                                                reader_options(1 << 20));
  rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
      capnp::makeRpcServer(*network, kj::heap<RelayGateImpl>(*this)));
}

// Unregisters (unless a newer registration replaced this one) and lets go of the node's dialer
// before the RPC system that it came through goes.
ControlConnection::~ControlConnection() {
  if (!registered) return;
  registered->dialer = nullptr;
  auto it = state->nodes.find(peer_id);
  if (it != state->nodes.end() && it->second == registered) {
    state->nodes.erase(it);
    state->log("node " + peer_id + " unregistered (control connection closed)");
  }
}

kj::Promise<void> serve_control(std::shared_ptr<State> state, kj::Own<kj::AsyncIoStream> tcp, std::string from) {
  const auto handshake = state->options.handshake_timeout_s * kj::SECONDS;
  return with_timeout(state->timer(), handshake, "TLS handshake", state->tls->accept(kj::mv(tcp)))
      .then([state, from, handshake](TlsPeer peer) {
        auto c = kj::heap<ControlConnection>(state, kj::mv(peer), from);
        ControlConnection* raw = c.get();
        // A control connection that does not register in time is closed.
        auto deadline = state->timer().afterDelay(handshake).then([raw]() -> kj::Promise<void> {
          if (raw->generation == 0) return kj::READY_NOW;
          return kj::NEVER_DONE;
        });
        auto ended = raw->network->onDisconnect().exclusiveJoin(kj::mv(raw->dropped)).exclusiveJoin(kj::mv(deadline));
        return ended.attach(kj::mv(c));
      });
}

kj::Promise<void> serve_connect(std::shared_ptr<State> state, kj::Own<kj::AsyncIoStream> client, Remote remote,
                                std::string peer_id) {
  const std::string from = remote.text;
  const RelayOptions& o = state->options;
  auto it = state->nodes.find(peer_id);
  if (it == state->nodes.end())
    return refuse(state, kj::mv(client), from, "no node with peer id " + peer_id + " is registered at this relay");
  std::shared_ptr<Registered> node = it->second;
  auto counted = state->sources.find(remote.host);
  const State::PerSource source = counted == state->sources.end() ? State::PerSource{} : counted->second;
  if (source.pending >= o.max_pending_per_source)
    return refuse(state, kj::mv(client), from,
                  std::to_string(source.pending) + " connections from " + remote.host +
                      " are already waiting for nodes to dial back, this relay's limit per address; try again later");
  if (source.relayed >= o.max_per_source)
    return refuse(state, kj::mv(client), from,
                  remote.host + " already has " + std::to_string(source.relayed) +
                      " relayed connections, this relay's limit per address; try again later");
  if (state->relayed >= o.max_relayed)
    return refuse(state, kj::mv(client), from,
                  "this relay carries its maximum of " + std::to_string(o.max_relayed) +
                      " relayed connections; try another relay or later");
  if (node->active >= o.max_per_node)
    return refuse(state, kj::mv(client), from,
                  "node " + peer_id + " already has " + std::to_string(node->active) +
                      " relayed connections, this relay's limit; try again later");
  auto slot = kj::heap<Slot>(state, node, remote.host);
  auto waiting = kj::heap<Pending>(state, remote.host);
  const RelayToken token = random_relay_token();
  auto arrival = kj::newPromiseAndFulfiller<kj::Own<kj::AsyncIoStream>>();
  state->pending[token] = kj::mv(arrival.fulfiller);
  auto request = node->dialer.dialRequest();
  request.setToken(kj::arrayPtr(token.data(), token.size()));
  // The dial call's failure (the node refused) ends the wait at once; its success leaves the wait
  // to the ACCEPT, which may come before or after the reply.
  kj::Promise<kj::Own<kj::AsyncIoStream>> refused =
      request.send().then([](auto) -> kj::Promise<kj::Own<kj::AsyncIoStream>> { return kj::NEVER_DONE; },
                          [peer_id](kj::Exception&& e) -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
                            rethrow_with_context(e, "node " + peer_id + " did not take the connection");
                          });
  const uint32_t wait_s = state->options.dial_timeout_s;
  auto data = with_timeout(state->timer(), wait_s * kj::SECONDS,
                           "waiting for node " + peer_id + " to dial back", arrival.promise.exclusiveJoin(kj::mv(refused)))
                  .attach(kj::defer([state, token] { state->pending.erase(token); }), kj::mv(waiting));
  auto client_box = kj::heap<kj::Own<kj::AsyncIoStream>>(kj::mv(client));
  auto* box = client_box.get();
  return data.then(
                 [state, box, slot = kj::mv(slot), from, peer_id](kj::Own<kj::AsyncIoStream> dialed) mutable {
                   static const std::string ok = format_relay_ok();
                   auto& client_stream = **box;
                   return client_stream.write(ok.data(), ok.size())
                       .then([state, box, dialed = kj::mv(dialed), slot = kj::mv(slot), from, peer_id]() mutable {
                         state->totals.relayed++;
                         state->log("relaying client " + from + " to node " + peer_id);
                         const auto start = state->timer().now();
                         auto counters = slot->counters();
                         const SpliceOptions spliced{
                             .idle_timeout = state->options.idle_timeout_s * kj::SECONDS,
                             .first_byte_timeout = state->options.first_byte_timeout_s * kj::SECONDS};
                         return splice(kj::mv(dialed), kj::mv(*box), state->timer(), spliced, counters)
                             .then([state, from, peer_id, start](SpliceResult r) {
                               char took[32];
                               std::snprintf(took, sizeof took, "%.1f s",
                                             static_cast<double>((state->timer().now() - start) / kj::MILLISECONDS) /
                                                 1000.0);
                               state->log("closed client " + from + " to node " + peer_id + " after " + took + ": " +
                                          kib(r.b_to_a) + " to the node, " + kib(r.a_to_b) + " from it (" +
                                          r.ended + ")");
                             })
                             .attach(kj::mv(slot));
                       });
                 },
                 [state, box, from](kj::Exception&& e) -> kj::Promise<void> {
                   return refuse(state, kj::mv(*box), from, to_error(e).message);
                 })
      .attach(kj::mv(client_box))
      .catch_([state, from](kj::Exception&& e) { state->log("client " + from + ": " + to_error(e).message); });
}

kj::Promise<void> serve_accept(std::shared_ptr<State> state, kj::Own<kj::AsyncIoStream> dialed, std::string from,
                               const RelayToken& token) {
  auto it = state->pending.find(token);
  if (it == state->pending.end()) {
    state->log("dropped a dial-back from " + from + " with an unknown or expired token");
    return kj::READY_NOW;
  }
  auto fulfiller = kj::mv(it->second);
  state->pending.erase(it);
  fulfiller->fulfill(kj::mv(dialed));
  return kj::READY_NOW;
}

kj::Promise<void> serve_connection(std::shared_ptr<State> state, kj::Own<kj::AsyncIoStream> tcp, Remote remote) {
  const std::string from = remote.text;
  auto counted = kj::heap<Unidentified>(state, remote.host);
  auto& stream = *tcp;
  auto line = with_timeout(state->timer(), state->options.handshake_timeout_s * kj::SECONDS, "the relay line",
                           read_relay_line(stream))
                  .attach(kj::mv(counted));
  return line.then(
      [state, tcp = kj::mv(tcp), remote, from](std::string text) mutable -> kj::Promise<void> {
        auto request = parse_relay_request(text);
        if (!request) return refuse(state, kj::mv(tcp), from, request.error().message);
        switch (request->kind) {
          case RelayRequest::Kind::Connect: return serve_connect(state, kj::mv(tcp), remote, request->peer_id);
          case RelayRequest::Kind::Register: return serve_control(state, kj::mv(tcp), from);
          case RelayRequest::Kind::Accept: return serve_accept(state, kj::mv(tcp), from, request->token);
        }
        return kj::READY_NOW;
      },
      [state, from](kj::Exception&& e) { state->log("connection from " + from + " dropped: " + to_error(e).message); });
}

class TaskErrors final : public kj::TaskSet::ErrorHandler {
 public:
  explicit TaskErrors(std::shared_ptr<State> state) : state_(std::move(state)) {}
  void taskFailed(kj::Exception&& e) override { state_->log("connection ended: " + to_error(e).message); }

 private:
  std::shared_ptr<State> state_;
};

kj::Promise<void> accept_loop(std::shared_ptr<State> state, kj::ConnectionReceiver& listener, kj::TaskSet& tasks) {
  // evalNow: kj's accept() may throw at once rather than return a broken promise.
  return kj::evalNow([&listener] { return listener.accept(); })
      .then(
      [state, &listener, &tasks](kj::Own<kj::AsyncIoStream> tcp) mutable {
        int one = 1;
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { tcp->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); })) {
          (void)e;
        }
        Remote remote = remote_of(*tcp);
        auto source = state->sources.find(remote.host);
        const uint32_t from_source = source == state->sources.end() ? 0 : source->second.unidentified;
        if (state->unidentified >= state->options.max_unidentified)
          state->log("dropped a connection from " + remote.text + ": " + std::to_string(state->unidentified) +
                     " connections are still sending their first line");
        else if (from_source >= state->options.max_unidentified_per_source)
          state->log("dropped a connection from " + remote.text + ": " + std::to_string(from_source) +
                     " connections from " + remote.host + " are still sending their first line");
        else
          tasks.add(serve_connection(state, kj::mv(tcp), kj::mv(remote)));
        return accept_loop(state, listener, tasks);
      },
      // accept() fails on exhausted resources (EMFILE, ENOBUFS): the relay keeps serving the
      // connections it has and tries again shortly, rather than exiting.
      [state, &listener, &tasks](kj::Exception&& e) {
        state->log("accepting a connection failed: " + to_error(e).message + "; retrying in 1 s");
        return state->timer().afterDelay(1 * kj::SECONDS).then([state, &listener, &tasks] {
          return accept_loop(state, listener, tasks);
        });
      });
}

// Drops registrations whose node stopped pinging (a half-open control connection looks alive).
kj::Promise<void> sweep_loop(std::shared_ptr<State> state) {
  const auto period = state->options.keepalive_s * kj::SECONDS;
  return state->timer().afterDelay(period).then([state, period]() {
    const auto now = state->timer().now();
    for (auto& [id, node] : state->nodes)
      if (now - node->last_seen > 3 * period && node->drop->isWaiting()) {
        state->log("node " + id + " stopped pinging; dropping its registration");
        node->drop->fulfill();
      }
    return sweep_loop(state);
  });
}

}  // namespace

Result<std::unique_ptr<RelayServer>> RelayServer::create(const RelayOptions& options, Identity identity) {
  if (options.max_nodes == 0 || options.max_per_node == 0 || options.max_relayed == 0 ||
      options.max_per_source == 0 || options.max_pending_per_source == 0 || options.max_unidentified == 0 ||
      options.max_unidentified_per_source == 0)
    return Error{ErrorCode::InvalidArgument,
                 "relay limits (nodes, relayed connections per node, per address and in all, unidentified "
                 "connections) must be at least 1"};
  if (options.keepalive_s == 0 || options.handshake_timeout_s == 0 || options.first_byte_timeout_s == 0 ||
      options.dial_timeout_s == 0 || options.idle_timeout_s == 0)
    return Error{ErrorCode::InvalidArgument, "relay timeouts must be at least 1 second"};
  if (!options.public_address.empty()) {
    auto a = parse_peer_address(options.public_address);
    if (!a || !a->peer_id.empty() || a->relayed)
      return Error{ErrorCode::InvalidArgument,
                   "the relay's public address '" + options.public_address + "' is not HOST:PORT"};
  }
  auto state = std::make_shared<State>();
  state->options = options;
  auto tls = TlsContext::create(identity);
  if (!tls) return tls.error();
  state->tls = std::move(*tls);
  state->identity = std::move(identity);
  return std::unique_ptr<RelayServer>(new RelayServer(std::move(state)));
}

RelayServer::~RelayServer() = default;

const std::string& RelayServer::peer_id() const { return state_->identity.peer_id(); }

RelayStats RelayServer::stats() const {
  RelayStats s = state_->totals;
  s.nodes = static_cast<uint32_t>(state_->nodes.size());
  s.active = static_cast<uint32_t>(state_->live.size());
  for (const auto& c : state_->live) {
    s.bytes_to_nodes += c->b_to_a;
    s.bytes_from_nodes += c->a_to_b;
  }
  return s;
}

Result<void> RelayServer::serve(kj::AsyncIoContext& io, const std::string& listen,
                                const std::function<void(const std::string&)>& on_listening, kj::Promise<void> stop) {
  auto address = parse_listen_address(listen);
  if (!address) return address.error();
  if (address->relayed)
    return Error{ErrorCode::InvalidArgument, "a relay cannot listen on a relayed address '" + listen + "'"};
  state_->io = io.provider.get();
  Result<void> result;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
    auto addr = io.provider->getNetwork().parseAddress(address->host_port().c_str()).wait(io.waitScope);
    auto listener = addr->listen();
    PeerAddress bound = *address;
    bound.port = static_cast<uint16_t>(listener->getPort());
    on_listening(bound.host_port());
    TaskErrors errors(state_);
    kj::TaskSet tasks(errors);
    accept_loop(state_, *listener, tasks).exclusiveJoin(sweep_loop(state_)).exclusiveJoin(kj::mv(stop)).wait(io.waitScope);
  })) {
    result = to_error(*e).with_context("relay on " + listen);
  }
  return result;
}

}  // namespace omni::net
