// Routing: the chain of nodes a client's session uses, chosen from the directory's records.
//
// Each candidate node serving [b, e) offers hops from any block p in [b, e) to e (a session may run
// a node's blocks from p on; ending before e would only add a hop later). A hop costs the node's
// round-trip time plus its compute, (e - p) / block_tps seconds per token for one session, times
// (1 + the sessions already open on it): a node runs one forward pass at a time, so a token waits
// for the other sessions' passes (an upper bound: open sessions are not always busy). The route is
// the cheapest path from block 0 to n_layer over those hops (a DP over block positions; hops only
// go forward). A node also reports the tokens waiting for its compute (NodeInfo.queuedTokens); a
// hop adds the time that backlog takes through the node's blocks, so a saturated node (one client
// flooding it with big batches) is avoided while a replica has room. It is a penalty rather than
// a wait: the node serves clients in turn, so a new call waits for about one slice per busy client,
// not for the whole backlog.
//
// Sessions spread over replicas two ways: the load term above (a client sees the sessions other
// clients opened before it probed, so a later session prefers an idle replica, and a replica k
// times faster takes about k times the sessions), and, with `jitter` > 0, each candidate's cost
// scaled by a random factor in [1, 1 + jitter] drawn per call, so clients that probe at the same
// moment (and see the same loads) do not all pick the same near-equal replica. A replica more
// than 1 + jitter cheaper still wins every time. A session keeps its chain while it works (the
// failover pipeline re-routes only when a node fails).
// Pure functions: no I/O.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "base/result.h"

namespace omni::swarm {

struct Candidate {
  std::string peer_id;
  std::string address;  // "host:port"
  uint32_t block_begin = 0, block_end = 0;
  double block_tps = 0;  // tokens/s through one block; <= 0 counts as very slow
  double rtt_s = 0;      // measured round trip to the node
  uint32_t active_sessions = 0;  // sessions open on the node now (its probe answer)
  uint64_t queued_tokens = 0;    // tokens waiting for compute on the node now (its probe answer)
};

struct RouteHop {
  size_t candidate = 0;  // index into the candidates given
  uint32_t block_begin = 0, block_end = 0;
};

struct Route {
  std::vector<RouteHop> hops;
  double cost_s = 0;  // estimated seconds per generated token
};

// Seconds per token for `candidate` running `blocks` blocks (plus its round trip), shared with the
// sessions already open on it, plus its backlog through all its blocks.
double hop_cost(const Candidate& candidate, uint32_t blocks);

// A throughput claim is the node's own word (its record): a prior, not a measurement. Claims above
// `factor` times the candidates' median claim (the lower median, so one liar among two does not set
// it) count as that, so a record claiming 10^8 tokens/s does not draw every route: such a node
// still gets sessions like a node `factor` times faster, and the load term spreads the rest.
// factor <= 0: no cap.
void cap_claimed_throughput(std::vector<Candidate>& candidates, double factor);

// The cheapest route over [0, n_layer). Error: some block has no candidate (names the first).
Result<Route> shortest_route(const std::vector<Candidate>& candidates, uint32_t n_layer, double jitter = 0,
                             std::mt19937_64* rng = nullptr);

}  // namespace omni::swarm
