#include "store/cid.h"

#include "base/parse.h"

namespace omni::store {
namespace {

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

// Reads an unsigned varint (at most 9 bytes, as multiformats caps them); nullopt-like false on error.
bool get_varint(std::span<const uint8_t>& in, uint64_t& v) {
  v = 0;
  for (int i = 0; i < 9; ++i) {
    if (in.empty()) return false;
    uint8_t b = in[0];
    in = in.subspan(1);
    v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) return true;
  }
  return false;
}

}  // namespace

Cid Cid::of(std::span<const uint8_t> bytes) { return from_digest(sha256(bytes)); }

std::vector<uint8_t> Cid::to_binary() const {
  std::vector<uint8_t> out;
  put_varint(out, 1);
  put_varint(out, codec);
  out.push_back(kMultihashSha256);
  out.push_back(32);
  out.insert(out.end(), digest.begin(), digest.end());
  return out;
}

std::string Cid::to_string() const { return "b" + base32_encode(to_binary()); }

Result<Cid> Cid::from_binary(std::span<const uint8_t> in) {
  uint64_t version = 0, codec = 0, hash_fn = 0, hash_len = 0;
  if (!get_varint(in, version) || version != 1) return Error{ErrorCode::InvalidArgument, "CID: not a CIDv1"};
  if (!get_varint(in, codec)) return Error{ErrorCode::InvalidArgument, "CID: truncated codec"};
  if (!get_varint(in, hash_fn) || hash_fn != kMultihashSha256)
    return Error{ErrorCode::InvalidArgument, "CID: hash function is not sha2-256"};
  if (!get_varint(in, hash_len) || hash_len != 32)
    return Error{ErrorCode::InvalidArgument, "CID: sha2-256 digest length is not 32"};
  if (in.size() != 32)
    return Error{ErrorCode::InvalidArgument, "CID: digest has " + std::to_string(in.size()) + " bytes, expected 32"};
  Cid c;
  c.codec = codec;
  std::copy(in.begin(), in.end(), c.digest.begin());
  return c;
}

Result<Cid> Cid::parse(std::string_view text) {
  if (text.empty() || text[0] != 'b')
    return Error{ErrorCode::InvalidArgument, "CID '" + std::string(text) + "': expected multibase base32 (a 'b' prefix)"};
  auto bytes = base32_decode(text.substr(1));
  if (!bytes) return Error{ErrorCode::InvalidArgument, "CID '" + std::string(text) + "': " + bytes.error().message};
  auto c = from_binary(*bytes);
  if (!c) return c.error().with_context("'" + std::string(text) + "'");
  return c;
}

}  // namespace omni::store
