// A node served in-process (its own thread and event loop) and driven at the protocol level:
// handshake refusals, every malformed-request path answered with an error while the same
// connection (and other clients) keep being served, oversized requests (an error reply up to twice
// the limit, a dropped connection beyond), garbage on the socket, a full node, idle expiry, the
// per-client limits (sessions, sinks, queued tokens), refused calls not keeping a session alive,
// and the load in info().
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <cmath>
#include <cstring>

#include "model/model.h"
#include "net/errors.h"
#include "net/forward_attestation.h"
#include "net/node_connection.h"
#include "net/node_server.h"
#include "net/tests/test_node.h"
#include "net/tls.h"

namespace omni::net {
namespace {

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
  auto err = c.failure_of([&] {
    auto req = gate.helloRequest();
    req.initHello().setProtocolVersion(99);
    req.send().wait(c.io.waitScope);
  });
  // The code crosses the RPC boundary; the text comes back without the tag that carried it.
  EXPECT_EQ(err.code, ErrorCode::InvalidArgument);
  EXPECT_EQ(err.message, "protocol version mismatch: the caller speaks version 99, this node speaks version " +
                             std::to_string(proto::PROTOCOL_VERSION));
  err = c.failure_of([&] {
    auto req = gate.helloRequest();
    auto h = req.initHello();
    h.setProtocolVersion(proto::PROTOCOL_VERSION);
    h.initRequiredFeatures(1).set(0, "teleport");
    req.send().wait(c.io.waitScope);
  });
  EXPECT_EQ(err.code, ErrorCode::InvalidArgument);
  EXPECT_NE(err.message.find("'teleport'"), std::string::npos) << err.message;  // names the feature
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
  // Every refusal reaches the client with its code; the message names the field at fault.
  auto expect_invalid = [](const Error& e, const std::string& names) {
    EXPECT_EQ(e.code, ErrorCode::InvalidArgument) << e.message;
    EXPECT_NE(e.message.find(names), std::string::npos) << e.message;
  };
  expect_invalid(c.failure_of([&] { send_hidden(1, d, d * 4 - 4); }), std::to_string(d * 4 - 4));
  expect_invalid(c.failure_of([&] { send_hidden(1, d + 1, (d + 1) * 4); }), "nEmbd");
  expect_invalid(c.failure_of([&] { send_hidden(9, d, 9 * d * 4); }), "1..8");
  expect_invalid(c.failure_of([&] { send_hidden(1, d, d * 4, 0.5f, 5); }), "startPosition 5");
  expect_invalid(c.failure_of([&] { forward_tokens(c, session, {1}); }), "tokens");
  expect_invalid(c.failure_of([&] { open(c, *conn, 0, 4); }), "[1, 4)");
  expect_invalid(c.failure_of([&] { open(c, *conn, 1, 4, 1u << 30); }), "maxLength");
  // Values that cannot be hidden states: the data fails a check.
  auto nan = c.failure_of([&] { send_hidden(1, d, d * 4, std::nanf("")); });
  EXPECT_EQ(nan.code, ErrorCode::Corruption) << nan.message;
  // The same session still works, and positions are as if the bad calls never happened.
  EXPECT_EQ(send_hidden(2, d, 2 * d * 4), 2u);
  EXPECT_EQ(send_hidden(1, d, d * 4), 3u);
  EXPECT_EQ(send_hidden(1, d, d * 4, 0.25f, 1), 2u);  // explicit position: re-run from 1
  auto rb = session.rollbackRequest();
  rb.setN(1);
  EXPECT_EQ(rb.send().wait(c.io.waitScope).getNPast(), 1u);
  auto rb2 = session.rollbackRequest();
  rb2.setN(5);
  expect_invalid(c.failure_of([&] { rb2.send().wait(c.io.waitScope); }), "5 positions");
  session.closeRequest().send().wait(c.io.waitScope);
  auto closed = c.failure_of([&] { send_hidden(1, d, d * 4); });
  EXPECT_EQ(closed.code, ErrorCode::Unavailable) << closed.message;
  EXPECT_EQ(closed.message, "session closed");
}

// A forward of `rows` F32 rows of 0.5 on `session`; returns the session's nPast after it.
uint32_t forward_rows(Client& c, proto::Session::Client& session, uint32_t rows, uint32_t d) {
  auto req = session.forwardRequest();
  auto h = req.initInput().initInput().initHidden();
  h.setFormat(proto::HiddenFormat::F32);
  h.setNTokens(rows);
  h.setNEmbd(d);
  std::vector<float> v(size_t{rows} * d, 0.5f);
  h.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(v.data()), v.size() * 4));
  return req.send().wait(c.io.waitScope).getOutput().getNPast();
}

TEST(Node, OversizedRequestGetsAnErrorAndTheConnectionStays) {
  auto o = options(1, 4);
  o.max_message_bytes = 1 << 20;
  o.max_batch_tokens = 1 << 16;
  TestNode node(o);
  Client c;
  auto conn = c.connect(node.address());
  EXPECT_EQ(conn->info().max_message_bytes, 1u << 20);
  const uint32_t d = conn->info().model.n_embd;
  auto session = open(c, *conn, 1, 4, 2048);
  EXPECT_EQ(forward_rows(c, session, 1, d), 1u);
  // 1.5 MiB: over the limit, under the twice-the-limit the transport reads: a typed error.
  const uint32_t rows = (3u << 19) / (d * 4);
  auto err = c.failure_of([&] { forward_rows(c, session, rows, d); });
  EXPECT_EQ(err.code, ErrorCode::InvalidArgument) << err.message;
  EXPECT_NE(err.message.find("1048576 bytes"), std::string::npos) << err.message;  // names the limit
  // The same connection and session go on, positions unchanged by the refused call.
  EXPECT_EQ(forward_rows(c, session, 2, d), 3u);
  // Another client (another identity; one event loop per thread, so the same loop) is served meanwhile.
  Client& other = c;
  other.tls = *TlsContext::create(*Identity::generate());
  auto conn2 = other.connect(node.address());
  auto s2 = open(other, *conn2, 1, 4);
  EXPECT_EQ(forward_rows(other, s2, 1, d), 1u);
  // 3 MiB: past what the transport reads; refused at its segment table, before the node allocates
  // for it, with a reason naming the limit; capnp can only drop that connection.
  err = c.failure_of([&] { forward_rows(c, session, (3u << 20) / (d * 4), d); });
  EXPECT_EQ(err.code, ErrorCode::ResourceExhausted) << err.message;
  EXPECT_NE(err.message.find("limit of 2097152 bytes"), std::string::npos) << err.message;
  // The other client's connection and session are untouched.
  EXPECT_EQ(forward_rows(other, s2, 1, d), 2u);
}

// Reads until the peer closes the stream.
kj::Promise<void> drain(kj::AsyncIoStream& stream, kj::ArrayPtr<kj::byte> buffer) {
  return stream.tryRead(buffer.begin(), 1, buffer.size()).then([&stream, buffer](size_t n) -> kj::Promise<void> {
    if (n == 0) return kj::READY_NOW;
    return drain(stream, buffer);
  });
}

// Writes `bytes` to a stream; true when the peer then closes it (or resets it) within 5 s.
bool closes_after(Client& c, kj::AsyncIoStream& stream, const std::vector<kj::byte>& bytes) {
  bool closed = false;
  auto buffer = kj::heapArray<kj::byte>(4096);
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
    stream.write(bytes.data(), bytes.size()).wait(c.io.waitScope);
    closed = drain(stream, buffer)
                 .then([] { return true; })
                 .exclusiveJoin(c.io.provider->getTimer().afterDelay(5 * kj::SECONDS).then([] { return false; }))
                 .wait(c.io.waitScope);
  })) {
    closed = e->getType() == kj::Exception::Type::DISCONNECTED;
  }
  return closed;
}

TEST(Node, GarbageOnTheSocketClosesOnlyThatConnection) {
  TestNode node(options(0, 4));
  Client c;
  auto conn = c.connect(node.address());
  auto session = open(c, *conn, 0, 4);
  EXPECT_EQ(forward_tokens(c, session, {1, 2}), 2u);
  std::vector<kj::byte> garbage(8192);
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<kj::byte>((i * 2654435761u) >> 13);
  auto tcp = [&] {
    return c.io.provider->getNetwork()
        .parseAddress(node.address().host_port().c_str())
        .then([](auto addr) { return addr->connect().attach(kj::mv(addr)); })
        .wait(c.io.waitScope);
  };
  // Not TLS at all.
  auto raw = tcp();
  EXPECT_TRUE(closes_after(c, *raw, garbage));
  // A proper TLS handshake, then bytes that are not Cap'n Proto messages (a segment table that
  // claims 2^32 segments, then noise).
  auto tls = c.tls->connect(tcp(), node.address().peer_id).wait(c.io.waitScope);
  std::vector<kj::byte> frames = garbage;
  frames[0] = frames[1] = frames[2] = frames[3] = 0xff;
  EXPECT_TRUE(closes_after(c, *tls.stream, frames));
  // The first connection, its session and new connections are served as before.
  EXPECT_EQ(forward_tokens(c, session, {3}), 3u);
  Client& other = c;
  other.tls = *TlsContext::create(*Identity::generate());
  auto conn2 = other.connect(node.address());
  auto s2 = open(other, *conn2, 0, 4);
  EXPECT_EQ(forward_tokens(other, s2, {1}), 1u);
}

TEST(Node, FullNodeAndKvBudget) {
  auto o = options(0, 4);
  o.max_sessions = 2;
  o.max_sessions_per_client = 2;
  TestNode node(o);
  Client c;
  auto conn = c.connect(node.address());
  auto s1 = open(c, *conn, 0, 4);
  auto s2 = open(c, *conn, 0, 4);
  auto err = c.failure_of([&] { open(c, *conn, 0, 4); });
  EXPECT_EQ(err.code, ErrorCode::ResourceExhausted);
  EXPECT_EQ(err.message, "node is full: 2 of 2 sessions are open; try another node or later");
  s1 = nullptr;  // dropping the capability frees the session
  auto info = conn->node().infoRequest().send().wait(c.io.waitScope);
  EXPECT_EQ(info.getInfo().getActiveSessions(), 1u);
  auto s3 = open(c, *conn, 0, 4);
  EXPECT_EQ(forward_tokens(c, s3, {1, 2, 3}), 3u);

  auto o2 = options(0, 4);
  o2.max_kv_bytes = 1 << 20;
  TestNode small(o2);
  auto conn2 = c.connect(small.address());
  err = c.failure_of([&] { open(c, *conn2, 0, 4, 2048); });
  EXPECT_EQ(err.code, ErrorCode::ResourceExhausted) << err.message;
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
  auto err = c.failure_of([&] { forward_tokens(c, s, {6}); });
  EXPECT_EQ(err.code, ErrorCode::Unavailable);  // the session is gone: open another, here or elsewhere
  EXPECT_EQ(err.message, "session expired after 1 s idle");
  auto info = conn->node().infoRequest().send().wait(c.io.waitScope);
  EXPECT_EQ(info.getInfo().getActiveSessions(), 0u);
}

// The sessions one client may hold are counted by its peer id and by its address: a fresh identity
// from the same address gets no more (every test client connects from 127.0.0.1).
TEST(Node, PerClientSessionLimitCountsPeerIdsAndAddresses) {
  auto o = options(0, 4);
  o.max_sessions = 4;
  o.max_sessions_per_client = 2;
  TestNode node(o);
  Client c;
  const auto first_identity = c.tls;
  const auto fresh_identity = *TlsContext::create(*Identity::generate());
  auto conn = c.connect(node.address());
  EXPECT_EQ(conn->info().max_sessions_per_client, 2u);
  auto s1 = open(c, *conn, 0, 4);
  auto s2 = open(c, *conn, 0, 4);
  auto err = c.failure_of([&] { open(c, *conn, 0, 4); });
  EXPECT_EQ(err.code, ErrorCode::ResourceExhausted);
  EXPECT_NE(err.message.find("too many sessions for one client: peer "), std::string::npos) << err.message;
  c.tls = fresh_identity;
  auto conn2 = c.connect(node.address());
  err = c.failure_of([&] { open(c, *conn2, 0, 4); });
  EXPECT_EQ(err.code, ErrorCode::ResourceExhausted);
  EXPECT_NE(err.message.find("address 127.0.0.1 holds 2 of the 2"), std::string::npos) << err.message;
  s1 = nullptr;  // a closed session gives its place back
  auto info = conn->node().infoRequest().send().wait(c.io.waitScope);
  EXPECT_EQ(info.getInfo().getActiveSessions(), 1u);
  auto s3 = open(c, *conn2, 0, 4);
  EXPECT_EQ(forward_tokens(c, s3, {1, 2}), 2u);

  // Counted by peer id alone (a node behind a relay), the second identity is another client.
  o.limit_by_address = false;
  TestNode relayed(o);
  c.tls = first_identity;
  auto r1 = c.connect(relayed.address());
  auto a1 = open(c, *r1, 0, 4);
  auto a2 = open(c, *r1, 0, 4);
  EXPECT_EQ(c.failure_of([&] { open(c, *r1, 0, 4); }).code, ErrorCode::ResourceExhausted);
  c.tls = fresh_identity;
  auto r2 = c.connect(relayed.address());
  auto b1 = open(c, *r2, 0, 4);
  EXPECT_EQ(forward_tokens(c, b1, {3}), 1u);
}

class NullSink final : public proto::OutputSink::Server {};

TEST(Node, PerClientSinkLimit) {
  auto o = options(0, 4);
  o.max_sinks_per_client = 2;
  TestNode node(o);
  Client c;
  auto conn = c.connect(node.address());
  auto attach = [&](NodeConnection& n, uint8_t fill) {
    std::vector<kj::byte> token(32, fill);
    auto req = n.node().attachSinkRequest();
    req.setToken(kj::arrayPtr(token.data(), token.size()));
    req.setSink(kj::heap<NullSink>());
    req.send().wait(c.io.waitScope);
  };
  attach(*conn, 1);
  attach(*conn, 2);
  auto err = c.failure_of([&] { attach(*conn, 3); });
  EXPECT_EQ(err.code, ErrorCode::ResourceExhausted);
  EXPECT_NE(err.message.find("too many waiting output sinks for one client"), std::string::npos) << err.message;
  // A new connection with the same identity and address is the same client.
  auto again = c.connect(node.address());
  EXPECT_EQ(c.failure_of([&] { attach(*again, 4); }).code, ErrorCode::ResourceExhausted);
  conn = nullptr;  // its unclaimed sinks go with it, and their places
  c.io.provider->getTimer().afterDelay(200 * kj::MILLISECONDS).wait(c.io.waitScope);
  attach(*again, 5);
}

// Before, every call reset the idle timer before it was checked, so refused calls that cost the
// client nothing kept a session (and its KV reservation) forever.
TEST(Node, RefusedCallsDoNotKeepASessionAlive) {
  auto o = options(0, 4);
  o.idle_timeout_s = 1;
  TestNode node(o);
  Client c;
  auto conn = c.connect(node.address());
  auto s = open(c, *conn, 0, 4);
  EXPECT_EQ(forward_tokens(c, s, {5}), 1u);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2500);
  int refused = 0;
  while (std::chrono::steady_clock::now() < until) {
    auto err = c.failure_of([&] { forward_tokens(c, s, {1 << 30}); });  // not a token id
    if (err.code == ErrorCode::Unavailable) break;                        // expired
    EXPECT_EQ(err.code, ErrorCode::InvalidArgument) << err.message;
    ++refused;
    auto rb = c.failure_of([&] {  // more than the session holds
      auto req = s.rollbackRequest();
      req.setN(1000);
      req.send().wait(c.io.waitScope);
    });
    if (rb.code == ErrorCode::Unavailable) break;
    c.io.provider->getTimer().afterDelay(100 * kj::MILLISECONDS).wait(c.io.waitScope);
  }
  EXPECT_GT(refused, 3);
  auto err = c.failure_of([&] { forward_tokens(c, s, {6}); });
  EXPECT_EQ(err.code, ErrorCode::Unavailable) << err.message;
  EXPECT_EQ(err.message, "session expired after 1 s idle");
}

// One client's calls may queue at most --max-queued-tokens-per-client tokens; info() shows the queue.
TEST(Node, QueuedTokensPerClientAndLoadInInfo) {
  auto o = options(0, 4);
  o.max_sessions_per_client = 8;
  o.max_queued_tokens_per_client = 1024;
  TestNode node(o);
  Client c;
  auto conn = c.connect(node.address());
  std::vector<proto::Session::Client> sessions;
  for (int i = 0; i < 8; ++i) sessions.push_back(open(c, *conn, 0, 4, 512));
  // Eight 512-token calls sent at once: one computes, two may wait, the rest are refused.
  std::vector<kj::Promise<capnp::Response<proto::Session::ForwardResults>>> calls;
  for (auto& s : sessions) {
    auto req = s.forwardRequest();
    auto in = req.initInput();
    auto l = in.initInput().initTokens(512);
    for (unsigned i = 0; i < 512; ++i) l.set(i, static_cast<int32_t>(i % 100));
    in.setOutputLast(1);
    calls.push_back(req.send());
  }
  auto info = conn->node().infoRequest().send();
  int ok = 0, refused = 0;
  for (auto& call : calls) {
    auto err = c.failure_of([&] { call.wait(c.io.waitScope); });
    if (err.message.empty()) {
      ++ok;
    } else {
      EXPECT_EQ(err.code, ErrorCode::ResourceExhausted) << err.message;
      EXPECT_NE(err.message.find("--max-queued-tokens-per-client"), std::string::npos) << err.message;
      ++refused;
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_LE(ok, 3);  // 1024 tokens accepted (one more if the first finished before the third came)
  EXPECT_EQ(ok + refused, 8);
  auto seen_response = info.wait(c.io.waitScope);
  auto seen = seen_response.getInfo();
  EXPECT_GE(seen.getQueuedCalls(), 1u);  // asked while the calls waited
  EXPECT_GT(seen.getQueuedTokens(), 0u);  // tokens not yet computed, of the calls accepted
  EXPECT_LE(seen.getQueuedTokens(), 512u * seen.getQueuedCalls());
  EXPECT_EQ(seen.getActiveSessions(), 8u);
  auto after_response = conn->node().infoRequest().send().wait(c.io.waitScope);
  auto after = after_response.getInfo();
  EXPECT_EQ(after.getQueuedCalls(), 0u);
  EXPECT_EQ(after.getQueuedTokens(), 0u);
}

// A call computed in slices (other clients' calls run between them) gives the same bits as one
// batch: token input and hidden input, all rows or the last, compared in F32 with a node that does
// not slice. Slices of 3 rows: 23 rows are 3+...+3+2, 22 are 3+...+3+4 (never a single row).
TEST(Node, SlicedComputeGivesTheSameBitsAsOneBatch) {
  auto whole = options(0, 2);
  // F16 weights: their one-row path differs from the batched one in the last bits (Q8_0's not).
  whole.model_path = std::string(OMNI_SHARED_DIR) + "/models/synth-llama-f16.gguf";
  whole.compute_slice_tokens = 512;
  auto sliced = whole;
  sliced.compute_slice_tokens = 3;
  TestNode a(whole), b(sliced);
  Client c;
  auto ca = c.connect(a.address());
  auto cb = c.connect(b.address());
  const uint32_t n_layer = ca->info().model.n_layer;
  ASSERT_GT(n_layer, 2u);
  auto forward = [&](proto::Session::Client& s, std::vector<int32_t> ids, uint32_t last) {
    auto req = s.forwardRequest();
    auto in = req.initInput();
    auto l = in.initInput().initTokens(static_cast<unsigned>(ids.size()));
    for (unsigned i = 0; i < ids.size(); ++i) l.set(i, ids[i]);
    in.setOutputLast(last);
    auto response = req.send().wait(c.io.waitScope);
    auto data = response.getOutput().getHidden().getData();
    return std::vector<uint8_t>(data.begin(), data.end());
  };
  for (uint32_t n : {23u, 22u}) {
    std::vector<int32_t> ids;
    for (uint32_t i = 0; i < n; ++i) ids.push_back(static_cast<int32_t>((i * 31 + 7) % 200));
    for (uint32_t last : {0u, 1u}) {
      auto sa = open(c, *ca, 0, 2);
      auto sb = open(c, *cb, 0, 2);
      const auto want = forward(sa, ids, last);
      EXPECT_EQ(want.size(), size_t{last ? 1 : n} * ca->info().model.n_embd * 4);
      auto got = forward(sb, ids, last);
      EXPECT_EQ(got, want) << n << " rows, outputLast " << last;
    }
  }
  // Hidden input: the rows after block 1, through the next blocks on both.
  auto rest_a = options(2, n_layer);
  rest_a.model_path = whole.model_path;
  rest_a.compute_slice_tokens = 512;
  auto rest_b = rest_a;
  rest_b.compute_slice_tokens = 3;
  TestNode ra(rest_a), rb(rest_b);
  auto cra = c.connect(ra.address());
  auto crb = c.connect(rb.address());
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < 23; ++i) ids.push_back((i * 13 + 5) % 200);
  auto s0 = open(c, *ca, 0, 2);
  const auto rows = forward(s0, ids, 0);
  auto through = [&](NodeConnection& n) {
    auto s = open(c, n, 2, n_layer);
    auto req = s.forwardRequest();
    auto h = req.initInput().initInput().initHidden();
    h.setFormat(proto::HiddenFormat::F32);
    h.setNTokens(23);
    h.setNEmbd(n.info().model.n_embd);
    h.setData(kj::arrayPtr(rows.data(), rows.size()));
    auto response = req.send().wait(c.io.waitScope);
    auto data = response.getOutput().getHidden().getData();
    return std::vector<uint8_t>(data.begin(), data.end());
  };
  const auto want = through(*cra);
  EXPECT_EQ(want.size(), rows.size());
  EXPECT_EQ(through(*crb), want);
}

// Many sessions' calls in flight at once on a node that merges them into shared passes give the
// bits each gets alone on a node that runs one call at a time (--max-batch-tokens 1): prompts of
// different lengths (all rows wanted, or the last), then decoding steps, every session's call of a
// round sent before any reply is awaited, so that they queue behind each other and share passes.
TEST(Node, ConcurrentSessionsGiveTheBitsOfOneAtATime) {
  auto batched = options(0, 0);
  batched.model_path = std::string(OMNI_SHARED_DIR) + "/models/synth-llama-f16.gguf";
  batched.max_sessions = 16;
  batched.max_pass_tokens = 512;
  batched.compute_slice_tokens = 4;
  auto alone = batched;
  alone.max_pass_tokens = 1;
  {
    // The whole model: the node holding the last block prunes to the last row, batched or not.
    auto probe = model::Model::load(batched.model_path);
    ASSERT_TRUE(probe.ok());
    batched.block_end = alone.block_end = (*probe)->config().n_layer;
  }
  const uint32_t n_layer = batched.block_end;
  TestNode a(batched), b(alone);
  Client c;
  auto ca = c.connect(a.address());
  auto cb = c.connect(b.address());
  constexpr int kSessions = 8;
  auto request = [](proto::Session::Client& s, const std::vector<int32_t>& ids, uint32_t last) {
    auto req = s.forwardRequest();
    auto in = req.initInput();
    auto l = in.initInput().initTokens(static_cast<unsigned>(ids.size()));
    for (unsigned i = 0; i < ids.size(); ++i) l.set(i, ids[i]);
    in.setOutputLast(last);
    return req;
  };
  auto bytes = [](capnp::Response<proto::Session::ForwardResults>& r) {
    auto data = r.getOutput().getHidden().getData();
    return std::vector<uint8_t>(data.begin(), data.end());
  };
  std::vector<proto::Session::Client> on_a, on_b;
  for (int i = 0; i < kSessions; ++i) {
    on_a.push_back(open(c, *ca, 0, n_layer, 64));
    on_b.push_back(open(c, *cb, 0, n_layer, 64));
  }
  for (int round = 0; round < 6; ++round) {
    std::vector<std::vector<int32_t>> ids(kSessions);
    std::vector<uint32_t> last(kSessions);
    for (int i = 0; i < kSessions; ++i) {
      // Round 0: prompts of 3 to 10 tokens; then one token per round.
      const int n = round == 0 ? 3 + i : 1;
      for (int t = 0; t < n; ++t) ids[i].push_back((round * 37 + i * 11 + t * 5 + 3) % 200);
      last[i] = round == 0 && i % 2 == 0 ? 0 : 1;
    }
    std::vector<kj::Promise<capnp::Response<proto::Session::ForwardResults>>> sent;
    for (int i = 0; i < kSessions; ++i) sent.push_back(request(on_a[i], ids[i], last[i]).send());
    for (int i = 0; i < kSessions; ++i) {
      auto got_response = sent[i].wait(c.io.waitScope);
      auto want_response = request(on_b[i], ids[i], last[i]).send().wait(c.io.waitScope);
      const auto want = bytes(want_response);
      EXPECT_EQ(want.size(), size_t{last[i] ? 1 : ids[i].size()} * ca->info().model.n_embd * 4);
      EXPECT_EQ(bytes(got_response), want) << "session " << i << ", round " << round;
      EXPECT_EQ(got_response.getOutput().getNPast(), want_response.getOutput().getNPast());
    }
  }
}

}  // namespace
}  // namespace omni::net

namespace omni::net {
namespace {

// Issue 15, item 16: hidden states whose values are finite in F32 but past F16's largest value
// (65504) are refused when the session's format is F16 (InvalidArgument naming f32), not sent on
// as infinity. The same input through an F32 session shows the values really are that large.
TEST(Node, F16OutputPastItsRangeIsRefusedNotSentAsInfinity) {
  TestNode node(options(1, 4));
  Client c;
  auto conn = c.connect(node.address());
  const uint32_t d = conn->info().model.n_embd;
  auto send = [&](proto::Session::Client& session) {
    auto req = session.forwardRequest();
    auto h = req.initInput().initInput().initHidden();
    h.setFormat(proto::HiddenFormat::F32);
    h.setNTokens(1);
    h.setNEmbd(d);
    std::vector<float> v(d, 1e6f);  // finite, and the residual stream carries it through a block
    h.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(v.data()), v.size() * 4));
    return req.send().wait(c.io.waitScope);
  };
  auto f32 = open(c, *conn, 1, 2, 64, proto::HiddenFormat::F32);
  auto response = send(f32);  // owns the message `out` reads
  auto out = response.getOutput().getHidden();
  ASSERT_EQ(out.getFormat(), proto::HiddenFormat::F32);
  std::vector<float> values(d);
  std::memcpy(values.data(), out.getData().begin(), d * 4);
  float largest = 0;
  for (float x : values) {
    ASSERT_TRUE(std::isfinite(x));
    largest = std::max(largest, std::fabs(x));
  }
  ASSERT_GT(largest, 65504.0f);

  auto f16 = open(c, *conn, 1, 2, 64, proto::HiddenFormat::F16);
  auto err = c.failure_of([&] { send(f16); });
  EXPECT_EQ(err.code, ErrorCode::InvalidArgument) << err.message;
  EXPECT_NE(err.message.find("beyond f16's range; use the f32 hidden-state format"), std::string::npos)
      << err.message;
}

// Direct replies carry the node's signature over the call (net/forward_attestation.h): it verifies
// under the node's own key, names the session's positions, and its digests are those of the input
// sent and the rows received (computed here); a changed output no longer verifies. A node whose
// output_filter changes its rows (a liar) signs the changed rows, so its lie is attributable.
TEST(Node, DirectRepliesAreSignedOverInputAndOutput) {
  auto liar_options = options(0, 2);
  liar_options.output_filter = [](std::vector<uint8_t>& rows) { rows[0] ^= 1; };
  TestNode honest(options(0, 2)), liar(liar_options);
  Client c;
  std::vector<std::vector<uint8_t>> outputs;
  for (TestNode* node : {&honest, &liar}) {
    auto conn = c.connect(node->address());
    const auto& model = conn->info().model;
    auto s = open(c, *conn, 0, 2);
    std::array<uint8_t, 16> nonce{};
    uint64_t position = 0;
    for (std::vector<int32_t> ids : {std::vector<int32_t>{5, 9, 13}, std::vector<int32_t>{21}}) {
      auto req = s.forwardRequest();
      auto in = req.initInput();
      auto l = in.initInput().initTokens(static_cast<unsigned>(ids.size()));
      for (unsigned i = 0; i < ids.size(); ++i) l.set(i, ids[i]);
      in.setOutputLast(1);
      auto response = req.send().wait(c.io.waitScope);
      auto data = response.getOutput().getHidden().getData();
      std::vector<uint8_t> rows(data.begin(), data.end());
      auto a = read_attestation(response.getOutput().getAttestation(), model, 0, 2);
      ASSERT_TRUE(a.ok()) << a.error().message;
      EXPECT_TRUE(verify_attestation(*a).ok());
      EXPECT_EQ(a->peer_id(), conn->peer_id());
      EXPECT_EQ(a->position, position);
      EXPECT_EQ(a->n_tokens, ids.size());
      EXPECT_EQ(a->output_rows, 1u);
      EXPECT_EQ(a->input_sha256, tokens_digest(ids));
      EXPECT_EQ(a->output_sha256, hidden_digest(HiddenEncoding::F32, rows));
      if (position == 0) nonce = a->session_nonce;
      EXPECT_EQ(a->session_nonce, nonce);  // one session, one nonce
      auto forged = *a;
      forged.output_sha256[0] ^= 1;
      EXPECT_EQ(verify_attestation(forged).error().code, ErrorCode::PermissionDenied);
      forged = *a;
      forged.position += 1;
      EXPECT_FALSE(verify_attestation(forged).ok());
      position += ids.size();
      outputs.push_back(rows);
    }
  }
  ASSERT_EQ(outputs.size(), 4u);
  EXPECT_NE(outputs[0], outputs[2]);  // the liar's first row differs from the honest one ...
  auto fixed = outputs[2];
  fixed[0] ^= 1;
  EXPECT_EQ(outputs[0], fixed);  // ... by exactly the filter's change
}

}  // namespace
}  // namespace omni::net
