// Link measurement: a node's round trips to the nodes a route may put next to it, published in its
// record (NodeRecord::links) so that clients can cost the node-to-node part of a chain or ring
// (routing.h). Measured, not estimated with network coordinates: see docs/design.md, "Node-to-node
// latency".
//
// A node measures its neighbours in route order: the nodes it may hand a token to (serving its last
// block + 1) and those it may take one from (whose range ends within its own). With replicas r per
// stage that is about 2r nodes, not the whole swarm; above kMaxLinks a random sample, drawn afresh
// each round.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "net/identity.h"
#include "swarm/record.h"

namespace omni::swarm {

// The records of `others` that a route may place right before or right after `self` (same model,
// not `self`), at most `max` (a random sample of them when more).
std::vector<NodeRecord> link_neighbours(const NodeRecord& self, const std::vector<NodeRecord>& others, size_t max,
                                        std::mt19937_64& rng);

// One info() round trip to each record's first address, all at once. A node that does not answer
// within `timeout_ms` (or refuses) is reported at `timeout_ms`: clients then take that link as slow,
// whatever the other end claims (routing.h uses the larger of both ends' figures).
std::vector<LinkRtt> measure_links(const std::vector<NodeRecord>& neighbours, const net::Identity& identity,
                                   uint32_t timeout_ms);

// Whether a new measurement is worth announcing at once rather than with the next refresh (every
// announcement is a DHT value of its own): another set of peers, or a figure that moved by more
// than 25 % and 1 ms. Both sorted by peer id.
bool links_changed(const std::vector<LinkRtt>& before, const std::vector<LinkRtt>& after);

}  // namespace omni::swarm
