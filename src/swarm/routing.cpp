#include "swarm/routing.h"

#include <algorithm>
#include <limits>

namespace omni::swarm {

double hop_cost(const Candidate& c, uint32_t blocks) {
  // A node that reports no throughput is not excluded (it may be the only one), just avoided.
  const double tps = c.block_tps > 0 ? c.block_tps : 1e-3;
  const double backlog_s = static_cast<double>(c.queued_tokens) * (c.block_end - c.block_begin) / tps;
  return c.rtt_s + blocks / tps * (1.0 + c.active_sessions) + backlog_s;
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
                             std::mt19937_64* rng) {
  std::vector<double> scale(candidates.size(), 1.0);
  if (jitter > 0 && rng) {
    std::uniform_real_distribution<double> u(1.0, 1.0 + jitter);
    for (auto& s : scale) s = u(*rng);
  }
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<double> dist(n_layer + 1, kInf);
  std::vector<RouteHop> via(n_layer + 1);
  dist[0] = 0;
  for (uint32_t p = 0; p < n_layer; ++p) {
    if (dist[p] == kInf) continue;  // inside some hop: no route stops here
    for (size_t i = 0; i < candidates.size(); ++i) {
      const Candidate& c = candidates[i];
      if (c.block_begin > p || p >= c.block_end || c.block_end > n_layer) continue;
      const double d = dist[p] + hop_cost(c, c.block_end - p) * scale[i];
      if (d < dist[c.block_end]) {
        dist[c.block_end] = d;
        via[c.block_end] = {i, p, c.block_end};
      }
    }
  }
  if (dist[n_layer] == kInf) {
    // Unreachable end means some block has no candidate at all: name the first.
    for (uint32_t b = 0; b < n_layer; ++b) {
      bool served = false;
      for (const auto& c : candidates) served = served || (c.block_begin <= b && b < c.block_end);
      if (!served)
        return Error{ErrorCode::Unavailable,
                     "no node in the swarm serves block " + std::to_string(b) + " of " + std::to_string(n_layer)};
    }
    return Error{ErrorCode::Unavailable, "no route covers the model's blocks"};
  }
  Route route;
  for (uint32_t at = n_layer; at > 0; at = via[at].block_begin) route.hops.insert(route.hops.begin(), via[at]);
  for (const auto& h : route.hops) route.cost_s += hop_cost(candidates[h.candidate], h.block_end - h.block_begin);
  return route;
}

}  // namespace omni::swarm
