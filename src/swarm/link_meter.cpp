#include "swarm/link_meter.h"

#include <algorithm>
#include <cmath>

#include "net/peer_address.h"
#include "swarm/probe.h"

namespace omni::swarm {

std::vector<NodeRecord> link_neighbours(const NodeRecord& self, const std::vector<NodeRecord>& others, size_t max,
                                        std::mt19937_64& rng) {
  std::vector<NodeRecord> out;
  for (const auto& o : others) {
    if (o.peer_id == self.peer_id || o.model_id != self.model_id) continue;
    const bool next = o.block_begin <= self.block_end && self.block_end < o.block_end;
    const bool before = self.block_begin <= o.block_end && o.block_end < self.block_end;
    if (next || before) out.push_back(o);
  }
  if (out.size() > max) {
    std::shuffle(out.begin(), out.end(), rng);
    out.resize(max);
  }
  return out;
}

std::vector<LinkRtt> measure_links(const std::vector<NodeRecord>& neighbours, const net::Identity& identity,
                                   uint32_t timeout_ms) {
  std::vector<net::PeerAddress> addresses;
  std::vector<const NodeRecord*> probed;
  for (const auto& r : neighbours) {
    if (r.addresses.empty()) continue;
    auto address = net::parse_peer_address(r.peer_id + "@" + r.addresses.front());
    if (!address) continue;
    addresses.push_back(*address);
    probed.push_back(&r);
  }
  const auto probes = probe_nodes(addresses, identity, timeout_ms);
  std::vector<LinkRtt> out;
  for (size_t i = 0; i < probed.size(); ++i)
    out.push_back({probed[i]->peer_id, std::min(probes[i].ok ? probes[i].rtt_s * 1000.0 : double(timeout_ms),
                                                kMaxLinkRttMs)});
  return out;
}

bool links_changed(const std::vector<LinkRtt>& before, const std::vector<LinkRtt>& after) {
  if (before.size() != after.size()) return true;
  for (size_t i = 0; i < before.size(); ++i) {
    if (before[i].peer_id != after[i].peer_id) return true;
    const double a = before[i].rtt_ms, b = after[i].rtt_ms;
    if (std::abs(a - b) > std::max(1.0, 0.25 * std::max(a, b))) return true;
  }
  return false;
}

}  // namespace omni::swarm
