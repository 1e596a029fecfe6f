// Routing: the DP's route against brute force over every chain, on random small swarms.
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <random>

#include "swarm/routing.h"

namespace omni::swarm {
namespace {

// Every chain of hops (candidate i from block p to its end, p in its range), cheapest cost.
double brute_force(const std::vector<Candidate>& cs, uint32_t n) {
  double best = std::numeric_limits<double>::infinity();
  std::function<void(uint32_t, double)> go = [&](uint32_t at, double cost) {
    if (at == n) {
      best = std::min(best, cost);
      return;
    }
    for (const auto& c : cs)
      if (c.block_begin <= at && at < c.block_end) go(c.block_end, cost + c.rtt_s + (c.block_end - at) / c.block_tps);
  };
  go(0, 0);
  return best;
}

TEST(Routing, ShortestRouteMatchesBruteForce) {
  std::mt19937 rng(11);
  int routed = 0;
  for (int trial = 0; trial < 500; ++trial) {
    const uint32_t n = 1 + rng() % 8;
    std::vector<Candidate> cs;
    const int k = 1 + rng() % 6;
    for (int i = 0; i < k; ++i) {
      Candidate c;
      c.peer_id = "p" + std::to_string(i);
      c.block_begin = rng() % n;
      c.block_end = c.block_begin + 1 + rng() % (n - c.block_begin);
      c.block_tps = 1 + rng() % 100;
      c.rtt_s = (rng() % 100) / 1000.0;
      cs.push_back(c);
    }
    const double expected = brute_force(cs, n);
    auto route = shortest_route(cs, n);
    if (expected == std::numeric_limits<double>::infinity()) {
      EXPECT_FALSE(route.ok());
      continue;
    }
    ++routed;
    ASSERT_TRUE(route.ok()) << route.error().message;
    EXPECT_NEAR(route->cost_s, expected, 1e-9);
    // The hops are contiguous, cover [0, n), and each lies within its node's range.
    uint32_t at = 0;
    for (const auto& h : route->hops) {
      EXPECT_EQ(h.block_begin, at);
      EXPECT_GE(h.block_begin, cs[h.candidate].block_begin);
      EXPECT_EQ(h.block_end, cs[h.candidate].block_end);
      at = h.block_end;
    }
    EXPECT_EQ(at, n);
  }
  EXPECT_GT(routed, 100);
}

TEST(Routing, GapIsNamed) {
  std::vector<Candidate> cs{{"a", "h:1", 0, 2, 10, 0}, {"b", "h:2", 3, 4, 10, 0}};
  auto r = shortest_route(cs, 4);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("block 2"), std::string::npos) << r.error().message;
}

TEST(Routing, JitterSpreadsSessionsOverEqualReplicas) {
  std::vector<Candidate> cs{{"a", "h:1", 0, 4, 10, 0.001}, {"b", "h:2", 0, 4, 10, 0.001}, {"c", "h:3", 0, 4, 10, 0.001}};
  std::mt19937_64 rng(3);
  std::vector<int> used(3, 0);
  for (int i = 0; i < 300; ++i) {
    auto r = shortest_route(cs, 4, 0.25, &rng);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->hops.size(), 1u);
    used[r->hops[0].candidate]++;
  }
  for (int u : used) EXPECT_GT(u, 50);
  // A much faster replica still wins despite the jitter.
  cs[1].block_tps = 100;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(shortest_route(cs, 4, 0.25, &rng)->hops[0].candidate, 1u);
}

}  // namespace
}  // namespace omni::swarm
