// node_flood: a hostile client of a node, for tests/security/node_flood_test.py (issue 15, item 14).
// From one source address it makes a fresh anonymous identity per connection, takes as many
// sessions and ring sinks as the node gives, and then either floods every session with full
// batches (mode flood: the node's compute is what it wants) or keeps them with refused calls only
// (mode keepalive: calls that cost nothing, to see whether they stop the idle timer).
//
//   node_flood NODE SOURCE MODE SECONDS [IDENTITIES] [TOKENS]
//     NODE: ID@HOST:PORT (IPv4), SOURCE: the IPv4 address to connect from (e.g. 127.0.0.2)
//
// The flood ends after SECONDS or when its standard input closes, whichever comes first.
// Prints one line "grabbed sessions=N sinks=M" once it holds what it could get, then at the end one
// JSON line: {"sessions", "sinks", "forwards", "tokens", "refused": {code: count}, "refusal":
// first refusal message, "expired": sessions found expired at the end (keepalive)}.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "net/errors.h"
#include "net/identity.h"
#include "net/node_connection.h"
#include "net/peer_address.h"
#include "net/tls.h"
#include "proto/node.capnp.h"

namespace omni::net {
namespace {

struct Link {
  std::shared_ptr<TlsContext> tls;
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  proto::Node::Client node = nullptr;
  std::vector<proto::Session::Client> sessions;
  size_t sinks = 0;  // attached; each lives on the node until this link closes
};

class IgnoringSink final : public proto::OutputSink::Server {};

struct Flood {
  Flood(kj::AsyncIoContext& io, PeerAddress node) : io(io), node(std::move(node)) {}
  kj::AsyncIoContext& io;
  PeerAddress node;
  sockaddr_in source{}, target{};
  uint32_t block_begin = 0, block_end = 0, n_vocab = 2;
  uint32_t tokens = 512;
  std::vector<kj::Own<Link>> links;
  std::map<std::string, int> refused;
  std::string first_refusal;
  uint64_t forwards = 0, forwarded_tokens = 0;
  bool stopped = false;  // standard input closed
  std::mt19937_64 rng{12345};

  void note(const kj::Exception& e) {
    const Error err = to_error(e);
    refused[to_string(err.code)]++;
    if (first_refusal.empty()) first_refusal = err.message;
  }

  kj::Own<Link> connect() {
    auto link = kj::heap<Link>();
    link->tls = *TlsContext::create(*Identity::generate());  // a fresh anonymous id: free to make
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof source) != 0) {
      std::perror("node_flood: socket/bind");
      std::exit(2);
    }
    auto tcp = io.lowLevelProvider
                   ->wrapConnectingSocketFd(fd, reinterpret_cast<sockaddr*>(&target), sizeof target,
                                            kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)
                   .wait(io.waitScope);
    int one = 1;
    tcp->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto peer = link->tls->connect(kj::mv(tcp), node.peer_id).wait(io.waitScope);
    link->stream = kj::mv(peer.stream);
    link->network = kj::heap<capnp::TwoPartyVatNetwork>(*link->stream, capnp::rpc::twoparty::Side::CLIENT,
                                                         reader_options(kDefaultMaxMessageBytes));
    link->rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcClient(*link->network));
    capnp::MallocMessageBuilder message;
    auto vat = message.getRoot<capnp::rpc::twoparty::VatId>();
    vat.setSide(capnp::rpc::twoparty::Side::SERVER);
    auto gate = link->rpc->bootstrap(vat).castAs<proto::Gate>();
    auto hello = gate.helloRequest();
    hello.initHello().setProtocolVersion(proto::PROTOCOL_VERSION);
    auto reply = hello.send().wait(io.waitScope);
    link->node = reply.getNode();
    block_begin = reply.getInfo().getBlockBegin();
    block_end = reply.getInfo().getBlockEnd();
    n_vocab = reply.getInfo().getModel().getNVocab();
    return link;
  }

  // Opens sessions and attaches sinks on `link` until the node refuses each.
  void grab(Link& link) {
    for (;;) {
      auto open = link.node.openSessionRequest();
      auto p = open.initParams();
      p.setBlockBegin(block_begin);
      p.setBlockEnd(block_end);
      p.setMaxLength(tokens + 1);
      p.setHiddenFormat(proto::HiddenFormat::F16);
      bool ok = true;
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
        link.sessions.push_back(open.send().wait(io.waitScope).getSession());
      })) {
        note(*e);
        ok = false;
      }
      if (!ok) break;
    }
    for (;;) {
      std::vector<kj::byte> token(32);
      for (auto& b : token) b = static_cast<kj::byte>(rng());
      auto attach = link.node.attachSinkRequest();
      attach.setToken(kj::arrayPtr(token.data(), token.size()));
      attach.setSink(kj::heap<IgnoringSink>());
      bool ok = true;
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { attach.send().wait(io.waitScope); })) {
        note(*e);
        ok = false;
      }
      if (!ok) break;
      ++link.sinks;
    }
  }

  size_t sessions() const {
    size_t n = 0;
    for (const auto& l : links) n += l->sessions.size();
    return n;
  }
  size_t sinks() const {
    size_t n = 0;
    for (const auto& l : links) n += l->sinks;
    return n;
  }

  // Full batches on `session`, one after another, until `until`.
  kj::Promise<void> pound(proto::Session::Client session, kj::TimePoint until) {
    if (stopped || io.provider->getTimer().now() >= until) return kj::READY_NOW;
    auto req = session.forwardRequest();
    auto in = req.initInput();
    auto ids = in.initInput().initTokens(tokens);
    for (uint32_t i = 0; i < tokens; ++i) ids.set(i, static_cast<int32_t>(rng() % n_vocab));
    in.setStartPosition(0);
    in.setOutputLast(1);
    return req.send().then(
        [this, session, until](auto) mutable {
          ++forwards;
          forwarded_tokens += tokens;
          return pound(kj::mv(session), until);
        },
        [this, session, until](kj::Exception&& e) mutable -> kj::Promise<void> {
          note(e);
          if (to_error(e).code == ErrorCode::Unavailable) return kj::READY_NOW;  // the session is gone
          return io.provider->getTimer().afterDelay(50 * kj::MILLISECONDS).then([this, session, until]() mutable {
            return pound(kj::mv(session), until);
          });
        });
  }

  // A call the node refuses (a token id past the vocabulary) on every session, every 200 ms.
  kj::Promise<void> tickle(kj::TimePoint until) {
    if (io.provider->getTimer().now() >= until) return kj::READY_NOW;
    kj::Vector<kj::Promise<void>> calls;
    for (auto& l : links)
      for (auto& s : l->sessions) {
        auto req = s.forwardRequest();
        req.initInput().initInput().initTokens(1).set(0, static_cast<int32_t>(n_vocab) + 7);
        calls.add(req.send().ignoreResult().catch_([this](kj::Exception&& e) { note(e); }));
      }
    return kj::joinPromises(calls.releaseAsArray())
        .then([this]() { return io.provider->getTimer().afterDelay(200 * kj::MILLISECONDS); })
        .then([this, until]() { return tickle(until); });
  }

  int expired_now() {
    int expired = 0;
    for (auto& l : links)
      for (auto& s : l->sessions) {
        auto req = s.forwardRequest();
        req.initInput().initInput().initTokens(1).set(0, 1);
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { req.send().wait(io.waitScope); })) {
          if (to_error(*e).code == ErrorCode::Unavailable) ++expired;
        }
      }
    return expired;
  }
};

int run(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: node_flood ID@HOST:PORT SOURCE flood|keepalive SECONDS [IDENTITIES] [TOKENS]\n");
    return 2;
  }
  auto node = parse_peer_address(argv[1]);
  if (!node || node->relayed) {
    std::fprintf(stderr, "node_flood: '%s' is not ID@HOST:PORT\n", argv[1]);
    return 2;
  }
  const std::string mode = argv[3];
  const double seconds = std::atof(argv[4]);
  const int identities = argc > 5 ? std::atoi(argv[5]) : 40;
  auto io = kj::setupAsyncIo();
  Flood f(io, *node);
  f.tokens = argc > 6 ? static_cast<uint32_t>(std::atoi(argv[6])) : 512;
  f.source.sin_family = f.target.sin_family = AF_INET;
  f.target.sin_port = htons(node->port);
  if (inet_pton(AF_INET, argv[2], &f.source.sin_addr) != 1 || inet_pton(AF_INET, node->host.c_str(), &f.target.sin_addr) != 1) {
    std::fprintf(stderr, "node_flood: SOURCE and HOST must be IPv4 addresses\n");
    return 2;
  }
  for (int i = 0; i < identities; ++i) {
    f.links.push_back(f.connect());
    f.grab(*f.links.back());
  }
  std::printf("grabbed sessions=%zu sinks=%zu\n", f.sessions(), f.sinks());
  std::fflush(stdout);
  const auto until = io.provider->getTimer().now() + static_cast<int64_t>(seconds * 1000) * kj::MILLISECONDS;
  int expired = 0;
  if (mode == "flood") {
    auto input = io.lowLevelProvider->wrapInputFd(0);
    kj::byte byte;
    auto watch = input->tryRead(&byte, 1, 1).then([&f](size_t n) {
      if (n == 0) f.stopped = true;
    }).eagerlyEvaluate([&f](kj::Exception&&) { f.stopped = true; });
    kj::Vector<kj::Promise<void>> work;
    for (auto& l : f.links)
      for (auto& s : l->sessions) work.add(f.pound(s, until));
    kj::joinPromises(work.releaseAsArray()).wait(io.waitScope);
  } else {
    f.tickle(until).wait(io.waitScope);
    expired = f.expired_now();
  }
  std::string refused;
  for (const auto& [code, n] : f.refused) refused += (refused.empty() ? "" : ", ") + ("\"" + code + "\": " + std::to_string(n));
  std::string message;
  for (char c : f.first_refusal) message += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  std::printf("{\"sessions\": %zu, \"sinks\": %zu, \"forwards\": %llu, \"tokens\": %llu, \"refused\": {%s}, "
              "\"refusal\": \"%s\", \"expired\": %d}\n",
              f.sessions(), f.sinks(), static_cast<unsigned long long>(f.forwards),
              static_cast<unsigned long long>(f.forwarded_tokens), refused.c_str(), message.c_str(), expired);
  return 0;
}

}  // namespace
}  // namespace omni::net

int main(int argc, char** argv) { return omni::net::run(argc, argv); }
