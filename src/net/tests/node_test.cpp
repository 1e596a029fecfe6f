// A node served in-process (its own thread and event loop) and driven at the protocol level:
// handshake refusals, every malformed-request path answered with an error while the same
// connection (and other clients) keep being served, oversized messages, a full node, idle expiry.
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <cmath>
#include <future>
#include <thread>

#include "net/errors.h"
#include "net/node_connection.h"
#include "net/node_server.h"
#include "net/tls.h"

namespace omni::net {
namespace {

const std::string kModel = std::string(OMNI_SHARED_DIR) + "/models/synth-llama-q8_0.gguf";

// Runs a NodeServer on a thread until destroyed.
class TestNode {
 public:
  explicit TestNode(NodeOptions options) {
    std::promise<std::string> address;
    auto ready = address.get_future();
    thread_ = std::thread([this, options, &address] {
      auto io = kj::setupAsyncIo();
      auto identity = Identity::generate();
      auto server = NodeServer::create(options, *identity);
      if (!server) {
        address.set_value("error: " + server.error().message);
        return;
      }
      peer_id_ = (*server)->peer_id();
      auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
      stop_ = kj::mv(paf.fulfiller);
      auto r = (*server)->serve(io, "127.0.0.1:0", [&](const std::string& a) { address.set_value(a); },
                                kj::mv(paf.promise));
      (void)r;
    });
    address_ = ready.get();
  }
  ~TestNode() {
    if (stop_) stop_->fulfill();
    thread_.join();
  }
  PeerAddress address() const {
    auto a = parse_peer_address(peer_id_ + "@" + address_);
    EXPECT_TRUE(a.ok()) << address_;
    return *a;
  }

 private:
  std::thread thread_;
  std::string address_, peer_id_;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_;
};

NodeOptions options(uint32_t begin, uint32_t end) {
  NodeOptions o;
  o.model_path = kModel;
  o.block_begin = begin;
  o.block_end = end;
  o.threads = 1;
  return o;
}

struct Client {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  std::shared_ptr<TlsContext> tls = *TlsContext::create(*Identity::generate());

  kj::Own<NodeConnection> connect(const PeerAddress& a) {
    return NodeConnection::connect(*io.provider, *tls, a, {}, 5 * kj::SECONDS).wait(io.waitScope);
  }
  // The error text of a call that must fail, or "" if it succeeded.
  template <class F>
  std::string error_of(F&& f) {
    std::string out;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { f(); })) { out = describe(*e); }
    return out;
  }
};

proto::Session::Client open(Client& c, NodeConnection& n, uint32_t a, uint32_t b, uint32_t length = 64,
                            proto::HiddenFormat f = proto::HiddenFormat::F32) {
  auto req = n.node().openSessionRequest();
  auto p = req.initParams();
  p.setBlockBegin(a);
  p.setBlockEnd(b);
  p.setMaxLength(length);
  p.setHiddenFormat(f);
  return req.send().wait(c.io.waitScope).getSession();
}

uint32_t forward_tokens(Client& c, proto::Session::Client& s, std::vector<int32_t> ids, int64_t start = -1) {
  auto req = s.forwardRequest();
  auto in = req.initInput();
  auto l = in.initInput().initTokens(static_cast<unsigned>(ids.size()));
  for (unsigned i = 0; i < ids.size(); ++i) l.set(i, ids[i]);
  in.setStartPosition(start);
  in.setOutputLast(1);
  auto r = req.send().wait(c.io.waitScope);
  EXPECT_EQ(r.getOutput().getHidden().getNTokens(), 1u);
  return r.getOutput().getNPast();
}

TEST(Node, RefusesWrongVersionAndUnknownFeature) {
  TestNode node(options(0, 4));
  Client c;
  auto conn = c.connect(node.address());
  EXPECT_EQ(conn->info().block_end, 4u);
  // A raw hello on a fresh connection, with a future version.
  auto tls_peer = c.io.provider->getNetwork()
                      .parseAddress(node.address().host_port().c_str())
                      .then([](auto addr) { return addr->connect().attach(kj::mv(addr)); })
                      .then([&](kj::Own<kj::AsyncIoStream> s) { return c.tls->connect(kj::mv(s), ""); })
                      .wait(c.io.waitScope);
  capnp::TwoPartyVatNetwork network(*tls_peer.stream, capnp::rpc::twoparty::Side::CLIENT);
  auto rpc = capnp::makeRpcClient(network);
  capnp::MallocMessageBuilder m;
  auto vat = m.initRoot<capnp::rpc::twoparty::VatId>();
  vat.setSide(capnp::rpc::twoparty::Side::SERVER);
  auto gate = rpc.bootstrap(vat).castAs<proto::Gate>();
  auto err = c.error_of([&] {
    auto req = gate.helloRequest();
    req.initHello().setProtocolVersion(99);
    req.send().wait(c.io.waitScope);
  });
  EXPECT_EQ(err, "protocol version mismatch: the caller speaks version 99, this node speaks version 1");
  err = c.error_of([&] {
    auto req = gate.helloRequest();
    auto h = req.initHello();
    h.setProtocolVersion(proto::PROTOCOL_VERSION);
    h.initRequiredFeatures(1).set(0, "teleport");
    req.send().wait(c.io.waitScope);
  });
  EXPECT_NE(err.find("does not support the feature 'teleport'"), std::string::npos) << err;
}

TEST(Node, MalformedRequestsGetErrorsAndServiceContinues) {
  auto o = options(1, 4);
  o.max_batch_tokens = 8;
  TestNode node(o);
  Client c;
  auto conn = c.connect(node.address());
  const uint32_t d = conn->info().model.n_embd;
  auto session = open(c, *conn, 1, 4);
  auto send_hidden = [&](uint32_t rows, uint32_t n_embd, size_t bytes, float value = 0.5f, int64_t start = -1) {
    auto req = session.forwardRequest();
    auto in = req.initInput();
    auto h = in.initInput().initHidden();
    h.setFormat(proto::HiddenFormat::F32);
    h.setNTokens(rows);
    h.setNEmbd(n_embd);
    std::vector<float> v(bytes / 4, value);
    h.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(v.data()), bytes));
    in.setStartPosition(start);
    return req.send().wait(c.io.waitScope).getOutput().getNPast();
  };
  EXPECT_NE(c.error_of([&] { send_hidden(1, d, d * 4 - 4); }).find("got " + std::to_string(d * 4 - 4)), std::string::npos);
  EXPECT_NE(c.error_of([&] { send_hidden(1, d + 1, (d + 1) * 4); }).find("nEmbd"), std::string::npos);
  EXPECT_NE(c.error_of([&] { send_hidden(9, d, 9 * d * 4); }).find("9 rows, outside 1..8"), std::string::npos);
  EXPECT_NE(c.error_of([&] { send_hidden(1, d, d * 4, std::nanf("")); }).find("not finite"), std::string::npos);
  EXPECT_NE(c.error_of([&] { send_hidden(1, d, d * 4, 0.5f, 5); }).find("startPosition 5 is past the 0 positions"),
            std::string::npos);
  auto tokens_err = c.error_of([&] { forward_tokens(c, session, {1}); });
  EXPECT_NE(tokens_err.find("takes hidden states, not tokens"), std::string::npos) << tokens_err;
  auto open_err = c.error_of([&] { open(c, *conn, 0, 4); });
  EXPECT_NE(open_err.find("not a non-empty range within the blocks [1, 4)"), std::string::npos) << open_err;
  open_err = c.error_of([&] { open(c, *conn, 1, 4, 1u << 30); });
  EXPECT_NE(open_err.find("maxLength"), std::string::npos) << open_err;
  // The same session still works, and positions are as if the bad calls never happened.
  EXPECT_EQ(send_hidden(2, d, 2 * d * 4), 2u);
  EXPECT_EQ(send_hidden(1, d, d * 4), 3u);
  EXPECT_EQ(send_hidden(1, d, d * 4, 0.25f, 1), 2u);  // explicit position: re-run from 1
  auto rb = session.rollbackRequest();
  rb.setN(1);
  EXPECT_EQ(rb.send().wait(c.io.waitScope).getNPast(), 1u);
  auto rb2 = session.rollbackRequest();
  rb2.setN(5);
  EXPECT_NE(c.error_of([&] { rb2.send().wait(c.io.waitScope); }).find("cannot roll back 5 positions"), std::string::npos);
  session.closeRequest().send().wait(c.io.waitScope);
  EXPECT_NE(c.error_of([&] { send_hidden(1, d, d * 4); }).find("session closed"), std::string::npos);
}

TEST(Node, OversizedMessageDropsOnlyThatConnection) {
  auto o = options(1, 4);
  o.max_message_bytes = 1 << 20;
  o.max_batch_tokens = 1 << 16;
  TestNode node(o);
  Client c;
  auto conn = c.connect(node.address());
  const uint32_t d = conn->info().model.n_embd;
  auto session = open(c, *conn, 1, 4, 2048);
  const uint32_t rows = (2u << 20) / (d * 4);  // 2 MiB of hidden states
  auto err = c.error_of([&] {
    auto req = session.forwardRequest();
    auto h = req.initInput().initInput().initHidden();
    h.setFormat(proto::HiddenFormat::F32);
    h.setNTokens(rows);
    h.setNEmbd(d);
    h.initData(rows * d * 4);
    req.send().wait(c.io.waitScope);
  });
  // The node drops the connection (the client sees it lost, e.g. "Broken pipe").
  EXPECT_NE(err.find("connection lost"), std::string::npos) << err;
  // Another connection (another client identity) is served.
  Client& other = c;
  other.tls = *TlsContext::create(*Identity::generate());
  auto conn2 = other.connect(node.address());
  auto s2 = open(other, *conn2, 1, 4);
  auto req = s2.forwardRequest();
  auto h = req.initInput().initInput().initHidden();
  h.setFormat(proto::HiddenFormat::F32);
  h.setNTokens(1);
  h.setNEmbd(d);
  std::vector<float> v(d, 0.5f);
  h.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(v.data()), d * 4));
  EXPECT_EQ(req.send().wait(other.io.waitScope).getOutput().getNPast(), 1u);
}

TEST(Node, FullNodeAndKvBudget) {
  auto o = options(0, 4);
  o.max_sessions = 2;
  TestNode node(o);
  Client c;
  auto conn = c.connect(node.address());
  auto s1 = open(c, *conn, 0, 4);
  auto s2 = open(c, *conn, 0, 4);
  auto err = c.error_of([&] { open(c, *conn, 0, 4); });
  EXPECT_EQ(err, "node is full: 2 of 2 sessions are open; try another node or later");
  s1 = nullptr;  // dropping the capability frees the session
  auto info = conn->node().infoRequest().send().wait(c.io.waitScope);
  EXPECT_EQ(info.getInfo().getActiveSessions(), 1u);
  auto s3 = open(c, *conn, 0, 4);
  EXPECT_EQ(forward_tokens(c, s3, {1, 2, 3}), 3u);

  auto o2 = options(0, 4);
  o2.max_kv_bytes = 1 << 20;
  TestNode small(o2);
  auto conn2 = c.connect(small.address());
  err = c.error_of([&] { open(c, *conn2, 0, 4, 2048); });
  EXPECT_NE(err.find("node is full: the session needs"), std::string::npos) << err;
}

TEST(Node, IdleSessionsExpire) {
  auto o = options(0, 4);
  o.idle_timeout_s = 1;
  TestNode node(o);
  Client c;
  auto conn = c.connect(node.address());
  auto s = open(c, *conn, 0, 4);
  EXPECT_EQ(forward_tokens(c, s, {5}), 1u);
  c.io.provider->getTimer().afterDelay(2500 * kj::MILLISECONDS).wait(c.io.waitScope);
  auto err = c.error_of([&] { forward_tokens(c, s, {6}); });
  EXPECT_EQ(err, "session expired after 1 s idle");
  auto info = conn->node().infoRequest().send().wait(c.io.waitScope);
  EXPECT_EQ(info.getInfo().getActiveSessions(), 0u);
}

}  // namespace
}  // namespace omni::net
