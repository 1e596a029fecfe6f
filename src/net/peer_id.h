// Peer ids: the printable name of a node's (or client's) Ed25519 public key.
//
// id = base32(multihash(sha2-256, raw 32-byte public key)), i.e. base32 (RFC 4648 alphabet,
// lower case, no padding) of the 34 bytes 0x12 0x20 || sha256(public key): 55 characters, always
// starting with "ci". Anyone holding a key can compute its id; ids are compared as strings.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace omni::net {

// The id of an Ed25519 public key (32 raw bytes).
std::string peer_id_from_public_key(std::span<const uint8_t, 32> public_key);

// True when `text` has the shape of a peer id (length and alphabet); says nothing about a key.
bool is_peer_id(std::string_view text);

}  // namespace omni::net
