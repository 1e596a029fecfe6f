// Routing: the DP's route against brute force over every chain, on random small swarms; the
// node-to-node latency of chains and rings, and how far claimed link figures are believed.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <string>
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
      if (c.block_begin <= at && at < c.block_end)
        go(c.block_end, cost + c.rtt_s + (c.block_end - at) / c.block_tps * (1 + c.active_sessions) +
                            static_cast<double>(c.queued_tokens) * (c.block_end - c.block_begin) / c.block_tps);
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
      c.active_sessions = rng() % 3;
      c.queued_tokens = rng() % 4 == 0 ? rng() % 600 : 0;
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
  std::vector<Candidate> cs{{"a", "h:1", 0, 2, 10, 0, 0}, {"b", "h:2", 3, 4, 10, 0, 0}};
  auto r = shortest_route(cs, 4);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Unavailable) << r.error().message;
  EXPECT_NE(r.error().message.find("block 2"), std::string::npos) << r.error().message;
}

TEST(Routing, JitterSpreadsSessionsOverEqualReplicas) {
  std::vector<Candidate> cs{{"a", "h:1", 0, 4, 10, 0.001, 0}, {"b", "h:2", 0, 4, 10, 0.001, 0}, {"c", "h:3", 0, 4, 10, 0.001, 0}};
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

// Clients opening sessions one after another: each sees the sessions the earlier ones opened (its
// probe's active count). `speed` per replica of a 2-part model (two replicas of each half).
std::vector<int> route_sessions(std::vector<Candidate> cs, int sessions, double jitter, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> used(cs.size(), 0);
  for (int i = 0; i < sessions; ++i) {
    auto r = shortest_route(cs, 4, jitter, &rng);
    EXPECT_TRUE(r.ok());
    if (!r.ok()) break;
    for (const auto& h : r->hops) {
      used[h.candidate]++;
      cs[h.candidate].active_sessions++;
    }
  }
  return used;
}

TEST(Routing, LoadSpreadsSessionsEvenlyOverEqualReplicas) {
  // Two replicas of [0,2), three of [2,4); equal speed and round trip. Without the load term every
  // session would take the first of each (no jitter) or a random one (jitter): here they even out.
  std::vector<Candidate> cs{{"a", "h:1", 0, 2, 50, 0.002, 0}, {"b", "h:2", 0, 2, 50, 0.002, 0},
                            {"c", "h:3", 2, 4, 50, 0.002, 0}, {"d", "h:4", 2, 4, 50, 0.002, 0},
                            {"e", "h:5", 2, 4, 50, 0.002, 0}};
  for (double jitter : {0.0, 0.25}) {
    auto used = route_sessions(cs, 60, jitter, 5);
    std::printf("jitter %.2f: sessions per replica %d %d | %d %d %d\n", jitter, used[0], used[1], used[2], used[3],
                used[4]);
    // 60 sessions: 30 on each first-half replica, 20 on each second-half one, give or take.
    EXPECT_NEAR(used[0], 30, 2) << "jitter " << jitter;
    EXPECT_NEAR(used[1], 30, 2) << "jitter " << jitter;
    for (int i = 2; i < 5; ++i) EXPECT_NEAR(used[i], 20, 2) << "replica " << i << ", jitter " << jitter;
  }
}

TEST(Routing, AClearlyFasterReplicaTakesMostSessions) {
  // Replica b of [0,2) computes 3 times as fast as a: it takes about 3 sessions for each of a's
  // ((1 + k_b) / 150 = (1 + k_a) / 50), i.e. most of them, but a is not left idle.
  std::vector<Candidate> cs{{"a", "h:1", 0, 2, 50, 0.001, 0}, {"b", "h:2", 0, 2, 150, 0.001, 0},
                            {"c", "h:3", 2, 4, 100, 0.001, 0}};
  auto used = route_sessions(cs, 40, 0.25, 7);
  std::printf("3x faster replica: %d of 40 sessions (slower one %d)\n", used[1], used[0]);
  EXPECT_EQ(used[0] + used[1], 40);
  EXPECT_GE(used[1], 26) << "a " << used[0] << ", b " << used[1];
  EXPECT_LE(used[1], 33) << "a " << used[0] << ", b " << used[1];
  EXPECT_GE(used[0], 7);
  // A replica much closer (round trip) wins the first sessions, then shares.
  std::vector<Candidate> near_far{{"near", "h:1", 0, 4, 100, 0.001, 0}, {"far", "h:2", 0, 4, 100, 0.080, 0}};
  auto split = route_sessions(near_far, 10, 0.25, 9);
  std::printf("1 ms vs 80 ms round trip: %d / %d of 10 sessions\n", split[0], split[1]);
  EXPECT_GE(split[0], 3);  // the far one costs 0.120 s/token idle; near reaches that at 2 sessions
  EXPECT_GT(split[0], split[1]);
}

// Sessions routed one after another, each adding to the load of the nodes it uses.
std::vector<size_t> sessions_per_node(std::vector<Candidate> cs, uint32_t n, int sessions) {
  std::vector<size_t> count(cs.size(), 0);
  for (int i = 0; i < sessions; ++i) {
    auto route = shortest_route(cs, n);
    EXPECT_TRUE(route.ok());
    if (!route.ok()) break;
    for (const auto& hop : route->hops) {
      ++count[hop.candidate];
      ++cs[hop.candidate].active_sessions;
    }
  }
  return count;
}

TEST(Routing, AbsurdThroughputClaimDoesNotDrawEveryRoute) {
  std::vector<Candidate> cs;
  for (int i = 0; i < 3; ++i) cs.push_back({"honest" + std::to_string(i), "h", 0, 4, 1000, 0.001, 0});
  cs.push_back({"liar", "l", 0, 4, 1e8, 0.001, 0});
  // Uncapped, the liar's cost stays near its round trip however many sessions it holds.
  EXPECT_EQ(sessions_per_node(cs, 4, 20)[3], 20u);
  cap_claimed_throughput(cs, 4.0);
  EXPECT_DOUBLE_EQ(cs[3].block_tps, 4000.0);  // 4 x the median claim (1000)
  EXPECT_DOUBLE_EQ(cs[0].block_tps, 1000.0);  // honest claims below the cap are kept
  const auto count = sessions_per_node(cs, 4, 20);
  EXPECT_LT(count[3], 20u);
  for (int i = 0; i < 3; ++i) EXPECT_GE(count[i], 1u);
  // Two candidates, one lying: the lower median is the honest claim.
  std::vector<Candidate> two{cs[0], {"liar", "l", 0, 4, 1e8, 0.001, 0}};
  cap_claimed_throughput(two, 4.0);
  EXPECT_DOUBLE_EQ(two[1].block_tps, 4000.0);
}

// Two equal replicas, one with a backlog (a client flooding it): the route takes the other, and
// the flooded one again once its queue drains.
TEST(Routing, ABackloggedReplicaIsAvoided) {
  std::vector<Candidate> cs(2);
  for (size_t i = 0; i < cs.size(); ++i) {
    cs[i].peer_id = "p" + std::to_string(i);
    cs[i].block_begin = 0;
    cs[i].block_end = 4;
    cs[i].block_tps = 1000;
    cs[i].rtt_s = 0.001;
    cs[i].active_sessions = 1;
  }
  cs[0].queued_tokens = 4096;  // eight 512-token batches waiting
  auto route = shortest_route(cs, 4);
  ASSERT_TRUE(route.ok());
  ASSERT_EQ(route->hops.size(), 1u);
  EXPECT_EQ(route->hops[0].candidate, 1u);
  cs[0].queued_tokens = 0;
  cs[1].active_sessions = 3;
  route = shortest_route(cs, 4);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->hops[0].candidate, 0u);
}

// One route's cost as routing.h states it: each hop's compute (and backlog), plus the topology's
// latency terms.
double path_cost(const std::vector<Candidate>& cs, const std::vector<std::pair<size_t, uint32_t>>& hops,
                 net::Topology topology) {
  double compute = 0;
  for (size_t k = 0; k < hops.size(); ++k) {
    const Candidate& c = cs[hops[k].first];
    compute += (c.block_end - hops[k].second) / c.block_tps * (1 + c.active_sessions) +
               static_cast<double>(c.queued_tokens) * (c.block_end - c.block_begin) / c.block_tps;
  }
  double links = 0, client = 0;
  for (size_t k = 0; k + 1 < hops.size(); ++k) links += link_rtt(cs[hops[k].first], cs[hops[k + 1].first]);
  for (const auto& h : hops) client += cs[h.first].rtt_s;
  const double first = cs[hops.front().first].rtt_s, last = cs[hops.back().first].rtt_s;
  switch (topology) {
    case net::Topology::Direct: return compute + client;
    case net::Topology::Chain: return compute + first + links;
    case net::Topology::Ring: return compute + (first + links + last) / 2;
  }
  return 0;
}

double brute_force_path(const std::vector<Candidate>& cs, uint32_t n, net::Topology topology) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<std::pair<size_t, uint32_t>> hops;
  std::function<void(uint32_t)> go = [&](uint32_t at) {
    if (at == n) {
      best = std::min(best, path_cost(cs, hops, topology));
      return;
    }
    for (size_t i = 0; i < cs.size(); ++i)
      if (cs[i].block_begin <= at && at < cs[i].block_end && cs[i].block_end <= n) {
        hops.emplace_back(i, at);
        go(cs[i].block_end);
        hops.pop_back();
      }
  };
  go(0);
  return best;
}

TEST(Routing, WholePathRouteMatchesBruteForce) {
  std::mt19937 rng(17);
  int routed = 0;
  for (int trial = 0; trial < 600; ++trial) {
    const auto topology = std::array{net::Topology::Direct, net::Topology::Chain, net::Topology::Ring}[trial % 3];
    const uint32_t n = 1 + rng() % 8;
    std::vector<Candidate> cs;
    const int k = 1 + rng() % 7;
    for (int i = 0; i < k; ++i) {
      Candidate c;
      c.peer_id = "p" + std::to_string(i);
      c.block_begin = rng() % n;
      c.block_end = c.block_begin + 1 + rng() % (n - c.block_begin);
      c.block_tps = 1 + rng() % 100;
      c.rtt_s = (rng() % 100) / 1000.0;
      c.active_sessions = rng() % 3;
      cs.push_back(c);
    }
    for (auto& c : cs)  // some nodes claim figures for some others
      for (int j = 0; j < k; ++j)
        if (rng() % 2 && cs[j].peer_id != c.peer_id) c.links.push_back({cs[j].peer_id, double(rng() % 200)});
    const double expected = brute_force_path(cs, n, topology);
    auto route = shortest_route(cs, n, 0, nullptr, topology);
    if (expected == std::numeric_limits<double>::infinity()) {
      EXPECT_FALSE(route.ok());
      continue;
    }
    ++routed;
    ASSERT_TRUE(route.ok()) << route.error().message;
    EXPECT_NEAR(route->cost_s, expected, 1e-9) << "topology " << net::topology_name(topology);
    std::vector<std::pair<size_t, uint32_t>> hops;
    for (const auto& h : route->hops) hops.emplace_back(h.candidate, h.block_begin);
    EXPECT_NEAR(path_cost(cs, hops, topology), expected, 1e-9);
    uint32_t at = 0;
    for (const auto& h : route->hops) {
      EXPECT_EQ(h.block_begin, at);
      EXPECT_EQ(h.block_end, cs[h.candidate].block_end);
      at = h.block_end;
    }
    EXPECT_EQ(at, n);
  }
  EXPECT_GT(routed, 150);
}

// A [0,2) 10 ms from the client; B1 [2,4) 1 ms from the client but 100 ms from A (both measured
// it); B2 [2,4) 11 ms from the client, 2 ms from A (next to A: the figures obey the triangle
// inequality, so no bound applies).
std::vector<Candidate> slow_link_swarm() {
  std::vector<Candidate> cs{{"A", "h:1", 0, 2, 1000, 0.010, 0},
                            {"B1", "h:2", 2, 4, 1000, 0.001, 0},
                            {"B2", "h:3", 2, 4, 1000, 0.011, 0}};
  cs[0].links = {{"B1", 100}, {"B2", 2}};
  cs[1].links = {{"A", 100}};
  cs[2].links = {{"A", 2}};
  return cs;
}

TEST(Routing, WholePathLatencyRoutesAroundASlowNodeToNodeLink) {
  const auto cs = slow_link_swarm();
  // The client's own round trips alone (Direct) favour B1: 10 + 1 ms against 10 + 11 ms.
  auto direct = shortest_route(cs, 4, 0, nullptr, net::Topology::Direct);
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(direct->hops.back().candidate, 1u);
  // A ring token goes client -> A -> B -> client: (10 + 100 + 1) / 2 through B1, (10 + 2 + 11) / 2
  // through B2; a chain's goes there and back: 10 + 100 against 10 + 2.
  const double compute = 4 / 1000.0;
  for (auto [topology, via_b2] : {std::pair{net::Topology::Ring, (0.010 + 0.002 + 0.011) / 2},
                                  std::pair{net::Topology::Chain, 0.010 + 0.002}}) {
    auto route = shortest_route(cs, 4, 0, nullptr, topology);
    ASSERT_TRUE(route.ok());
    ASSERT_EQ(route->hops.size(), 2u);
    EXPECT_EQ(route->hops[1].candidate, 2u) << net::topology_name(topology);
    EXPECT_NEAR(route->cost_s, via_b2 + compute, 1e-12) << net::topology_name(topology);
  }
  // With jitter too, every time: B1's path is over 3 times as slow.
  std::mt19937_64 rng(1);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(shortest_route(cs, 4, 0.25, &rng, net::Topology::Ring)->hops[1].candidate, 2u);
}

TEST(Routing, LinkClaimsAreBoundedByTheClientsOwnRoundTrips) {
  Candidate a{"a", "h:1", 0, 2, 10, 0.010, 0}, b{"b", "h:2", 2, 4, 10, 0.004, 0};
  // No claim: the middle of what the triangle inequality allows, [6, 14] ms.
  EXPECT_DOUBLE_EQ(link_rtt(a, b), 0.010);
  // One end's claim within the bounds counts as it is, either way round.
  a.links = {{"b", 8}};
  EXPECT_DOUBLE_EQ(link_rtt(a, b), 0.008);
  EXPECT_DOUBLE_EQ(link_rtt(b, a), 0.008);
  // Above the client's sum is believed (a link may be worse than a path through the client).
  a.links = {{"b", 500}};
  EXPECT_DOUBLE_EQ(link_rtt(a, b), 0.5);
  // A claim of 0 counts as |10 - 4| ms: no closer than the client's own figures allow.
  a.links = {{"b", 0}};
  EXPECT_DOUBLE_EQ(link_rtt(a, b), 0.006);
  // When both ends measured, the larger figure counts: one end cannot talk the link down.
  b.links = {{"a", 30}};
  EXPECT_DOUBLE_EQ(link_rtt(a, b), 0.030);
  EXPECT_DOUBLE_EQ(link_rtt(b, a), 0.030);
  // Two figures that agree stand without the client's check (its probes may be inflated by load):
  // two colluding neighbours can make their own link look fast.
  a.links = {{"b", 0.5}};
  b.links = {{"a", 0.4}};
  EXPECT_DOUBLE_EQ(link_rtt(a, b), 0.0005);
  // Nothing above kMaxLinkRttMs.
  b.links = {{"a", 1e9}};
  EXPECT_DOUBLE_EQ(link_rtt(a, b), kMaxLinkRttMs / 1000);
}

TEST(Routing, NodeClaimingZeroEverywhereDoesNotDrawEveryRoute) {
  // A [0,2); honest H and liar L serve [2,4), all 5 ms from the client. Every link really takes
  // 20 ms; A and H say so, L claims 0 ms to A. A measured L as well.
  std::vector<Candidate> cs{{"A", "h:1", 0, 2, 1000, 0.005, 0},
                            {"H", "h:2", 2, 4, 1000, 0.005, 0},
                            {"L", "h:3", 2, 4, 1000, 0.005, 0}};
  cs[0].links = {{"H", 20}, {"L", 20}};
  cs[1].links = {{"A", 20}};
  cs[2].links = {{"A", 0}};
  EXPECT_DOUBLE_EQ(link_rtt(cs[0], cs[2]), 0.020);
  std::mt19937_64 rng(4);
  std::vector<int> used(3, 0);
  for (int i = 0; i < 400; ++i) used[shortest_route(cs, 4, 0.25, &rng, net::Topology::Ring)->hops[1].candidate]++;
  std::printf("liar claiming 0 ms, measured by its neighbour: %d of 400 routes (honest replica %d)\n", used[2],
              used[1]);
  EXPECT_GT(used[1], 140);
  EXPECT_GT(used[2], 140);
  // Where its neighbour has not measured it, the lie counts down to |5 - 5| = 0 ms: it draws the
  // idle routes, but the load term shares them out once it holds sessions (10 ms of ring latency
  // saved is 10 sessions' worth of its 1 ms compute at most).
  cs[0].links = {{"H", 20}};
  std::vector<int> loaded(3, 0);
  for (int i = 0; i < 40; ++i) {
    auto r = shortest_route(cs, 4, 0.25, &rng, net::Topology::Ring);
    ASSERT_TRUE(r.ok());
    for (const auto& h : r->hops) ++cs[h.candidate].active_sessions, ++loaded[h.candidate];
  }
  std::printf("unmeasured liar: %d of 40 loaded sessions (honest replica %d)\n", loaded[2], loaded[1]);
  EXPECT_GE(loaded[1], 10);
  EXPECT_LT(loaded[2], 40);
}

}  // namespace
}  // namespace omni::swarm

namespace omni::swarm {
namespace {

TEST(Routing, ALowReputationReplicaIsChosenLess) {
  // Two equal replicas of the whole model, b scoring 0.5: b's hop cost counts double, so with the
  // load term b takes a session when (1 + k_b) / 0.5 <= (1 + k_a): about a third of 60.
  std::vector<Candidate> cs{{"a", "h:1", 0, 4, 50, 0.001, 0}, {"b", "h:2", 0, 4, 50, 0.001, 0}};
  cs[1].reputation = 0.5;
  for (double jitter : {0.0, 0.25}) {
    auto used = route_sessions(cs, 60, jitter, 9);
    std::printf("jitter %.2f: sessions score 1: %d, score 0.5: %d\n", jitter, used[0], used[1]);
    EXPECT_NEAR(used[1], 20, 3) << "jitter " << jitter;
    EXPECT_NEAR(used[0], 40, 3) << "jitter " << jitter;
  }
  // Without the load term, the better-scored of two equal replicas wins every time.
  std::mt19937_64 rng(1);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(shortest_route(cs, 4, 0.25, &rng)->hops[0].candidate, 0u);
  // The expected cost does not include the penalty: it is the same whichever replica is taken.
  cs[0].reputation = 0.5;
  cs[1].reputation = 1;
  auto r = shortest_route(cs, 4);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->hops[0].candidate, 1u);
  EXPECT_DOUBLE_EQ(r->cost_s, hop_cost(cs[1], 4));
}

TEST(Routing, AnExcludedReplicaIsNeverRouted) {
  // c serves the whole model far faster than a + b, and is excluded.
  std::vector<Candidate> cs{{"a", "h:1", 0, 2, 50, 0.002, 0}, {"b", "h:2", 2, 4, 50, 0.002, 0},
                            {"c", "h:3", 0, 4, 1e6, 0.0001, 0}};
  cs[2].excluded = true;
  std::mt19937_64 rng(4);
  for (int i = 0; i < 200; ++i) {
    auto r = shortest_route(cs, 4, 0.25, &rng);
    ASSERT_TRUE(r.ok());
    for (const auto& h : r->hops) ASSERT_NE(h.candidate, 2u);
    cs[0].active_sessions++;  // even as the others fill up
    cs[1].active_sessions++;
  }
  // When only an excluded node serves a block, there is no route, and the error says why.
  cs[1].excluded = true;
  auto r = shortest_route(cs, 4);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Unavailable);
  EXPECT_NE(r.error().message.find("excluded"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace omni::swarm
