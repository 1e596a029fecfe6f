// Credits through a real node: Node.payReceipts stores valid receipts once (duplicates counted),
// refuses a batch with one forged receipt whole, holds a client to --max-receipts-per-minute while
// still serving it, and a node without a ledger says so; a remote pipeline pays every node of its
// route for exactly the tokens × blocks it received.
#include <gtest/gtest.h>

#include <filesystem>

#include "net/credit_ledger.h"
#include "net/pipeline.h"
#include "net/work_receipt.h"
#include "test_node.h"

namespace omni::net {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/omni-receipts-XXXXXX";
  return ::mkdtemp(tmpl);
}

uint64_t unix_now() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

uint64_t ledger_work(const std::string& dir) {
  auto ledger = CreditLedger::open_read_only(dir);
  EXPECT_TRUE(ledger.ok());
  return ledger.ok() ? (*ledger)->balance()->work : 0;
}

class NodeReceipts : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = temp_dir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  NodeOptions with_ledger(uint32_t begin, uint32_t end, const std::string& sub) {
    NodeOptions o = options(begin, end);
    std::filesystem::create_directories(dir_ + "/" + sub);
    o.ledger = std::shared_ptr<CreditLedger>(*CreditLedger::open(dir_ + "/" + sub));
    return o;
  }

  WorkReceipt receipt(const NodeConnection& n, uint64_t sequence, uint32_t tokens, const Identity& signer) {
    WorkReceipt r;
    r.node_id = n.peer_id();
    r.session.fill(7);
    r.sequence = sequence;
    r.tokens = tokens;
    r.block_begin = n.info().block_begin;
    r.block_end = n.info().block_end;
    r.model_id = receipt_model_id(n.info().model);
    r.issued_at = unix_now();
    EXPECT_TRUE(sign_receipt(r, signer).ok());
    return r;
  }

  // Pays; returns (accepted, duplicates).
  std::pair<uint32_t, uint32_t> pay(Client& c, NodeConnection& n, const std::vector<WorkReceipt>& receipts) {
    auto req = n.node().payReceiptsRequest();
    auto list = req.initReceipts(static_cast<unsigned>(receipts.size()));
    for (unsigned i = 0; i < receipts.size(); ++i) write_receipt(receipts[i], list[i]);
    auto response = req.send().wait(c.io.waitScope);
    return {response.getAccepted(), response.getDuplicates()};
  }

  std::string dir_;
};

TEST_F(NodeReceipts, StoresValidReceiptsOnceAndRefusesForgedBatchesWhole) {
  TestNode node(with_ledger(0, 2, "a"));
  Client c;
  auto n = c.connect(node.address());
  const auto& features = n->info().features;
  EXPECT_NE(std::find(features.begin(), features.end(), "receipts"), features.end());
  auto signer = *Identity::generate();
  std::vector<WorkReceipt> batch{receipt(*n, 1, 100, signer), receipt(*n, 2, 30, signer)};
  EXPECT_EQ(pay(c, *n, batch), std::make_pair(2u, 0u));
  EXPECT_EQ(pay(c, *n, batch), std::make_pair(0u, 2u));  // a retry, or a replay
  EXPECT_EQ(ledger_work(dir_ + "/a"), (100u + 30u) * 2u);

  WorkReceipt inflated = receipt(*n, 3, 10, signer);
  inflated.tokens = 10000;  // the node raising the count the client signed
  std::vector<WorkReceipt> forged{receipt(*n, 4, 5, signer), inflated};
  Error e = c.failure_of([&] { pay(c, *n, forged); });
  EXPECT_EQ(e.code, ErrorCode::PermissionDenied) << e.message;
  EXPECT_NE(e.message.find("receipt 1"), std::string::npos) << e.message;
  EXPECT_EQ(ledger_work(dir_ + "/a"), (100u + 30u) * 2u);  // receipt 0 of that batch not stored either

  WorkReceipt elsewhere = receipt(*n, 5, 5, signer);
  elsewhere.block_end = 3;  // blocks this node does not serve
  ASSERT_TRUE(sign_receipt(elsewhere, signer).ok());
  EXPECT_EQ(c.failure_of([&] { pay(c, *n, {elsewhere}); }).code, ErrorCode::InvalidArgument);
  std::vector<WorkReceipt> too_many;
  for (uint64_t i = 0; i <= kMaxReceiptsPerCall; ++i) too_many.push_back(receipt(*n, 100 + i, 1, signer));
  EXPECT_EQ(c.failure_of([&] { pay(c, *n, too_many); }).code, ErrorCode::InvalidArgument);
}

TEST_F(NodeReceipts, PerClientRateAndTheNodeKeepsServing) {
  NodeOptions o = with_ledger(0, 4, "b");
  o.max_receipts_per_minute = 3;
  TestNode node(o);
  Client c;
  auto n = c.connect(node.address());
  auto signer = *Identity::generate();
  EXPECT_EQ(pay(c, *n, {receipt(*n, 1, 1, signer), receipt(*n, 2, 1, signer), receipt(*n, 3, 1, signer)}).first, 3u);
  Error e = c.failure_of([&] { pay(c, *n, {receipt(*n, 4, 1, signer)}); });
  // Unless the minute turned just now.
  if (e.message.empty()) GTEST_SKIP() << "the rate window turned during the test";
  EXPECT_EQ(e.code, ErrorCode::ResourceExhausted) << e.message;
  EXPECT_NE(e.message.find("--max-receipts-per-minute"), std::string::npos) << e.message;
  // The same client still gets compute.
  auto session = open(c, *n, 0, 4);
  auto fwd = session.forwardRequest();
  fwd.initInput().initInput().initTokens(2).set(0, 1);
  EXPECT_EQ(fwd.send().wait(c.io.waitScope).getOutput().getNPast(), 2u);
  EXPECT_EQ(ledger_work(dir_ + "/b"), 3u * 4u);
}

TEST_F(NodeReceipts, NodeWithoutLedgerSaysSo) {
  TestNode node(options(0, 4));
  Client c;
  auto n = c.connect(node.address());
  const auto& features = n->info().features;
  EXPECT_EQ(std::find(features.begin(), features.end(), "receipts"), features.end());
  auto signer = *Identity::generate();
  Error e = c.failure_of([&] { pay(c, *n, {receipt(*n, 1, 1, signer)}); });
  EXPECT_EQ(e.code, ErrorCode::InvalidArgument) << e.message;
}

// Two nodes, each route: what the pipeline computed (prompt + generated - 1 positions through each
// node's blocks, counted here) is what each ledger holds once the pipeline is gone.
TEST_F(NodeReceipts, PipelinePaysEveryNodeForWhatItComputed) {
  auto model = model::Model::load(kModel);
  ASSERT_TRUE(model.ok());
  kernels::ThreadPool pool(1);
  const uint32_t n_layer = (*model)->config().n_layer;
  TestNode first(with_ledger(0, 1, "first"));
  TestNode rest(with_ledger(1, n_layer, "rest"));
  uint64_t positions = 0;
  for (Topology topology : {Topology::Ring, Topology::Chain, Topology::Direct}) {
    RemoteOptions ro;
    ro.peers = {first.address(), rest.address()};
    ro.topology = topology;
    ro.receipt_every = 7;  // several receipts mid-session, and a remainder at the end
    auto pipeline = make_remote_pipeline(**model, ro, 64, pool);
    ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
    std::vector<float> logits;
    const std::vector<int32_t> prompt{1, 450, 4996, 17354, 1701};
    ASSERT_TRUE((*pipeline)->forward(prompt, logits).ok());
    positions += prompt.size();
    for (int i = 0; i < 20; ++i) {
      const int32_t next[1] = {static_cast<int32_t>(100 + i)};
      ASSERT_TRUE((*pipeline)->forward(next, logits).ok());
      positions += 1;
    }
  }
  EXPECT_EQ(ledger_work(dir_ + "/first"), positions * 1);
  EXPECT_EQ(ledger_work(dir_ + "/rest"), positions * (n_layer - 1));
}

}  // namespace
}  // namespace omni::net
