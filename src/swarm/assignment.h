// Block assignment for a node that joins without --blocks: how many blocks fit in its memory, and
// which contiguous range helps the swarm most (see docs/design.md, "Swarm").
//
// The rule (after Petals): the swarm's throughput at block i is the sum, over the nodes serving i,
// of what each pushes through its whole range (block_tps / range length). A joining node of length
// L takes the start s that maximizes the minimum of that throughput over all blocks once it is
// added; ties go to the range whose blocks have the fewest replicas now, then to the lowest s.
// Pure functions: no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "swarm/record.h"

namespace omni::swarm {

struct Coverage {
  std::vector<double> throughput;  // per block, tokens/s
  std::vector<uint32_t> replicas;  // per block, nodes serving it
};

// The coverage `records` give a model of n_layer blocks (records outside it are ignored).
Coverage coverage_of(const std::vector<NodeRecord>& records, uint32_t n_layer);

struct Span {
  uint32_t begin = 0, end = 0;
};

// The best start for a range of `length` blocks adding `span_tps` tokens/s to each of its blocks.
// `length` is clamped to [1, n_layer].
Span choose_span(const Coverage& coverage, uint32_t length, double span_tps);

// How much a node's blocks need: bytes of each block's tensors, plus the parts that come with
// block 0 (token embeddings).
struct ModelFootprint {
  std::vector<uint64_t> block_bytes;
  uint64_t embedding_bytes = 0;
};

// The most blocks (at most n_layer) that fit in `memory_bytes` next to a KV budget of `kv_bytes`,
// counting the heaviest window of that many blocks and the embeddings (a range may start at 0).
// Error (the reason a node refuses to join): not even one block fits.
Result<uint32_t> blocks_that_fit(const ModelFootprint& footprint, uint64_t kv_bytes, uint64_t memory_bytes);

// Rebalancing: whether a node now serving `current` should move to the span choose_span() picks
// once its own contribution is taken out: only when that raises the swarm's minimum throughput by
// more than `margin` (a fraction, e.g. 0.2 = 20 %), so nodes do not flap between equal choices.
struct Move {
  bool move = false;
  Span to;
  double min_now = 0, min_after = 0;
};
Move consider_move(const std::vector<NodeRecord>& records, const std::string& self_peer_id, double margin);

}  // namespace omni::swarm
