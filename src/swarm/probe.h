// Probing nodes: connect to each (TLS, peer id checked, hello), ask for its info once more and time
// that call, so the router gets a round-trip time and a node's live state (sessions in use), and
// dead nodes are found before a route goes through them.
//
// Threads: runs its own kj event loop on the calling thread, so it must not be called while that
// thread has another one (e.g. while a remote pipeline from src/net lives on it).
#pragma once

#include <cstdint>
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
};

// Probes all `peers` at once; one result per peer, in order. Never throws.
std::vector<ProbeResult> probe_nodes(const std::vector<net::PeerAddress>& peers, const net::Identity& identity,
                                     uint32_t timeout_ms);

}  // namespace omni::swarm
