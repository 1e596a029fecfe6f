#include "net/peer_id.h"

#include <openssl/sha.h>

#include <array>

#include "base/parse.h"

namespace omni::net {

std::string peer_id_from_public_key(std::span<const uint8_t, 32> public_key) {
  // Multihash framing (code 0x12 = sha2-256, length 0x20) so the id format can name other hashes later.
  std::array<uint8_t, 34> multihash{0x12, 0x20};
  SHA256(public_key.data(), public_key.size(), multihash.data() + 2);
  return base32_encode(multihash);
}

bool is_peer_id(std::string_view text) {
  if (text.size() != 55 || !text.starts_with("ci")) return false;
  for (char c : text)
    if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'))) return false;
  return true;
}

}  // namespace omni::net
