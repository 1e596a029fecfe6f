// Checks of every field of the node protocol's requests (proto/node.capnp) before anything acts on
// them, turning a capnp reader into a plain, trusted C++ request or an Error naming the field.
//
// Pure functions (no I/O, no engine), so malformed messages are unit-tested without a network.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/hidden_codec.h"
#include "net/peer_address.h"
#include "proto/node.capnp.h"

namespace omni::net {

inline constexpr uint32_t kMaxHops = 64;
// A ring token (OpenParams.ringToken, Node.attachSink) is this many random bytes: enough not to be
// guessed, bounded so that a peer cannot make the node store much.
inline constexpr size_t kMinRingTokenBytes = 16, kMaxRingTokenBytes = 64;

struct NodeLimits {
  uint32_t block_begin = 0, block_end = 0;  // the node's range
  uint32_t n_layer = 0;
  uint32_t max_length = 0;
};

struct HopRequest {
  PeerAddress address;  // peer id always set
  uint32_t block_begin = 0, block_end = 0;
};

struct OpenRequest {
  uint32_t block_begin = 0, block_end = 0, max_length = 0;
  HiddenEncoding encoding = HiddenEncoding::F16;
  std::vector<HopRequest> downstream;
  std::string ring_token;  // empty: not a ring; else kMinRingTokenBytes..kMaxRingTokenBytes bytes
};

Result<OpenRequest> validate_open(proto::OpenParams::Reader params, const NodeLimits& limits);

// A ring token's bytes, or an Error saying why they cannot be one (length).
Result<std::string> validate_ring_token(capnp::Data::Reader token);

struct SessionLimits {
  uint32_t block_begin = 0;  // the session's first block: 0 takes tokens, else hidden states
  uint32_t n_embd = 0, n_vocab = 0;
  uint32_t max_batch_tokens = 0;
};

struct ForwardRequest {
  std::vector<int32_t> tokens;     // block 0 sessions
  std::vector<uint8_t> hidden;     // others: encoded, size already checked
  HiddenEncoding encoding = HiddenEncoding::F16;
  uint32_t n_tokens = 0;
  int64_t start_position = -1;     // -1: continue; else 0 <= start (checked against n_past later)
  uint32_t output_last = 0;        // 1..n_tokens (0 in the message means n_tokens)
  uint64_t call_id = 0;            // ring mode: the client's number for the call
  std::vector<uint64_t> upstream_micros;  // earlier hops' compute, at most kMaxHops entries
  bool per_token_sums = false;     // every row with the bits of a one-row call
};

Result<ForwardRequest> validate_forward(proto::ForwardInput::Reader input, const SessionLimits& limits);

// A received HiddenStates (e.g. a node's reply) as (encoding, rows) after checking its shape.
Result<HiddenEncoding> validate_hidden(proto::HiddenStates::Reader hidden, uint32_t n_embd, uint32_t max_rows);

}  // namespace omni::net
