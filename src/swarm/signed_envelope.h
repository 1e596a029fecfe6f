// SignedEnvelope: the signed wrapper that every record a node puts in the directory travels in
// (node records, record.h; provider records, provider_record.h).
//
// Layout (integers little-endian):
//   magic (8 bytes) | u32 payload length | payload | 32-byte Ed25519 public key | 64-byte signature
//   over "<domain>\0" || payload
// The magic and the domain differ per kind of record, so a signature made for one kind never
// verifies as another. open_envelope() believes a payload only when the signature verifies under
// the key it carries; the signer's peer id is that key's (src/net/peer_id.h), and the caller checks
// that the payload names the same peer.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "net/identity.h"

namespace omni::swarm {

struct EnvelopeKind {
  std::string_view magic;   // exactly 8 bytes
  std::string_view domain;  // signed with a terminating NUL
  size_t max_bytes;         // the whole envelope
  std::string_view what;    // for errors: "node record", "provider record"
};

// Signs `payload` with `identity`. Errors: the envelope would exceed kind.max_bytes (InvalidArgument).
Result<std::vector<uint8_t>> seal_envelope(const EnvelopeKind& kind, std::string_view payload,
                                           const net::Identity& identity);

struct OpenedEnvelope {
  std::string payload;
  std::string signer_peer_id;
};

// Checks size, magic, length and signature. Errors: Corruption (malformed), PermissionDenied (bad
// signature).
Result<OpenedEnvelope> open_envelope(const EnvelopeKind& kind, std::span<const uint8_t> bytes);

}  // namespace omni::swarm
