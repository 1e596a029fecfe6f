// Ring mode (OpenParams.ringToken, Node.attachSink, OutputSink) at the protocol level, and the
// remote pipeline on all three routes against the local one: F32 logits must be identical, the
// batch limit must follow the nodes' message sizes, and a hop that goes away must be named.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "kernels/thread_pool.h"
#include "model/model.h"
#include "net/pipeline.h"
#include "net/tests/test_node.h"

namespace omni::net {
namespace {

// A client's sink: records what the last node delivers; refuses call ids listed in `refuse`.
class TestSink final : public proto::OutputSink::Server {
 public:
  struct Seen {
    uint64_t call_id = 0;
    uint32_t rows = 0;
    std::vector<uint8_t> bytes;
    size_t hops = 0;
  };
  TestSink(std::shared_ptr<std::vector<Seen>> seen, uint64_t refuse) : seen_(std::move(seen)), refuse_(refuse) {}
  kj::Promise<void> deliver(DeliverContext context) override {
    auto p = context.getParams();
    if (p.getCallId() == refuse_)
      throw_rpc_error(ErrorCode::InvalidArgument, "this client awaits no output for call " + std::to_string(refuse_));
    auto h = p.getOutput().getHidden();
    seen_->push_back({p.getCallId(), h.getNTokens(), {h.getData().begin(), h.getData().end()},
                      p.getOutput().getHopComputeMicros().size()});
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<std::vector<Seen>> seen_;
  uint64_t refuse_;
};

std::vector<kj::byte> token_bytes(size_t n, kj::byte fill) { return std::vector<kj::byte>(n, fill); }

proto::Session::Client open_chain(Client& c, NodeConnection& first, const PeerAddress& next,
                                  const std::vector<kj::byte>& token) {
  auto req = first.node().openSessionRequest();
  auto p = req.initParams();
  p.setBlockBegin(0);
  p.setBlockEnd(2);
  p.setMaxLength(64);
  p.setHiddenFormat(proto::HiddenFormat::F32);
  auto hop = p.initDownstream(1)[0];
  hop.setAddress(next.host_port().c_str());
  hop.setPeerId(next.peer_id.c_str());
  hop.setBlockBegin(2);
  hop.setBlockEnd(4);
  if (!token.empty()) p.setRingToken(kj::arrayPtr(token.data(), token.size()));
  return req.send().wait(c.io.waitScope).getSession();
}

capnp::Response<proto::Session::ForwardResults> forward(Client& c, proto::Session::Client& s,
                                                        std::vector<int32_t> ids, uint64_t call_id) {
  auto req = s.forwardRequest();
  auto in = req.initInput();
  auto l = in.initInput().initTokens(static_cast<unsigned>(ids.size()));
  for (unsigned i = 0; i < ids.size(); ++i) l.set(i, ids[i]);
  in.setOutputLast(1);
  in.setCallId(call_id);
  return req.send().wait(c.io.waitScope);
}

TEST(Ring, SinkDeliversWhatTheChainWouldReturn) {
  TestNode a(options(0, 2)), b(options(2, 4));
  Client c;
  auto to_a = c.connect(a.address());
  auto to_b = c.connect(b.address());
  const auto& features = to_b->info().features;
  EXPECT_NE(std::find(features.begin(), features.end(), "ring"), features.end());
  auto seen = std::make_shared<std::vector<TestSink::Seen>>();
  auto attach = [&](const std::vector<kj::byte>& token) {
    auto req = to_b->node().attachSinkRequest();
    req.setToken(kj::arrayPtr(token.data(), token.size()));
    req.setSink(kj::heap<TestSink>(seen, /*refuse=*/9));
    req.send().wait(c.io.waitScope);
  };
  const auto token = token_bytes(32, 0x5a);
  EXPECT_EQ(c.failure_of([&] { attach(token_bytes(8, 1)); }).code, ErrorCode::InvalidArgument);
  // No sink under the token on the last node: the open fails, naming the hop.
  auto no_sink = c.failure_of([&] { open_chain(c, *to_a, b.address(), token); });
  EXPECT_EQ(no_sink.code, ErrorCode::NotFound) << no_sink.message;  // the last node's code, across two hops
  EXPECT_NE(no_sink.message.find("cannot open the next hop " + b.address().host_port()), std::string::npos)
      << no_sink.message;
  attach(token);
  EXPECT_EQ(c.failure_of([&] { attach(token); }).code, ErrorCode::AlreadyExists);

  auto ring = open_chain(c, *to_a, b.address(), token);
  auto chain = open_chain(c, *to_a, b.address(), {});
  const std::vector<int32_t> prompt{1, 15, 300, 7};
  auto ack = forward(c, ring, prompt, 7);
  EXPECT_EQ(ack.getOutput().getHidden().getNTokens(), 0u);  // the rows went to the sink
  EXPECT_EQ(ack.getOutput().getNPast(), 4u);
  EXPECT_EQ(ack.getOutput().getHopComputeMicros().size(), 2u);
  // B acknowledges only after the sink returned, so the delivery is here before the ack.
  ASSERT_EQ(seen->size(), 1u);
  EXPECT_EQ((*seen)[0].call_id, 7u);
  EXPECT_EQ((*seen)[0].rows, 1u);
  EXPECT_EQ((*seen)[0].hops, 2u);
  auto reply = forward(c, chain, prompt, 0);
  auto data = reply.getOutput().getHidden().getData();
  EXPECT_EQ(std::vector<uint8_t>(data.begin(), data.end()), (*seen)[0].bytes);
  EXPECT_EQ(reply.getOutput().getHopComputeMicros().size(), 2u);
  // A next token: again identical to the chain's.
  forward(c, ring, {42}, 8);
  reply = forward(c, chain, {42}, 0);
  data = reply.getOutput().getHidden().getData();
  ASSERT_EQ(seen->size(), 2u);
  EXPECT_EQ(std::vector<uint8_t>(data.begin(), data.end()), (*seen)[1].bytes);
  // The sink refuses a delivery: the first node's reply carries the error back.
  auto refused = c.failure_of([&] { forward(c, ring, {43}, 9); });
  EXPECT_EQ(refused.code, ErrorCode::InvalidArgument) << refused.message;
  EXPECT_EQ(refused.message,
            "next hop " + b.address().host_port() +
                ": delivering the output to the client's sink: this client awaits no output for call 9");
  // Bad input at the first node is answered by it, as in any mode.
  auto bad = c.failure_of([&] { forward(c, ring, {-1}, 10); });
  EXPECT_EQ(bad.code, ErrorCode::InvalidArgument) << bad.message;
}

// Logits of a prompt and three greedy steps.
std::vector<std::vector<float>> run(Pipeline& p, const std::vector<int32_t>& prompt) {
  std::vector<std::vector<float>> out;
  std::vector<float> logits;
  EXPECT_TRUE(p.forward(prompt, logits).ok());
  out.push_back(logits);
  for (int i = 0; i < 3; ++i) {
    const int32_t next[1] = {
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin())};
    auto r = p.forward(next, logits);
    EXPECT_TRUE(r.ok()) << r.error().message;
    out.push_back(logits);
  }
  return out;
}

TEST(Ring, PipelineRoutesMatchTheLocalRun) {
  auto model = model::Model::load(kModel);
  ASSERT_TRUE(model.ok()) << model.error().message;
  kernels::ThreadPool pool(1);
  const std::vector<int32_t> prompt{1, 450, 4996, 17354, 1701};
  auto local = make_local_pipeline(**model, 64, pool);
  ASSERT_TRUE(local.ok());
  const auto expected = run(**local, prompt);
  auto small = options(1, 3);
  small.max_message_bytes = 64 << 10;  // 60 F32 rows of 256 values, with the request's overhead
  TestNode n0(options(0, 1)), n1(small), n2(options(3, 4));
  for (Topology topology : {Topology::Ring, Topology::Chain, Topology::Direct}) {
    SCOPED_TRACE(topology_name(topology));
    RemoteOptions o;
    o.peers = {n2.address(), n0.address(), n1.address()};  // any order
    o.encoding = HiddenEncoding::F32;
    o.topology = topology;
    o.call_timeout_s = 20;
    auto remote = make_remote_pipeline(**model, o, 64, pool);
    ASSERT_TRUE(remote.ok()) << remote.error().message;
    EXPECT_EQ((*remote)->max_batch(), 60u);
    std::vector<float> logits;
    auto refused = (*remote)->forward(std::vector<int32_t>(61, 1), logits);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, ErrorCode::InvalidArgument);  // failover passes it on at once
    EXPECT_NE(refused.error().message.find("takes 1..60 per call (node " + n1.address().host_port() +
                                           " reads messages of at most 65536 bytes)"),
              std::string::npos)
        << refused.error().message;
    EXPECT_EQ(run(**remote, prompt), expected);
    const std::string summary = (*remote)->summary();
    EXPECT_NE(summary.find(std::string("route ") + topology_name(topology)), std::string::npos) << summary;
    EXPECT_NE(summary.find("per token: nodes"), std::string::npos) << summary;
    EXPECT_NE(summary.find("(medians of 3 tokens)"), std::string::npos) << summary;
  }
}

// A client that pauses between tokens longer than the nodes' call timeout: its event loop does not
// run meanwhile, so the sink's replies must have left before forward() returned, else the last
// node's delivery times out and the ring breaks.
TEST(Ring, IdleClientKeepsTheRing) {
  auto model = model::Model::load(kModel);
  ASSERT_TRUE(model.ok()) << model.error().message;
  kernels::ThreadPool pool(1);
  auto o0 = options(0, 2), o1 = options(2, 4);
  o0.call_timeout_s = o1.call_timeout_s = 1;
  TestNode n0(o0), n1(o1);
  RemoteOptions o;
  o.peers = {n0.address(), n1.address()};
  auto remote = make_remote_pipeline(**model, o, 64, pool);
  ASSERT_TRUE(remote.ok()) << remote.error().message;
  std::vector<float> logits;
  ASSERT_TRUE((*remote)->forward(std::vector<int32_t>{1, 2}, logits).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  auto r = (*remote)->forward(std::vector<int32_t>{3}, logits);
  EXPECT_TRUE(r.ok()) << r.error().message;
}

TEST(Ring, DeadHopIsNamed) {
  auto model = model::Model::load(kModel);
  ASSERT_TRUE(model.ok()) << model.error().message;
  kernels::ThreadPool pool(1);
  for (int victim : {1, 2}) {
    TestNode n0(options(0, 1));
    auto n1 = std::make_unique<TestNode>(options(1, 3));
    auto n2 = std::make_unique<TestNode>(options(3, 4));
    const std::string where = (victim == 1 ? n1 : n2)->address().host_port();
    RemoteOptions o;
    o.peers = {n0.address(), n1->address(), n2->address()};
    o.encoding = HiddenEncoding::F32;
    auto remote = make_remote_pipeline(**model, o, 64, pool);
    ASSERT_TRUE(remote.ok()) << remote.error().message;
    std::vector<float> logits;
    ASSERT_TRUE((*remote)->forward(std::vector<int32_t>{1, 2}, logits).ok());
    (victim == 1 ? n1 : n2).reset();  // stops that node: its connections close
    auto r = (*remote)->forward(std::vector<int32_t>{3}, logits);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::Unavailable) << r.error().message;
    EXPECT_NE(r.error().message.find(where), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace omni::net
