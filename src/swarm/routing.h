// Routing: the chain of nodes a client's session uses, chosen from the directory's records.
//
// Each candidate node serving [b, e) offers hops from any block p in [b, e) to e (a session may run
// a node's blocks from p on; ending before e would only add a hop later). A route's cost, in
// seconds per generated token, has two separate terms:
// - compute: per hop, (e - p) / block_tps seconds per token for one session, times (1 + the
//   sessions already open on it): a node runs one forward pass at a time, so a token waits for the
//   other sessions' passes (an upper bound: open sessions are not always busy); plus the time the
//   node's backlog (NodeInfo.queuedTokens: tokens waiting for its compute) takes through all its
//   blocks, so a saturated node (one client flooding it with big batches) is avoided while a
//   replica has room. That is a penalty rather than a wait: the node serves clients in turn, so a
//   new call waits for about one slice per busy client, not for the whole backlog;
// - latency: the path a token's hidden state travels, which depends on the topology (net/pipeline.h):
//   Direct, the client calls each node: the sum of the client's round trips to the hops; Chain,
//   client -> first hop, node to node, and back the same way: the client's round trip to the first
//   hop plus each node-to-node round trip; Ring, client -> first hop -> ... -> last hop -> client:
//   half of (the round trips to the first and last hops plus each node-to-node round trip).
// The route is the cheapest path from block 0 to n_layer (a DP over hops: the latency of a hop
// depends on the one before it; hops only go forward).
//
// Node-to-node round trips are claims: each node measures the nodes it may hand a token to or take
// one from and puts the figures in its signed record (link_meter.h, record.h). A liar may claim 0 ms
// to draw routes, so link_rtt() believes a claim only within what the client can check:
// - when both ends measured the link, the larger figure counts: one end cannot talk the link down
//   alone (a node that refuses its neighbours' probes is reported by them as unreachable);
// - a figure only one end gave counts no lower than |rtt(client, a) - rtt(client, b)|, from the
//   client's own probes (triangle inequality); nothing counts above kMaxLinkRttMs;
// - with no figure at all: max(rtt(client, a), rtt(client, b)), the middle of what the triangle
//   inequality allows ([|x - y|, x + y]).
// So a node alone can make a link look fast only where its neighbour did not measure it, and no
// faster than the client's own measurements allow; two colluding neighbours can make their shared
// link look fast (they could also just be fast). Claiming a link slower than it is only hurts
// routes through the claimer, as actually being slow would.
//
// Sessions spread over replicas two ways: the load term above (a client sees the sessions other
// clients opened before it probed, so a later session prefers an idle replica, and a replica k
// times faster takes about k times the sessions), and, with `jitter` > 0, each candidate's hop
// cost (its latency and compute terms) scaled by a random factor in [1, 1 + jitter] drawn per call,
// so clients that probe at the same moment (and see the same loads) do not all pick the same
// near-equal replica. A replica more than 1 + jitter cheaper still wins every time. A session keeps
// its chain while it works (the failover pipeline re-routes only when a node fails).
//
// Reputation (reputation.h): a candidate's hop cost (latency and compute, as the jitter) is divided
// by its score, floored at kMinReputation, so a replica scoring 0.5 must be twice as cheap as a
// replica scoring 1 to be chosen: a peer that failed or stalled lately, or ran slower than it
// claims, draws fewer routes in proportion, and wins them back by serving. An excluded candidate is
// never part of a route, even when no other node serves its blocks (the route fails instead). The
// route's cost_s is what it is expected to take: without the reputation factor or the jitter.
// Pure functions: no I/O.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/pipeline.h"
#include "swarm/record.h"

namespace omni::swarm {

struct Candidate {
  std::string peer_id;
  std::string address;  // "host:port"
  uint32_t block_begin = 0, block_end = 0;
  double block_tps = 0;  // tokens/s through one block; <= 0 counts as very slow
  double rtt_s = 0;      // measured round trip to the node
  uint32_t active_sessions = 0;  // sessions open on the node now (its probe answer)
  uint64_t queued_tokens = 0;    // tokens waiting for compute on the node now (its probe answer)
  std::vector<LinkRtt> links = {};  // round trips the node claims to other nodes (its record)
  double reputation = 1;  // this client's score of the node (reputation.h), in [0, 1]
  bool excluded = false;  // found faulty: never routed through
};

struct RouteHop {
  size_t candidate = 0;  // index into the candidates given
  uint32_t block_begin = 0, block_end = 0;
};

struct Route {
  std::vector<RouteHop> hops;
  double cost_s = 0;  // estimated seconds per generated token
};

// Seconds per token for `candidate` running `blocks` blocks, shared with the sessions already open
// on it, plus its backlog through all its blocks (the compute term).
double compute_cost(const Candidate& candidate, uint32_t blocks);

// compute_cost plus the client's round trip to the node: one hop of a Direct route.
double hop_cost(const Candidate& candidate, uint32_t blocks);

// The round trip between the nodes of `a` and `b` (seconds) as routing counts it: their claims,
// bounded by the client's own round trips (see above).
double link_rtt(const Candidate& a, const Candidate& b);

// A throughput claim is the node's own word (its record): a prior, not a measurement. Claims above
// `factor` times the candidates' median claim (the lower median, so one liar among two does not set
// it) count as that, so a record claiming 10^8 tokens/s does not draw every route: such a node
// still gets sessions like a node `factor` times faster, and the load term spreads the rest.
// factor <= 0: no cap.
void cap_claimed_throughput(std::vector<Candidate>& candidates, double factor);

inline constexpr double kMinReputation = 0.05;

// The cheapest route over [0, n_layer) for calls travelling as `topology`. Error: some block has
// no candidate that is not excluded (names the first, and says when only excluded ones serve it).
Result<Route> shortest_route(const std::vector<Candidate>& candidates, uint32_t n_layer, double jitter = 0,
                             std::mt19937_64* rng = nullptr, net::Topology topology = net::Topology::Direct);

}  // namespace omni::swarm
