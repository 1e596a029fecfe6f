// Cid: a CIDv1 naming bytes by their SHA-256, as IPFS writes it.
//
// Binary form: varint(1) varint(codec) 0x12 0x20 <32-byte sha2-256 digest>. Text form: multibase
// base32 (RFC 4648 alphabet, lower case, no padding) with the 'b' prefix, so a raw (0x55) CID reads
// "bafkrei..." exactly like `ipfs add --cid-version 1 --raw-leaves`. Everything in the store — shards
// and manifests alike — is named with the raw codec: a CID says which bytes, not how to read them
// (a manifest is recognised by parsing it; see docs/design.md).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "store/hash.h"

namespace omni::store {

inline constexpr uint64_t kCodecRaw = 0x55;
inline constexpr uint8_t kMultihashSha256 = 0x12;

struct Cid {
  uint64_t codec = kCodecRaw;
  Digest digest{};

  // The raw CID of `bytes`.
  static Cid of(std::span<const uint8_t> bytes);
  static Cid from_digest(const Digest& d) { return Cid{kCodecRaw, d}; }
  // Parses the text form; errors say what is wrong (prefix, alphabet, version, hash function).
  static Result<Cid> parse(std::string_view text);
  static Result<Cid> from_binary(std::span<const uint8_t> bytes);

  std::string to_string() const;
  std::vector<uint8_t> to_binary() const;

  bool operator==(const Cid&) const = default;
  auto operator<=>(const Cid&) const = default;
};

}  // namespace omni::store
