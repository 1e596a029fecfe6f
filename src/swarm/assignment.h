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
#include <functional>
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

// Reputation in block assignment (reputation.h): each record's throughput scaled by the score this
// node gives its peer, records scoring 0 (excluded peers) dropped. A joining or rebalancing node
// weighs the others' records by it, so blocks served only by peers that fail, stall or run slower
// than they claim look under-served and draw new replicas; an excluded peer's blocks count as
// unserved. Settling (settle_span) does not use it: nodes must reach the same answer there, and
// each keeps its own reputation.
std::vector<NodeRecord> weigh_by_reputation(std::vector<NodeRecord> records,
                                            const std::function<double(const std::string&)>& score);

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

// What serving blocks [range.begin, range.end) takes: their tensors, the embeddings when the range
// starts at block 0, and the KV budget `kv_bytes`.
uint64_t range_bytes(const ModelFootprint& footprint, Span range, uint64_t kv_bytes);

// Whether `range` fits in `memory_bytes` (a node given its blocks, under --max-memory-mib).
// Error ResourceExhausted naming what the range needs and the cap.
Result<void> check_range_fits(const ModelFootprint& footprint, Span range, uint64_t kv_bytes, uint64_t memory_bytes);

// Rebalancing (a node that chose its own range re-checks the swarm now and then; rebalance.h):
// whether `self` (its current record: range, block_tps, n_layer) should move its range, of the same
// length, given the other nodes' records (any record of self's peer id among them is ignored).
// The rule, after Petals:
//   - the candidate is choose_span() over the others' coverage (the best place for self's range);
//   - blocks_unserved counts the blocks nobody serves, min_tps the lowest per-block throughput
//     (0 while a block is unserved), both now (self where it is) and after (self at the candidate);
//   - move when the candidate differs from the current range and either fewer blocks are unserved
//     after, or none is unserved either way and min_after > factor * min_now (factor e.g. 1.25:
//     the weakest block gains at least 25 %, so nodes do not flap between near-equal choices);
//   - never when self is the only server of a block it would leave (the others' records show no
//     replica): moving would open a gap, whatever else improves.
struct Move {
  bool move = false;
  Span to;                       // the candidate range
  double min_now = 0, min_after = 0;
  uint32_t unserved_now = 0, unserved_after = 0;
  std::string reason;            // for the node's log: why it moves or stays
};
Move consider_move(const std::vector<NodeRecord>& others, const NodeRecord& self, double factor);

// Settling after a join (nodes that joined at about the same time often chose the same range from
// the same picture). Every node orders the nodes it sees by join_priority (lower first, ties by peer
// id) and replays the choice in that order, so nodes with the same picture reach the same answer:
//   - a node is kept where it is when one of its blocks is not yet served by the nodes kept before it;
//   - the others (every block they serve is already served by a node of lower priority) are
//     redundant; while blocks are unserved, each redundant node in turn takes choose_span() over the
//     coverage so far, when that range serves a block nobody serves yet, and stays otherwise.
// Returns where `self` (its current record) belongs given the others' records (those of another
// n_layer or with an invalid range are ignored); self's range when it stays. Only blocks nobody
// serves make a node move here; throughput balance is consider_move()'s business.
uint64_t join_priority(const std::string& peer_id, const std::string& model_id);
Span settle_span(const std::vector<NodeRecord>& others, const NodeRecord& self);

}  // namespace omni::swarm
