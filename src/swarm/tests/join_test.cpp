// Joining together: nodes that chose the same blocks from the same picture settle by the
// deterministic tie-break (settle_span), simulated over the in-memory directory with signed records.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "net/identity.h"
#include "swarm/assignment.h"
#include "swarm/directory.h"

namespace omni::swarm {
namespace {

NodeRecord node(const std::string& id, uint32_t n, uint32_t b, uint32_t e, double tps = 100) {
  NodeRecord r;
  r.peer_id = id;
  r.model_id = "m";
  r.n_layer = n;
  r.block_begin = b;
  r.block_end = e;
  r.block_tps = tps;
  return r;
}

bool keeps_before(const std::string& a, const std::string& b) {
  return std::make_pair(join_priority(a, "m"), a) < std::make_pair(join_priority(b, "m"), b);
}

TEST(Join, PriorityIsAStableHashOfPeerAndModel) {
  EXPECT_EQ(join_priority("peer", "m"), join_priority("peer", "m"));
  EXPECT_NE(join_priority("peer", "m"), join_priority("peer", "other model"));
  EXPECT_NE(join_priority("peer", "m"), join_priority("peeR", "m"));
}

TEST(Join, TheLowerPriorityKeepsACollidingRangeTheOtherFillsTheGap) {
  const NodeRecord x = node("x", 4, 0, 2), y = node("y", 4, 0, 2);
  const NodeRecord& keeper = keeps_before("x", "y") ? x : y;
  const NodeRecord& mover = keeps_before("x", "y") ? y : x;
  Span s = settle_span({mover}, keeper);
  EXPECT_EQ(s.begin, 0u);
  EXPECT_EQ(s.end, 2u);
  s = settle_span({keeper}, mover);
  EXPECT_EQ(s.begin, 2u);
  EXPECT_EQ(s.end, 4u);
}

TEST(Join, NoGapNoMoveAndASoleServerStays) {
  // Every block served: a redundant node stays (balance is for rebalancing).
  Span s = settle_span({node("a", 4, 0, 2), node("b", 4, 2, 4)}, node("c", 4, 0, 2));
  EXPECT_EQ(s.begin, 0u);
  // The sole server of block 3 stays whatever its priority, though blocks 1 and 2 are unserved.
  s = settle_span({node("a", 4, 0, 1), node("b", 4, 0, 1)}, node("c", 4, 3, 4));
  EXPECT_EQ(s.begin, 3u);
  // Records of another model size or with no valid range are not counted.
  s = settle_span({node("a", 6, 0, 1), node("b", 4, 2, 1)}, node("c", 4, 0, 1));
  EXPECT_EQ(s.begin, 0u);
}

// N joiners start at the same moment: each reads the (empty) directory, chooses, announces; then
// each settling round every joiner reads the directory, applies settle_span to its own record and
// announces again, all before anyone reads the next round. Same picture, same answer: one round
// covers the model, and the next moves nobody.
void simulate(uint32_t n_layer, uint32_t length, size_t joiners, uint64_t seed) {
  SCOPED_TRACE("n_layer " + std::to_string(n_layer) + ", length " + std::to_string(length) + ", joiners " +
               std::to_string(joiners) + ", seed " + std::to_string(seed));
  MemoryDirectory directory;
  const std::string model_id(64, 'c');  // a model key's length
  std::vector<net::Identity> ids;
  std::vector<NodeRecord> records;
  const int64_t now = unix_now_ms();
  auto picture = [&] {
    auto found = lookup(directory, model_id, now);
    EXPECT_TRUE(found.ok());
    return found.ok() ? found->records : std::vector<NodeRecord>{};
  };
  auto announce = [&](NodeRecord& r, const net::Identity& id) {
    r.seq += 1;
    auto bytes = sign_record(r, id);
    ASSERT_TRUE(bytes.ok()) << bytes.error().message;
    ASSERT_TRUE(directory.announce(model_id, r.peer_id, *bytes).ok());
  };
  const auto empty = picture();
  for (size_t i = 0; i < joiners; ++i) {
    auto id = net::Identity::generate();
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
    NodeRecord r;
    r.peer_id = id->peer_id();
    r.addresses = {"127.0.0.1:" + std::to_string(7000 + i)};
    r.model_id = model_id;
    r.n_layer = n_layer;
    r.block_tps = 100;
    r.issued_ms = now;
    r.expires_ms = now + 60000;
    const Span s = choose_span(coverage_of(empty, n_layer), length, r.block_tps / length);
    r.block_begin = s.begin;
    r.block_end = s.end;
    records.push_back(r);
  }
  for (size_t i = 0; i < joiners; ++i) announce(records[i], ids[i]);
  auto unserved = [&] {
    const Coverage c = coverage_of(records, n_layer);
    return static_cast<size_t>(std::count(c.replicas.begin(), c.replicas.end(), 0u));
  };
  ASSERT_GT(unserved(), 0u) << "all joiners chose from the same empty picture";
  for (int round = 0; round < 2; ++round) {
    const auto seen = picture();
    ASSERT_EQ(seen.size(), joiners);
    std::vector<Span> next;
    for (const auto& self : records) {
      std::vector<NodeRecord> others;
      for (const auto& r : seen)
        if (r.peer_id != self.peer_id) others.push_back(r);
      next.push_back(settle_span(others, self));
    }
    size_t moved = 0;
    for (size_t i = 0; i < joiners; ++i) {
      moved += next[i].begin != records[i].block_begin;
      records[i].block_begin = next[i].begin;
      records[i].block_end = next[i].end;
      announce(records[i], ids[i]);
    }
    if (round == 0) {
      EXPECT_GT(moved, 0u);
      EXPECT_EQ(unserved(), 0u) << "one settling round should cover the model";
    } else {
      EXPECT_EQ(moved, 0u) << "a settled swarm should stay put";
    }
  }
}

TEST(Join, SixJoinersOfOneBlockCoverFourBlocksInOneRound) { simulate(4, 1, 6, 0); }

TEST(Join, JoinersOfLongerRangesCoverTheModel) {
  simulate(4, 2, 2, 0);
  simulate(6, 2, 4, 0);
  simulate(8, 3, 5, 0);
  simulate(7, 1, 7, 0);
}

// Random pictures (single-block nodes, at least as many as blocks): after settling, as computed
// by every node for itself, every block is served and no sole server has moved.
TEST(Join, RandomPicturesSettleToFullCover) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    const uint32_t n = 2 + static_cast<uint32_t>(rng() % 7);
    const size_t count = n + rng() % 4;
    std::vector<NodeRecord> nodes;
    for (size_t i = 0; i < count; ++i) {
      const uint32_t b = static_cast<uint32_t>(rng() % n);
      nodes.push_back(node("p" + std::to_string(trial) + "-" + std::to_string(i), n, b, b + 1, 50 + rng() % 100));
    }
    const Coverage before = coverage_of(nodes, n);
    std::vector<NodeRecord> after = nodes;
    for (size_t i = 0; i < count; ++i) {
      std::vector<NodeRecord> others = nodes;
      others.erase(others.begin() + static_cast<std::ptrdiff_t>(i));
      const Span s = settle_span(others, nodes[i]);
      ASSERT_EQ(s.end - s.begin, 1u);
      if (before.replicas[nodes[i].block_begin] == 1) {
        EXPECT_EQ(s.begin, nodes[i].block_begin) << "a sole server moved";
      }
      after[i].block_begin = s.begin;
      after[i].block_end = s.end;
    }
    const Coverage c = coverage_of(after, n);
    EXPECT_EQ(std::count(c.replicas.begin(), c.replicas.end(), 0u), 0) << "trial " << trial;
  }
}

}  // namespace
}  // namespace omni::swarm
