// Pipelined prefill (Pipeline::prefill on a ring or chain of "pipelined" nodes): the prompt's
// micro-batches go out without waiting, the nodes queue them in order, and the logits of the prompt
// and of the steps after it are bit for bit those of the same prompt sent one max_batch() piece at
// a time, which are the local run's on the same pieces (F32 hidden states: no rounding on the wire).
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "kernels/thread_pool.h"
#include "model/model.h"
#include "net/pipeline.h"
#include "net/tests/test_node.h"

namespace omni::net {
namespace {

constexpr uint32_t kCtx = 160;
constexpr uint32_t kMaxBatch = 40;

// A prompt of 121 tokens: pieces of 40, 40, 40 and 1 (a lone last token is computed alone, as the
// unpipelined prefill computes it).
std::vector<int32_t> prompt() {
  std::vector<int32_t> p{1};
  for (int i = 1; i < 121; ++i) p.push_back(100 + (i * 7919) % 20000);
  return p;
}

// Logits after the prompt and after two greedy steps.
std::vector<std::vector<float>> run(Pipeline& p, bool use_prefill) {
  std::vector<std::vector<float>> out;
  std::vector<float> logits;
  const std::vector<int32_t> tokens = prompt();
  if (use_prefill) {
    auto r = p.prefill(tokens, logits);
    EXPECT_TRUE(r.ok()) << r.error().message;
  } else {
    for (size_t i = 0; i < tokens.size(); i += kMaxBatch) {
      const std::span<const int32_t> piece(tokens.data() + i, std::min<size_t>(kMaxBatch, tokens.size() - i));
      auto r = p.forward(piece, logits);
      EXPECT_TRUE(r.ok()) << r.error().message;
    }
  }
  out.push_back(logits);
  for (int i = 0; i < 2; ++i) {
    const int32_t next[1] = {static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin())};
    auto r = p.forward(next, logits);
    EXPECT_TRUE(r.ok()) << r.error().message;
    out.push_back(logits);
  }
  return out;
}

TEST(PipelinedPrefill, SameBitsAsOnePieceAtATime) {
  auto model = model::Model::load(kModel);
  ASSERT_TRUE(model.ok()) << model.error().message;
  kernels::ThreadPool pool(1);
  // The local run, on the pieces the remote pipelines send.
  auto local = make_local_pipeline(**model, kCtx, pool);
  ASSERT_TRUE(local.ok());
  const auto expected = run(**local, /*use_prefill=*/false);
  ASSERT_EQ(expected[0].size(), (*model)->config().n_vocab);

  auto node = [](uint32_t begin, uint32_t end) {
    auto o = options(begin, end);
    o.max_batch_tokens = kMaxBatch;
    o.max_queued_tokens_per_client = 2 * kMaxBatch;
    o.max_length = kCtx;
    return o;
  };
  TestNode n0(node(0, 1)), n1(node(1, 3)), n2(node(3, 4));
  for (Topology topology : {Topology::Ring, Topology::Chain}) {
    for (uint32_t micro : {0u, 7u, 2u}) {
      SCOPED_TRACE(std::string(topology_name(topology)) + ", micro-batch " + std::to_string(micro));
      RemoteOptions o;
      o.peers = {n0.address(), n1.address(), n2.address()};
      o.encoding = HiddenEncoding::F32;
      o.topology = topology;
      o.call_timeout_s = 60;
      o.micro_batch = micro;
      auto remote = make_remote_pipeline(**model, o, kCtx, pool);
      ASSERT_TRUE(remote.ok()) << remote.error().message;
      ASSERT_EQ((*remote)->max_batch(), kMaxBatch);
      EXPECT_TRUE(run(**remote, /*use_prefill=*/true) == expected);
      // The calls the prompt took: one per piece, or one per micro-batch (pieces of 40 cut into 7s
      // leave 5; into 2s, 20 each; the lone last token stays alone).
      const size_t calls = micro == 0 ? 4 : micro == 7 ? 3 * 6 + 1 : 3 * 20 + 1;
      const std::string summary = (*remote)->summary();
      EXPECT_NE(summary.find(std::to_string(calls + 2) + " calls"), std::string::npos) << summary;
    }
  }
}

// After a rollback (drafted tokens rejected), a prefill continues from the rolled-back position.
TEST(PipelinedPrefill, ContinuesAfterARollback) {
  auto model = model::Model::load(kModel);
  ASSERT_TRUE(model.ok()) << model.error().message;
  kernels::ThreadPool pool(1);
  const std::vector<int32_t> tokens = prompt();
  auto local = make_local_pipeline(**model, kCtx, pool);
  ASSERT_TRUE(local.ok());
  std::vector<float> expected, logits;
  ASSERT_TRUE((*local)->prefill(tokens, expected).ok());

  TestNode n0(options(0, 2)), n1(options(2, 4));
  RemoteOptions o;
  o.peers = {n0.address(), n1.address()};
  o.encoding = HiddenEncoding::F32;
  o.micro_batch = 16;
  auto remote = make_remote_pipeline(**model, o, kCtx, pool);
  ASSERT_TRUE(remote.ok()) << remote.error().message;
  const std::vector<int32_t> wrong{5, 6, 7};
  ASSERT_TRUE((*remote)->forward(wrong, logits).ok());
  ASSERT_TRUE((*remote)->rollback(3).ok());
  auto r = (*remote)->prefill(tokens, logits);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(logits == expected);
}

// A node queues a session's calls sent without waiting and runs them in arrival order (nPast
// grows call by call), within the client's queued-token limit: past it, a call is refused.
TEST(PipelinedPrefill, NodeQueuesASessionsCallsInOrderWithinTheLimit) {
  auto o = options(0, 4);
  o.max_batch_tokens = 64;
  o.max_queued_tokens_per_client = 128;
  TestNode node(o);
  Client c;
  auto conn = c.connect(node.address());
  const auto& features = conn->info().features;
  EXPECT_NE(std::find(features.begin(), features.end(), "pipelined"), features.end());
  EXPECT_EQ(conn->info().max_queued_tokens_per_client, 128u);
  auto session = open(c, *conn, 0, 4, 512);
  std::vector<kj::Promise<capnp::Response<proto::Session::ForwardResults>>> calls;
  for (int call = 0; call < 4; ++call) {
    auto req = session.forwardRequest();
    auto in = req.initInput();
    auto l = in.initInput().initTokens(64);
    for (unsigned i = 0; i < 64; ++i) l.set(i, static_cast<int32_t>(1 + (call * 64 + i) % 300));
    in.setOutputLast(1);
    calls.push_back(req.send());
  }
  std::vector<uint32_t> n_past;
  int refused = 0;
  for (auto& call : calls) {
    auto err = c.failure_of([&] { n_past.push_back(call.wait(c.io.waitScope).getOutput().getNPast()); });
    if (!err.message.empty()) {
      EXPECT_EQ(err.code, ErrorCode::ResourceExhausted) << err.message;
      EXPECT_NE(err.message.find("--max-queued-tokens-per-client"), std::string::npos) << err.message;
      ++refused;
    }
  }
  // Two calls fit (one computing, one waiting); a third only if the first finished before it came.
  EXPECT_GE(n_past.size(), 2u);
  EXPECT_LE(n_past.size(), 3u);
  EXPECT_EQ(n_past.size() + refused, 4u);
  for (size_t i = 0; i < n_past.size(); ++i) EXPECT_EQ(n_past[i], 64u * (i + 1));
}

}  // namespace
}  // namespace omni::net
