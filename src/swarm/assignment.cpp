#include "swarm/assignment.h"

#include <algorithm>
#include <cstdio>
#include <limits>

namespace omni::swarm {

Coverage coverage_of(const std::vector<NodeRecord>& records, uint32_t n_layer) {
  Coverage c{std::vector<double>(n_layer, 0.0), std::vector<uint32_t>(n_layer, 0)};
  for (const auto& r : records) {
    if (r.block_begin >= r.block_end || r.block_end > n_layer) continue;
    for (uint32_t i = r.block_begin; i < r.block_end; ++i) {
      c.throughput[i] += r.span_tps();
      c.replicas[i] += 1;
    }
  }
  return c;
}

std::vector<NodeRecord> weigh_by_reputation(std::vector<NodeRecord> records,
                                            const std::function<double(const std::string&)>& score) {
  std::vector<NodeRecord> out;
  for (auto& r : records) {
    const double s = score(r.peer_id);
    if (!(s > 0)) continue;
    r.block_tps *= std::min(s, 1.0);
    out.push_back(std::move(r));
  }
  return out;
}

Span choose_span(const Coverage& coverage, uint32_t length, double span_tps) {
  const auto n = static_cast<uint32_t>(coverage.throughput.size());
  if (n == 0) return {};
  length = std::clamp<uint32_t>(length, 1, n);
  // Minimum outside the candidate range comes from prefix/suffix minima; inside, from the range.
  std::vector<double> prefix_min(n + 1, std::numeric_limits<double>::infinity()), suffix_min(n + 1, prefix_min[0]);
  for (uint32_t i = 0; i < n; ++i) prefix_min[i + 1] = std::min(prefix_min[i], coverage.throughput[i]);
  for (uint32_t i = n; i-- > 0;) suffix_min[i] = std::min(suffix_min[i + 1], coverage.throughput[i]);
  Span best{0, length};
  double best_min = -1;
  uint64_t best_replicas = 0;
  for (uint32_t s = 0; s + length <= n; ++s) {
    double m = std::min(prefix_min[s], suffix_min[s + length]);
    uint64_t replicas = 0;
    for (uint32_t i = s; i < s + length; ++i) {
      m = std::min(m, coverage.throughput[i] + span_tps);
      replicas += coverage.replicas[i];
    }
    if (m > best_min || (m == best_min && replicas < best_replicas)) {
      best = {s, s + length};
      best_min = m;
      best_replicas = replicas;
    }
  }
  return best;
}

Result<uint32_t> blocks_that_fit(const ModelFootprint& footprint, uint64_t kv_bytes, uint64_t memory_bytes) {
  const auto n = static_cast<uint32_t>(footprint.block_bytes.size());
  if (n == 0) return Error{ErrorCode::InvalidArgument, "the model has no blocks"};
  uint32_t fit = 0;
  for (uint32_t k = 1; k <= n; ++k) {
    uint64_t window = 0, heaviest = 0;
    for (uint32_t i = 0; i < n; ++i) {
      window += footprint.block_bytes[i];
      if (i >= k) window -= footprint.block_bytes[i - k];
      if (i + 1 >= k) heaviest = std::max(heaviest, window);
    }
    if (heaviest + footprint.embedding_bytes + kv_bytes > memory_bytes) break;
    fit = k;
  }
  if (fit == 0) {
    const uint64_t one = *std::max_element(footprint.block_bytes.begin(), footprint.block_bytes.end());
    return Error{ErrorCode::ResourceExhausted, "not enough memory to serve even one block: it needs " +
                 std::to_string((one + footprint.embedding_bytes) >> 20) + " MiB of weights + " +
                 std::to_string(kv_bytes >> 20) + " MiB of KV budget, but only " +
                 std::to_string(memory_bytes >> 20) + " MiB are available (--max-memory-mib, --max-kv-mib)"};
  }
  return fit;
}

uint64_t range_bytes(const ModelFootprint& footprint, Span range, uint64_t kv_bytes) {
  uint64_t bytes = kv_bytes + (range.begin == 0 ? footprint.embedding_bytes : 0);
  for (uint32_t b = range.begin; b < range.end && b < footprint.block_bytes.size(); ++b) bytes += footprint.block_bytes[b];
  return bytes;
}

Result<void> check_range_fits(const ModelFootprint& footprint, Span range, uint64_t kv_bytes, uint64_t memory_bytes) {
  const uint64_t need = range_bytes(footprint, range, kv_bytes);
  if (need <= memory_bytes) return {};
  const auto mib = [](uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20); };
  return Error{ErrorCode::ResourceExhausted,
               "blocks " + std::to_string(range.begin) + ":" + std::to_string(range.end) + " need " +
                   mib(need - kv_bytes) + " MiB of weights + " + mib(kv_bytes) + " MiB of KV budget, over the " +
                   mib(memory_bytes) + " MiB of --max-memory-mib (serve fewer blocks, or lower --max-kv-mib)"};
}

Move consider_move(const std::vector<NodeRecord>& others, const NodeRecord& self, double factor) {
  Move m;
  const uint32_t n = self.n_layer;
  const uint32_t length = self.block_end - self.block_begin;
  if (n == 0 || self.block_begin >= self.block_end || self.block_end > n) {
    m.reason = "no valid range";
    return m;
  }
  std::vector<NodeRecord> rest;
  for (const auto& r : others)
    if (r.peer_id != self.peer_id && r.n_layer == n) rest.push_back(r);
  const Coverage without = coverage_of(rest, n);
  const double tps = self.span_tps();
  auto with_self_at = [&](uint32_t begin) {
    Coverage c = without;
    for (uint32_t i = begin; i < begin + length; ++i) {
      c.throughput[i] += tps;
      c.replicas[i] += 1;
    }
    return c;
  };
  auto measure = [](const Coverage& c, double& min_tps, uint32_t& unserved) {
    min_tps = *std::min_element(c.throughput.begin(), c.throughput.end());
    unserved = static_cast<uint32_t>(std::count(c.replicas.begin(), c.replicas.end(), 0u));
  };
  measure(with_self_at(self.block_begin), m.min_now, m.unserved_now);
  m.to = choose_span(without, length, tps);
  measure(with_self_at(m.to.begin), m.min_after, m.unserved_after);
  char line[200];
  auto say = [&](const char* what) {
    std::snprintf(line, sizeof line, "%s (blocks %u:%u -> %u:%u; weakest block %.1f -> %.1f tokens/s; unserved %u -> %u)",
                  what, self.block_begin, self.block_end, m.to.begin, m.to.end, m.min_now, m.min_after,
                  m.unserved_now, m.unserved_after);
    m.reason = line;
  };
  if (m.to.begin == self.block_begin) {
    say("stays: already at the best range");
    return m;
  }
  for (uint32_t i = self.block_begin; i < self.block_end; ++i)
    if (without.replicas[i] == 0 && (i < m.to.begin || i >= m.to.end)) {
      say("stays: the only server of a block it would leave");
      return m;
    }
  if (m.unserved_after < m.unserved_now) {
    m.move = true;
    say("moves: fewer unserved blocks");
  } else if (m.unserved_now == 0 && m.unserved_after == 0 && m.min_after > factor * m.min_now) {
    m.move = true;
    say("moves: the weakest block gains more than the margin");
  } else {
    say("stays: no clear gain");
  }
  return m;
}

uint64_t join_priority(const std::string& peer_id, const std::string& model_id) {
  // FNV-1a 64: stable across processes and builds (std::hash is not promised to be).
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix(peer_id);
  mix(std::string(1, '\0'));
  mix(model_id);
  return h;
}

Span settle_span(const std::vector<NodeRecord>& others, const NodeRecord& self) {
  const Span stay{self.block_begin, self.block_end};
  const uint32_t n = self.n_layer;
  if (n == 0 || self.block_begin >= self.block_end || self.block_end > n) return stay;
  std::vector<const NodeRecord*> nodes{&self};
  for (const auto& r : others)
    if (r.peer_id != self.peer_id && r.n_layer == n && r.block_begin < r.block_end && r.block_end <= n)
      nodes.push_back(&r);
  auto key = [](const NodeRecord* r) { return std::make_pair(join_priority(r->peer_id, r->model_id), r->peer_id); };
  std::sort(nodes.begin(), nodes.end(), [&](const NodeRecord* a, const NodeRecord* b) { return key(a) < key(b); });

  Coverage kept{std::vector<double>(n, 0.0), std::vector<uint32_t>(n, 0)};
  auto add = [&kept](uint32_t begin, uint32_t end, double span_tps) {
    for (uint32_t i = begin; i < end; ++i) {
      kept.throughput[i] += span_tps;
      kept.replicas[i] += 1;
    }
  };
  auto serves_a_gap = [&kept](uint32_t begin, uint32_t end) {
    for (uint32_t i = begin; i < end; ++i)
      if (kept.replicas[i] == 0) return true;
    return false;
  };
  std::vector<const NodeRecord*> redundant;
  for (const NodeRecord* r : nodes) {
    if (serves_a_gap(r->block_begin, r->block_end))
      add(r->block_begin, r->block_end, r->span_tps());
    else
      redundant.push_back(r);
  }
  for (const NodeRecord* r : redundant) {
    const uint32_t length = r->block_end - r->block_begin;
    Span to{r->block_begin, r->block_end};
    if (serves_a_gap(0, n)) {
      const Span candidate = choose_span(kept, length, r->span_tps());
      if (serves_a_gap(candidate.begin, candidate.end)) to = candidate;
    }
    if (r == &self) return to;
    add(to.begin, to.end, r->span_tps());
  }
  return stay;
}

}  // namespace omni::swarm
