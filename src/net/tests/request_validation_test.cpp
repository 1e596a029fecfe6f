// Every field of OpenParams and ForwardInput is checked before use; each bad value gets an Error
// naming it.
#include <capnp/message.h>
#include <gtest/gtest.h>

#include "net/identity.h"
#include "net/request_validation.h"

namespace omni::net {
namespace {

const NodeLimits kNode{1, 3, 4, 128};
const SessionLimits kFirst{0, 8, 100, 16};
const SessionLimits kLater{1, 8, 100, 16};

std::string open_error(const std::function<void(proto::OpenParams::Builder)>& fill) {
  capnp::MallocMessageBuilder m;
  auto p = m.initRoot<proto::OpenParams>();
  p.setBlockBegin(1);
  p.setBlockEnd(3);
  p.setMaxLength(64);
  fill(p);
  auto r = validate_open(p.asReader(), kNode);
  return r.ok() ? "" : r.error().message;
}

std::string forward_error(const SessionLimits& limits, const std::function<void(proto::ForwardInput::Builder)>& fill) {
  capnp::MallocMessageBuilder m;
  auto p = m.initRoot<proto::ForwardInput>();
  fill(p);
  auto r = validate_forward(p.asReader(), limits);
  return r.ok() ? "" : r.error().message;
}

void hidden(proto::ForwardInput::Builder p, uint32_t rows, uint32_t n_embd, size_t bytes,
            proto::HiddenFormat format = proto::HiddenFormat::F16) {
  auto h = p.initInput().initHidden();
  h.setFormat(format);
  h.setNTokens(rows);
  h.setNEmbd(n_embd);
  h.initData(static_cast<unsigned>(bytes));
}

TEST(RequestValidation, OpenParams) {
  EXPECT_EQ(open_error([](auto) {}), "");
  EXPECT_NE(open_error([](auto p) { p.setBlockBegin(0); }).find("not a non-empty range within the blocks [1, 3)"),
            std::string::npos);
  EXPECT_NE(open_error([](auto p) { p.setBlockEnd(1); }).find("non-empty"), std::string::npos);
  EXPECT_NE(open_error([](auto p) { p.setMaxLength(0); }).find("maxLength 0 is outside 1..128"), std::string::npos);
  EXPECT_NE(open_error([](auto p) { p.setMaxLength(129); }).find("maxLength 129"), std::string::npos);
  EXPECT_NE(open_error([](auto p) { p.setHiddenFormat(static_cast<proto::HiddenFormat>(7)); })
                .find("unknown hidden-state format 7"),
            std::string::npos);
  auto id = Identity::generate();
  ASSERT_TRUE(id.ok());
  auto hop = [&](proto::OpenParams::Builder p, std::string address, std::string peer, uint32_t a, uint32_t b) {
    auto h = p.initDownstream(1)[0];
    h.setAddress(address.c_str());
    h.setPeerId(peer.c_str());
    h.setBlockBegin(a);
    h.setBlockEnd(b);
  };
  EXPECT_EQ(open_error([&](auto p) { hop(p, "127.0.0.1:7", id->peer_id(), 3, 4); }), "");
  EXPECT_NE(open_error([&](auto p) { hop(p, "127.0.0.1:7", id->peer_id(), 2, 4); }).find("do not continue the chain"),
            std::string::npos);
  EXPECT_NE(open_error([&](auto p) { hop(p, "127.0.0.1:7", id->peer_id(), 3, 5); }).find("within 4 blocks"),
            std::string::npos);
  EXPECT_NE(open_error([&](auto p) { hop(p, "127.0.0.1", id->peer_id(), 3, 4); }).find("has no port"),
            std::string::npos);
  EXPECT_NE(open_error([&](auto p) { hop(p, "127.0.0.1:7", "bogus", 3, 4); }).find("'bogus' is not a peer id"),
            std::string::npos);
  EXPECT_NE(open_error([](auto p) { p.initDownstream(kMaxHops + 1); }).find("more than 64"), std::string::npos);
  // Ring tokens: absent, or 16..64 bytes.
  EXPECT_EQ(open_error([](auto p) { p.initRingToken(16); }), "");
  EXPECT_EQ(open_error([](auto p) { p.initRingToken(64); }), "");
  EXPECT_NE(open_error([](auto p) { p.initRingToken(15); }).find("the ring token has 15 bytes; it must be 16..64"),
            std::string::npos);
  EXPECT_NE(open_error([](auto p) { p.initRingToken(65); }).find("has 65 bytes"), std::string::npos);
  capnp::MallocMessageBuilder m;
  auto p = m.initRoot<proto::OpenParams>();
  p.setBlockBegin(1);
  p.setBlockEnd(3);
  p.setMaxLength(64);
  auto token = p.initRingToken(32);
  for (unsigned i = 0; i < 32; ++i) token[i] = static_cast<kj::byte>(i * 7);
  auto r = validate_open(p.asReader(), kNode);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->ring_token.size(), 32u);
  EXPECT_EQ(static_cast<kj::byte>(r->ring_token[31]), 31 * 7);
}

TEST(RequestValidation, ForwardTokens) {
  auto tokens = [](proto::ForwardInput::Builder p, std::vector<int32_t> ids) {
    auto l = p.initInput().initTokens(static_cast<unsigned>(ids.size()));
    for (unsigned i = 0; i < ids.size(); ++i) l.set(i, ids[i]);
  };
  EXPECT_EQ(forward_error(kFirst, [&](auto p) { tokens(p, {1, 2, 99}); }), "");
  EXPECT_NE(forward_error(kFirst, [&](auto p) { tokens(p, {1, 100}); }).find("token 1 has id 100, outside the vocabulary 0..99"),
            std::string::npos);
  EXPECT_NE(forward_error(kFirst, [&](auto p) { tokens(p, {-1}); }).find("has id -1"), std::string::npos);
  EXPECT_NE(forward_error(kFirst, [&](auto p) { tokens(p, {}); }).find("0 tokens, outside 1..16"), std::string::npos);
  EXPECT_NE(forward_error(kFirst, [&](auto p) { tokens(p, std::vector<int32_t>(17, 1)); }).find("17 tokens"),
            std::string::npos);
  EXPECT_NE(forward_error(kLater, [&](auto p) { tokens(p, {1}); }).find("takes hidden states, not tokens"),
            std::string::npos);
  EXPECT_NE(forward_error(kFirst, [&](auto p) {
              tokens(p, {1, 2});
              p.setOutputLast(3);
            }).find("outputLast 3 exceeds the 2 input rows"),
            std::string::npos);
  EXPECT_NE(forward_error(kFirst, [&](auto p) {
              tokens(p, {1});
              p.setStartPosition(-2);
            }).find("startPosition -2"),
            std::string::npos);  // Ring bookkeeping: the call id and the earlier hops' compute pass through; at most 64 hops.
  capnp::MallocMessageBuilder m;
  auto p = m.initRoot<proto::ForwardInput>();
  tokens(p, {1});
  p.setCallId(77);
  auto up = p.initUpstreamComputeMicros(2);
  up.set(0, 5);
  up.set(1, 9);
  auto r = validate_forward(p.asReader(), kFirst);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->call_id, 77u);
  EXPECT_EQ(r->upstream_micros, (std::vector<uint64_t>{5, 9}));
  EXPECT_NE(forward_error(kFirst, [&](auto p) {
              tokens(p, {1});
              p.initUpstreamComputeMicros(kMaxHops + 1);
            }).find("upstreamComputeMicros lists 65 hops, more than 64"),
            std::string::npos);
}

TEST(RequestValidation, ForwardHidden) {
  EXPECT_EQ(forward_error(kLater, [](auto p) { hidden(p, 2, 8, 32); }), "");
  EXPECT_EQ(forward_error(kLater, [](auto p) { hidden(p, 2, 8, 64, proto::HiddenFormat::F32); }), "");
  EXPECT_EQ(forward_error(kLater, [](auto p) { hidden(p, 2, 8, 24, proto::HiddenFormat::Q8); }), "");
  EXPECT_NE(forward_error(kLater, [](auto p) { hidden(p, 2, 8, 31); }).find("take 32 bytes, got 31"), std::string::npos);
  EXPECT_NE(forward_error(kLater, [](auto p) { hidden(p, 2, 9, 36); }).find("nEmbd 9, the model has 8"),
            std::string::npos);
  EXPECT_NE(forward_error(kLater, [](auto p) { hidden(p, 0, 8, 0); }).find("0 rows, outside 1..16"), std::string::npos);
  EXPECT_NE(forward_error(kLater, [](auto p) { hidden(p, 17, 8, 17 * 16); }).find("17 rows"), std::string::npos);
  EXPECT_NE(forward_error(kLater, [](auto p) { hidden(p, 1, 8, 16, static_cast<proto::HiddenFormat>(3)); })
                .find("unknown hidden-state format 3"),
            std::string::npos);
  EXPECT_NE(forward_error(kFirst, [](auto p) { hidden(p, 1, 8, 16); }).find("takes tokens, not hidden states"),
            std::string::npos);
  // Huge claimed sizes do not overflow the byte count.
  EXPECT_NE(forward_error({1, 0xffffffffu, 100, 0xffffffffu}, [](auto p) { hidden(p, 0xffffffffu, 0xffffffffu, 16); })
                .find("got 16"),
            std::string::npos);
}

}  // namespace
}  // namespace omni::net
