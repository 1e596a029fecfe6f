// Link measurement: which nodes a node measures (its neighbours in route order), and what it
// reports for a live node and for one that does not answer.
#include "swarm/link_meter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "swarm/tests/child_node.h"

namespace omni::swarm {
namespace {

NodeRecord node(const std::string& peer, uint32_t begin, uint32_t end, const std::string& model = std::string(64, 'a')) {
  NodeRecord r;
  r.peer_id = peer;
  r.model_id = model;
  r.n_layer = 12;
  r.block_begin = begin;
  r.block_end = end;
  r.addresses = {"127.0.0.1:1"};
  return r;
}

std::set<std::string> peers_of(const std::vector<NodeRecord>& records) {
  std::set<std::string> out;
  for (const auto& r : records) out.insert(r.peer_id);
  return out;
}

TEST(LinkMeter, NeighboursAreTheNodesNextInRouteOrder) {
  const NodeRecord self = node("self", 4, 8);
  const std::vector<NodeRecord> others{
      node("before", 0, 4),          // hands over at 4, where self starts
      node("before-inside", 2, 6),   // hands over at 6, inside self's range
      node("after", 8, 12),          // takes over at 8
      node("after-inside", 6, 10),   // serves block 8 too
      node("replica", 4, 8),         // same range: never next to self
      node("far", 10, 12),           // cannot follow self directly
      node("ends-with-self", 0, 8),  // ends where self ends
      node("other-model", 8, 12, std::string(64, 'b')),
      node("self", 8, 12),           // self's own stale record
  };
  std::mt19937_64 rng(1);
  EXPECT_EQ(peers_of(link_neighbours(self, others, 16, rng)),
            (std::set<std::string>{"before", "before-inside", "after", "after-inside"}));
  // Above the limit, a sample of them.
  std::vector<NodeRecord> many;
  for (int i = 0; i < 40; ++i) many.push_back(node("n" + std::to_string(i), 8, 12));
  auto some = link_neighbours(self, many, 16, rng);
  EXPECT_EQ(some.size(), 16u);
  EXPECT_EQ(peers_of(some).size(), 16u);
}

TEST(LinkMeter, MeasuresALiveNodeAndReportsADeadOneAtTheTimeout) {
  test_support::ChildNode live(0, 4);
  ASSERT_TRUE(live.error().empty()) << live.error();
  auto identity = net::Identity::generate();
  auto dead_id = net::Identity::generate();
  ASSERT_TRUE(identity.ok() && dead_id.ok());
  NodeRecord alive = node(live.address().peer_id, 0, 4);
  alive.addresses = {live.address().host_port()};
  NodeRecord dead = node(dead_id->peer_id(), 4, 8);  // nothing listens on port 1
  const auto t0 = std::chrono::steady_clock::now();
  auto links = measure_links({alive, dead}, *identity, 1500);
  const double took_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(links.size(), 2u);
  EXPECT_EQ(links[0].peer_id, alive.peer_id);
  EXPECT_GT(links[0].rtt_ms, 0);
  EXPECT_LT(links[0].rtt_ms, 500);  // loopback
  EXPECT_EQ(links[1].peer_id, dead.peer_id);
  EXPECT_DOUBLE_EQ(links[1].rtt_ms, 1500);
  EXPECT_LT(took_ms, 3000);
}

TEST(LinkMeter, OnlyAMaterialChangeIsAnnouncedAtOnce) {
  const std::vector<LinkRtt> before{{"a", 10}, {"b", 0.2}};
  EXPECT_FALSE(links_changed(before, before));
  EXPECT_FALSE(links_changed(before, {{"a", 12}, {"b", 0.9}}));  // within 25 % or 1 ms
  EXPECT_TRUE(links_changed(before, {{"a", 14}, {"b", 0.2}}));   // 40 %
  EXPECT_TRUE(links_changed(before, {{"a", 10}, {"b", 2.0}}));   // 1.8 ms
  EXPECT_TRUE(links_changed(before, {{"a", 10}, {"c", 0.2}}));   // another peer
  EXPECT_TRUE(links_changed(before, {{"a", 10}}));               // one fewer
  EXPECT_TRUE(links_changed({}, {{"a", 10}}));
  EXPECT_FALSE(links_changed({}, {}));
}

}  // namespace
}  // namespace omni::swarm
