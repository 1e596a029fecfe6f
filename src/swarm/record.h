// NodeRecord: what a node tells the swarm about itself (where it is, which blocks of which model it
// serves, how fast, how much room it has), and the signed envelope it travels in.
//
// Trust: a record is only believed when its Ed25519 signature verifies under the public key it
// carries AND that key's peer id (src/net/peer_id.h) is the record's peer id. So a record cannot be
// forged for someone else's id, and an edited record fails the signature. A node can still lie
// about itself (its throughput, its range); clients check the range and model again in the node
// handshake, and route around nodes that fail.
//
// Envelope (all integers little-endian):
//   "OMNIREC1" | u32 payload length | payload (JSON, see record.cpp) | 32-byte public key | 64-byte
//   signature over "omni-swarm-record-v1\0" || payload
// At most kMaxRecordBytes in all; anything else is refused.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/identity.h"
#include "store/cid.h"

namespace omni::swarm {

inline constexpr size_t kMaxRecordBytes = 4096;
// Node-to-node round trips a record may carry (link_meter.h), and the largest believable one.
inline constexpr size_t kMaxLinks = 16;
inline constexpr double kMaxLinkRttMs = 60000;
// Longest validity a reader accepts: a record that claims more is refused (a node that stops
// refreshing must drop out within this time, whatever it wrote).
inline constexpr int64_t kMaxRecordTtlMs = 3600 * 1000;

// A round trip the node measured to another node of its model (a claim: routing.h bounds it).
struct LinkRtt {
  std::string peer_id;
  double rtt_ms = 0;
  bool operator==(const LinkRtt&) const = default;
};

struct NodeRecord {
  std::string peer_id;
  std::vector<std::string> addresses;  // "host:port" where the node protocol listens, or
                                       // "relay:host:port": reached through that relay
  std::string model_id;                // model_key() of the model served
  std::string model_name;              // for people (omni swarm status)
  std::string model_cid;               // the model's CID (store/cid.h) when the node serves it from
                                       // a store, so a client knowing only the swarm can fetch it;
                                       // empty otherwise (optional in the payload)
  uint32_t n_layer = 0;
  uint32_t block_begin = 0, block_end = 0;  // [begin, end) served
  double block_tps = 0;      // tokens/s this node runs through ONE block (measured at start)
  uint32_t free_sessions = 0;
  uint32_t max_sessions = 0;
  uint32_t protocol_version = 0;
  int64_t issued_ms = 0, expires_ms = 0;  // Unix time, milliseconds
  uint64_t seq = 0;  // grows with each record the node issues: the highest wins (next_seq)
  // Round trips to the nodes it may hand a token to or take one from (at most kMaxLinks, distinct
  // peers, not itself, each in [0, kMaxLinkRttMs]); absent from records of older nodes.
  std::vector<LinkRtt> links;

  // Tokens/s the node pushes through its whole range (what one of its blocks contributes to the
  // swarm's throughput of that block).
  double span_tps() const { return block_end > block_begin ? block_tps / (block_end - block_begin) : 0; }
};

// The directory key of a model: hex of the digest of its manifest CID (net::identify_model), which
// covers every byte of its weights: two nodes share a key only for the same weights, and a node
// serving a tampered copy announces under another model's key.
std::string model_key(const store::Cid& model_cid);

// The CID text (store/cid.h) whose digest `key` (a model_key) is; empty for a malformed key.
std::string model_cid_of_key(const std::string& key);

// Serializes and signs `record` with `identity` (whose peer id must be record.peer_id).
Result<std::vector<uint8_t>> sign_record(const NodeRecord& record, const net::Identity& identity);

// Checks the envelope, the signature, the peer id and the fields; `now_ms` (Unix ms) rejects
// expired records and ones issued too far in the future. Errors say which check failed.
Result<NodeRecord> verify_record(std::span<const uint8_t> bytes, int64_t now_ms);

int64_t unix_now_ms();

// The sequence number of a node's next record: max(previous + 1, now_ms). A hybrid clock: it never
// goes down within a process (even when the wall clock steps back), and a restarted node, whose
// `previous` is 0 again, starts from its wall clock, so its records supersede those of its dead
// incarnation (whose seqs were at most its last issue time plus a few) as soon as they appear.
// Only the node's own clock matters: both records come from it. If it stepped back across a
// restart by more than the restart took, the old records win until they expire (at most the TTL).
uint64_t next_seq(uint64_t previous, int64_t now_ms);

// Whether `a` supersedes `b` (two records of one peer): the higher seq; equal seqs, the later
// issue time. lookup() and the swarm client both keep the record that supersedes the others.
bool supersedes(const NodeRecord& a, const NodeRecord& b);

}  // namespace omni::swarm
