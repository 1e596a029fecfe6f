// The gateway's picture of the swarm from records over an in-memory directory: nodes that do not
// answer a probe are shown but count for no block, so their model's blocks are missing, and a
// request for it is a 503 naming them; the number of records probed is bounded.
#include "gateway/swarm_watch.h"

#include <gtest/gtest.h>

#include "gateway/swarm_catalog.h"
#include "swarm/record.h"

namespace omni::gateway {
namespace {

// A signed record of a fresh peer for blocks [begin, end) of a 4-block model, at an address where
// nothing listens (port 1 on loopback: connections are refused at once).
std::vector<uint8_t> dead_node_record(uint32_t begin, uint32_t end, const std::string& model_id,
                                      const std::string& cid = "") {
  auto id = net::Identity::generate();
  EXPECT_TRUE(id.ok());
  swarm::NodeRecord r;
  r.peer_id = id->peer_id();
  r.addresses = {"127.0.0.1:1"};
  r.model_id = model_id;
  r.model_name = "ghost.gguf";
  r.model_cid = cid;
  r.n_layer = 4;
  r.block_begin = begin;
  r.block_end = end;
  r.block_tps = 100;
  r.free_sessions = r.max_sessions = 4;
  r.protocol_version = 1;
  r.issued_ms = swarm::unix_now_ms();
  r.expires_ms = r.issued_ms + 60000;
  r.seq = 1;
  auto bytes = swarm::sign_record(r, *id);
  EXPECT_TRUE(bytes.ok());
  return *bytes;
}

const std::string kModelId(64, 'b');

TEST(SwarmWatch, NodesThatDoNotAnswerCountForNoBlock) {
  swarm::MemoryDirectory directory;
  for (auto [b, e] : {std::pair{0u, 2u}, std::pair{2u, 4u}}) {
    auto bytes = dead_node_record(b, e, kModelId);
    auto r = swarm::verify_record(bytes, swarm::unix_now_ms());
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(directory.announce(kModelId, r->peer_id, bytes).ok());
  }
  auto id = net::Identity::generate();
  ASSERT_TRUE(id.ok());
  SwarmWatchOptions options;
  options.refresh_ms = 100;
  options.probe_timeout_ms = 500;
  SwarmWatch watch(&directory, *id, options);
  ASSERT_TRUE(watch.wait_for_read(5000));
  const SwarmSnapshot s = watch.snapshot();
  ASSERT_EQ(s.nodes.size(), 2u);
  for (const SwarmNode& n : s.nodes) {
    EXPECT_FALSE(n.alive);
    EXPECT_EQ(n.model, "ghost");
    EXPECT_EQ(n.route, "direct");
  }
  auto m = watch.model(kModelId);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->coverage, (std::vector<uint32_t>{0, 0, 0, 0}));
  EXPECT_FALSE(m->complete());
}

TEST(SwarmWatch, ProbesAtMostMaxNodes) {
  swarm::MemoryDirectory directory;
  for (int i = 0; i < 12; ++i) {
    auto bytes = dead_node_record(0, 4, kModelId);
    auto r = swarm::verify_record(bytes, swarm::unix_now_ms());
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(directory.announce(kModelId, r->peer_id, bytes).ok());
  }
  auto id = net::Identity::generate();
  ASSERT_TRUE(id.ok());
  SwarmWatchOptions options;
  options.refresh_ms = 100;
  options.probe_timeout_ms = 500;
  options.max_nodes = 5;
  SwarmWatch watch(&directory, *id, options);
  ASSERT_TRUE(watch.wait_for_read(5000));
  EXPECT_EQ(watch.snapshot().nodes.size(), 5u);
}

TEST(SwarmCatalog, AModelWithAGapIsUnavailableNamingTheBlocks) {
  auto directory = std::make_unique<swarm::MemoryDirectory>();
  auto bytes = dead_node_record(0, 2, kModelId, store::Cid::of(std::vector<uint8_t>{7}).to_string());
  auto r = swarm::verify_record(bytes, swarm::unix_now_ms());
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(directory->announce(kModelId, r->peer_id, bytes).ok());
  SwarmCatalogOptions options;
  options.watch.refresh_ms = 100;
  options.watch.probe_timeout_ms = 500;
  auto catalog = SwarmCatalog::create(std::move(directory), std::nullopt, options);
  ASSERT_TRUE(catalog.ok()) << catalog.error().message;
  EXPECT_FALSE((*catalog)->wait_for_model(1000));  // nothing is fully served
  EXPECT_TRUE((*catalog)->models().empty());
  auto gap = (*catalog)->backend("ghost");
  ASSERT_FALSE(gap.ok());
  EXPECT_EQ(gap.error().code, ErrorCode::Unavailable);
  EXPECT_NE(gap.error().message.find("blocks 0-3 of its 4"), std::string::npos) << gap.error().message;
  auto unknown = (*catalog)->backend("nope");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::NotFound);
}

}  // namespace
}  // namespace omni::gateway
