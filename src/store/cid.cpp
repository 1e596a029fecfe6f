#include "store/cid.h"

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

std::string base32_lower(std::span<const uint8_t> bytes) {
  static const char* alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (uint8_t b : bytes) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(buffer << (5 - bits)) & 31];
  return out;
}

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

std::string Cid::to_string() const { return "b" + base32_lower(to_binary()); }

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
    return Error{ErrorCode::InvalidArgument,
                 "CID '" + std::string(text) + "': expected multibase base32 (a 'b' prefix)"};
  std::vector<uint8_t> bytes;
  uint32_t buffer = 0;
  int bits = 0;
  for (char ch : text.substr(1)) {
    int v;
    if (ch >= 'a' && ch <= 'z') v = ch - 'a';
    else if (ch >= '2' && ch <= '7') v = ch - '2' + 26;
    else
      return Error{ErrorCode::InvalidArgument,
                   "CID '" + std::string(text) + "': character '" + std::string(1, ch) + "' is not base32"};
    buffer = (buffer << 5) | static_cast<uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      bytes.push_back(static_cast<uint8_t>(buffer >> (bits - 8)));
      bits -= 8;
    }
    buffer &= (1u << bits) - 1;
  }
  // Leftover bits must be zero padding (fewer than 5), else the text is not a canonical encoding.
  if (bits >= 5 || buffer != 0)
    return Error{ErrorCode::InvalidArgument, "CID '" + std::string(text) + "': bad base32 padding"};
  auto c = from_binary(bytes);
  if (!c) return c.error().with_context("'" + std::string(text) + "'");
  return c;
}

}  // namespace omni::store
