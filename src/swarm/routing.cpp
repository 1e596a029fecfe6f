#include "swarm/routing.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

namespace omni::swarm {
namespace {

std::optional<double> claim_s(const Candidate& from, const Candidate& to) {
  for (const auto& l : from.links)
    if (l.peer_id == to.peer_id) return l.rtt_ms / 1000.0;
  return std::nullopt;
}

// The latency terms of a route, per topology: entering at its first hop, stepping from one hop to
// the next, leaving from its last hop.
struct PathShape {
  net::Topology topology;
  double enter(const Candidate& c) const { return topology == net::Topology::Ring ? c.rtt_s / 2 : c.rtt_s; }
  double step(const Candidate& from, const Candidate& to) const {
    switch (topology) {
      case net::Topology::Direct: return to.rtt_s;
      case net::Topology::Chain: return link_rtt(from, to);
      case net::Topology::Ring: return link_rtt(from, to) / 2;
    }
    return to.rtt_s;
  }
  double leave(const Candidate& c) const { return topology == net::Topology::Ring ? c.rtt_s / 2 : 0; }
};

}  // namespace

double compute_cost(const Candidate& c, uint32_t blocks) {
  // A node that reports no throughput is not excluded (it may be the only one), just avoided.
  const double tps = c.block_tps > 0 ? c.block_tps : 1e-3;
  const double backlog_s = static_cast<double>(c.queued_tokens) * (c.block_end - c.block_begin) / tps;
  return blocks / tps * (1.0 + c.active_sessions) + backlog_s;
}

double hop_cost(const Candidate& c, uint32_t blocks) { return c.rtt_s + compute_cost(c, blocks); }

double link_rtt(const Candidate& a, const Candidate& b) {
  const auto ab = claim_s(a, b), ba = claim_s(b, a);
  constexpr double kMax = kMaxLinkRttMs / 1000.0;
  if (!ab && !ba) return std::max(a.rtt_s, b.rtt_s);
  // Both ends' figures agree enough to stand without the client's check, whose single probe samples
  // a loaded host inflates (and an inflated |x - y| would override an honest 0.1 ms link).
  if (ab && ba) return std::min(std::max(*ab, *ba), kMax);
  return std::clamp(ab ? *ab : *ba, std::abs(a.rtt_s - b.rtt_s), kMax);
}

void cap_claimed_throughput(std::vector<Candidate>& candidates, double factor) {
  if (factor <= 0 || candidates.empty()) return;
  std::vector<double> claims;
  for (const auto& c : candidates) claims.push_back(c.block_tps);
  const auto median = claims.begin() + static_cast<std::ptrdiff_t>((claims.size() - 1) / 2);
  std::nth_element(claims.begin(), median, claims.end());
  if (*median <= 0) return;
  for (auto& c : candidates) c.block_tps = std::min(c.block_tps, factor * *median);
}

Result<Route> shortest_route(const std::vector<Candidate>& candidates, uint32_t n_layer, double jitter,
                             std::mt19937_64* rng, net::Topology topology) {
  const size_t n = candidates.size();
  std::vector<double> scale(n, 1.0);
  if (jitter > 0 && rng) {
    std::uniform_real_distribution<double> u(1.0, 1.0 + jitter);
    for (auto& s : scale) s = u(*rng);
  }
  for (size_t j = 0; j < n; ++j) scale[j] /= std::max(candidates[j].reputation, kMinReputation);
  const PathShape shape{topology};
  auto usable = [&](const Candidate& c) {
    return !c.excluded && c.block_begin < c.block_end && c.block_end <= n_layer;
  };
  // A hop of candidate j always ends at j's block_end, and each node serves one range, so a route
  // prefix is named by its last candidate: dist[j] is the cheapest prefix whose last hop is j's.
  // Hops only go forward: visiting candidates by block_end settles every predecessor first.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return candidates[a].block_end < candidates[b].block_end; });
  constexpr double kInf = std::numeric_limits<double>::infinity();
  constexpr size_t kStart = std::numeric_limits<size_t>::max();
  std::vector<double> dist(n, kInf);
  std::vector<size_t> prev(n, kStart);
  for (size_t j : order) {
    const Candidate& c = candidates[j];
    if (!usable(c)) continue;
    if (c.block_begin == 0) dist[j] = (shape.enter(c) + compute_cost(c, c.block_end)) * scale[j];
    for (size_t i : order) {
      const Candidate& p = candidates[i];
      if (p.block_end >= c.block_end) break;
      if (dist[i] == kInf || p.block_end < c.block_begin) continue;
      const double d = dist[i] + (shape.step(p, c) + compute_cost(c, c.block_end - p.block_end)) * scale[j];
      if (d < dist[j]) {
        dist[j] = d;
        prev[j] = i;
      }
    }
  }
  size_t last = kStart;
  double best = kInf;
  for (size_t j = 0; j < n; ++j)
    if (usable(candidates[j]) && candidates[j].block_end == n_layer && dist[j] < kInf) {
      const double d = dist[j] + shape.leave(candidates[j]);
      if (d < best) best = d, last = j;
    }
  if (last == kStart) {
    // No route means some block has no candidate at all: name the first.
    for (uint32_t b = 0; b < n_layer; ++b) {
      bool served = false, served_by_excluded = false;
      for (const auto& c : candidates) {
        const bool here = c.block_begin <= b && b < c.block_end;
        served = served || (here && !c.excluded);
        served_by_excluded = served_by_excluded || (here && c.excluded);
      }
      if (!served)
        return Error{ErrorCode::Unavailable, "no node in the swarm serves block " + std::to_string(b) + " of " +
                                                 std::to_string(n_layer) +
                                                 (served_by_excluded ? " but nodes excluded as faulty" : "")};
    }
    return Error{ErrorCode::Unavailable, "no route covers the model's blocks"};
  }
  Route route;
  for (size_t at = last; at != kStart; at = prev[at]) {
    const uint32_t begin = prev[at] == kStart ? 0 : candidates[prev[at]].block_end;
    route.hops.insert(route.hops.begin(), RouteHop{at, begin, candidates[at].block_end});
  }
  // The cost without the jitter: what the route is expected to take.
  const auto& hops = route.hops;
  route.cost_s = shape.enter(candidates[hops.front().candidate]) + shape.leave(candidates[hops.back().candidate]);
  for (size_t k = 0; k < hops.size(); ++k) {
    const Candidate& c = candidates[hops[k].candidate];
    route.cost_s += compute_cost(c, hops[k].block_end - hops[k].block_begin);
    if (k > 0) route.cost_s += shape.step(candidates[hops[k - 1].candidate], c);
  }
  return route;
}

}  // namespace omni::swarm
