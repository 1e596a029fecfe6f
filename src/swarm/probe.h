// Probing nodes: connect to each (TLS, peer id checked, hello), ask for its info once more and time
// that call, so the router gets a round-trip time and a node's live state (sessions in use), and
// dead nodes are found before a route goes through them.
//
// A stalled node (alive, not answering) holds a probe until its timeout; a caller that only needs
// some answers (enough to cover a model) can stop early with `enough`.
//
// Threads: runs its own kj event loop on the calling thread, so it must not be called while that
// thread has another one (e.g. while a remote pipeline from src/net lives on it).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "net/identity.h"
#include "net/node_info.h"
#include "net/peer_address.h"

namespace omni::swarm {

struct ProbeResult {
  bool ok = false;
  double rtt_s = 0;            // one info() round trip on the open connection
  net::NodeDescription info;   // as the node reports it now
  std::string error;           // when !ok: why (refused, timed out, wrong id, ...)
  bool cut_short = false;      // !ok because probing stopped early (`enough`), not because it failed
};

// Probes all `peers` at once; one result per peer, in order. Never throws. With `enough`: it is
// asked after each probe ends (with the results so far); once it says yes, probing stops
// `grace_ms` later and the probes still running are cut short.
std::vector<ProbeResult> probe_nodes(const std::vector<net::PeerAddress>& peers, const net::Identity& identity,
                                     uint32_t timeout_ms,
                                     const std::function<bool(const std::vector<ProbeResult>&)>& enough = {},
                                     uint32_t grace_ms = 0);

}  // namespace omni::swarm
