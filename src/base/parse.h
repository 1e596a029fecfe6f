// The text forms that command lines, messages and records share, each read and written in one place:
// network endpoints ("HOST:PORT"), block ranges ("A:B"), hex and base32.
//
// Readers take the whole text (no surrounding spaces, nothing after it) and return an Error with
// code InvalidArgument that quotes the text and says what is wrong with it; writers produce the one
// form the reader reads back.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace omni {

// A network endpoint as written on a command line: not resolved, so a name stays a name.
struct HostPort {
  std::string host;  // a DNS name, an IPv4 address, or an IPv6 address (without brackets)
  uint16_t port = 0;

  std::string to_string() const;  // "host:port", IPv6 as "[::1]:port"
  bool operator==(const HostPort&) const = default;
};

// "HOST:PORT": HOST is a DNS name (labels of letters, digits, '-' and '_', separated by dots), a
// dotted-quad IPv4 address, or an IPv6 address in brackets ("[::1]:7000"); PORT is decimal
// 0..65535 (0: callers that listen take it as "any free port"; callers that dial refuse it).
Result<HostPort> parse_host_port(std::string_view text);

// A half-open range of transformer blocks [begin, end), written "A:B" with A < B: "0:11" is blocks
// 0 to 10 (with allow_empty, A == B too: no block, for callers that want only a model's other
// parts). The upper bound of a model (B <= its block count) is the caller's to check.
struct BlockRange {
  uint32_t begin = 0;
  uint32_t end = 0;

  std::string to_string() const;  // "A:B"
  bool operator==(const BlockRange&) const = default;
};
Result<BlockRange> parse_block_range(std::string_view text, bool allow_empty = false);

// An amount of bytes (a size, or a rate in bytes/s): a whole number, optionally followed by a
// suffix: k, M, G (10^3, 10^6, 10^9) or Ki, Mi, Gi (2^10, 2^20, 2^30). "200k" is 200000, "1Mi"
// 1048576. At most UINT64_MAX.
Result<uint64_t> parse_byte_amount(std::string_view text);

// Hex, lower case, two digits per byte. The reader accepts only that form, so every byte string
// has exactly one spelling (ids and tokens are compared as text).
std::string hex_encode(std::span<const uint8_t> bytes);
Result<std::vector<uint8_t>> hex_decode(std::string_view text);

// Base32 with the RFC 4648 alphabet, lower case, no padding (as multibase 'b' and peer ids use it).
// The reader refuses other characters, '=' padding, and trailing bits that are not zero, so again
// every byte string has one spelling.
std::string base32_encode(std::span<const uint8_t> bytes);
Result<std::vector<uint8_t>> base32_decode(std::string_view text);

}  // namespace omni
