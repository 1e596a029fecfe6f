#include "swarm/assignment.h"

#include <algorithm>
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
  if (n == 0) return Error{"the model has no blocks"};
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
    return Error{"not enough memory to serve even one block: it needs " +
                 std::to_string((one + footprint.embedding_bytes) >> 20) + " MiB of weights + " +
                 std::to_string(kv_bytes >> 20) + " MiB of KV budget, but only " +
                 std::to_string(memory_bytes >> 20) + " MiB are available (--max-memory-mib, --max-kv-mib)"};
  }
  return fit;
}

Move consider_move(const std::vector<NodeRecord>& records, const std::string& self_peer_id, double margin) {
  Move m;
  const NodeRecord* self = nullptr;
  std::vector<NodeRecord> others;
  for (const auto& r : records) {
    if (r.peer_id == self_peer_id)
      self = &r;
    else
      others.push_back(r);
  }
  if (!self) return m;
  const uint32_t n = self->n_layer;
  auto min_of = [](const Coverage& c) { return *std::min_element(c.throughput.begin(), c.throughput.end()); };
  m.min_now = min_of(coverage_of(records, n));
  const Coverage without = coverage_of(others, n);
  m.to = choose_span(without, self->block_end - self->block_begin, self->span_tps());
  Coverage after = without;
  for (uint32_t i = m.to.begin; i < m.to.end; ++i) after.throughput[i] += self->span_tps();
  m.min_after = min_of(after);
  m.move = (m.to.begin != self->block_begin) && m.min_after > m.min_now * (1 + margin) &&
           m.min_after > m.min_now;
  return m;
}

}  // namespace omni::swarm
