// Spot checks against real nodes on an F16 model (whose prompt batches and single rows sum
// differently, so a check in other batches than the route's would show): a check late in a session
// replays it with the route's bits (prompt batch as made, one-token calls as per-token calls), so
// its agreed output gives the route's logits exactly; a node that lies only in the check's last
// call is outvoted there, and its fault report is confirmed at that call (a re-run that ignored the
// per-token flag would blame the earlier per-token call); the flag cannot be flipped in a report.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "kernels/thread_pool.h"
#include "model/model.h"
#include "net/node_info.h"
#include "net/pipeline.h"
#include "net/tests/test_node.h"
#include "swarm/fault_report.h"
#include "swarm/spot_check.h"

namespace omni::swarm {
namespace {

const std::string kF16Model = std::string(OMNI_SHARED_DIR) + "/models/synth-llama-f16.gguf";  // 4 blocks
constexpr uint32_t kCtx = 64;
constexpr int kSteps = 9;

net::NodeOptions node_options(uint32_t begin, uint32_t end) {
  net::NodeOptions o;
  o.model_path = kF16Model;
  o.block_begin = begin;
  o.block_end = end;
  o.threads = 1;
  return o;
}

Replica replica(const net::TestNode& node, uint32_t begin, uint32_t end) { return {node.address(), begin, end}; }

class SpotCheckTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { std::signal(SIGPIPE, SIG_IGN); }
  void SetUp() override {
    auto m = model::Model::load(kF16Model);
    ASSERT_TRUE(m.ok()) << m.error().message;
    model_ = std::move(*m);
    auto id = net::identify_model(*model_);
    ASSERT_TRUE(id.ok()) << id.error().message;
    identity_ = *id;
  }

  // Greedy generation on a direct route (F16 hidden states, as `omni run`): the calls made and the
  // last call's logits.
  std::vector<std::vector<int32_t>> generate(const std::vector<net::PeerAddress>& route, std::vector<float>& logits) {
    net::RemoteOptions o;
    o.peers = route;
    o.encoding = net::HiddenEncoding::F16;
    o.topology = net::Topology::Direct;
    o.call_timeout_s = 60;
    auto p = net::make_remote_pipeline(*model_, o, kCtx, pool_);
    EXPECT_TRUE(p.ok()) << p.error().message;
    if (!p.ok()) return {};
    std::vector<std::vector<int32_t>> history{{1, 450, 4996, 17354, 1701, 29916, 432}};
    EXPECT_TRUE((*p)->forward(history[0], logits).ok());
    for (int i = 0; i < kSteps; ++i) {
      history.push_back({static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin())});
      auto r = (*p)->forward(history.back(), logits);
      EXPECT_TRUE(r.ok()) << r.error().message;
    }
    return history;
  }

  // The logits the head gives the check's agreed last row (as the client's VerifyingPipeline does).
  std::vector<float> head_of(const std::vector<uint8_t>& row) {
    std::vector<float> hidden, logits;
    EXPECT_TRUE(net::decode_hidden(row, 1, model_->config().n_embd, net::HiddenEncoding::F16, hidden).ok());
    auto head = model::Session::create(*model_, model_->config().n_layer, model_->config().n_layer, kCtx);
    EXPECT_TRUE(head.ok());
    EXPECT_TRUE((*head)->forward({}, hidden, model::Output::LastLogits, logits, pool_).ok());
    return logits;
  }

  SpotCheckOptions check_options() const {
    SpotCheckOptions o;
    o.encoding = net::HiddenEncoding::F16;
    o.model = identity_;
    o.call_timeout_s = 60;
    o.max_batch = 512;
    return o;
  }

  kernels::ThreadPool pool_{1};
  std::unique_ptr<model::Model> model_;
  net::ModelIdentity identity_;
};

TEST_F(SpotCheckTest, ALateCheckGivesTheRoutesResultAndConvictsALiarAtItsCall) {
  // The liar serves [2, 4) on the route; it lies (a flipped byte, signed) only on the third call
  // of a session once `lying` is set: the check's last call.
  std::atomic<bool> lying{false};
  std::atomic<int> calls{0};
  auto liar_options = node_options(2, 4);
  liar_options.output_filter = [&](std::vector<uint8_t>& bytes) {
    if (lying && ++calls == 3 && !bytes.empty()) bytes[bytes.size() / 2] ^= 0x40;
  };
  net::TestNode a(node_options(0, 2)), a2(node_options(0, 2)), liar(liar_options), b2(node_options(2, 4)),
      b3(node_options(2, 4));

  std::vector<float> route_logits;
  const auto history = generate({a.address(), liar.address()}, route_logits);
  ASSERT_EQ(history.size(), 1u + kSteps);

  lying = true;
  SpotChecker checker(*net::Identity::generate(), check_options());
  const std::vector<CheckHop> route{{replica(a, 0, 2), 0, 2}, {replica(liar, 2, 4), 2, 4}};
  const std::vector<Replica> replicas{replica(a2, 0, 2), replica(b2, 2, 4), replica(b3, 2, 4)};
  auto result = checker.check(route, replicas, history);
  ASSERT_TRUE(result.ok()) << result.error().message;
  EXPECT_TRUE(result->own_batches);
  EXPECT_TRUE(result->unresolved.empty());
  // The agreed output is the route's own (the liar was honest while the route ran).
  ASSERT_FALSE(result->last_row.empty());
  EXPECT_TRUE(head_of(result->last_row) == route_logits);

  ASSERT_EQ(result->faults.size(), 1u);
  const FaultReport& report = result->faults.front();
  EXPECT_EQ(report.accused_peer(), liar.address().peer_id);
  // The check's calls: the prompt batch, the steps as one per-token call, the last call.
  ASSERT_EQ(report.calls.size(), 3u);
  EXPECT_FALSE(report.calls[0].accused.per_token_sums);
  EXPECT_TRUE(report.calls[1].accused.per_token_sums);
  EXPECT_EQ(report.calls[1].accused.n_tokens, static_cast<uint32_t>(kSteps - 1));
  EXPECT_FALSE(report.calls[2].accused.per_token_sums);

  auto parsed = parse_fault_report(to_json(report));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  auto verdict = verify_fault_report(*parsed, *model_, identity_, pool_);
  ASSERT_TRUE(verdict.ok()) << verdict.error().message;
  EXPECT_TRUE(verdict->faulty) << verdict->summary;
  EXPECT_EQ(verdict->call, 2u) << verdict->summary;

  // The per-token flag is signed: flipped, the accused's signature no longer holds.
  FaultReport flipped = *parsed;
  flipped.calls[1].accused.per_token_sums = false;
  auto refused = verify_fault_report(flipped, *model_, identity_, pool_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::PermissionDenied) << refused.error().message;
}

}  // namespace
}  // namespace omni::swarm
