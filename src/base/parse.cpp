#include "base/parse.h"

#include <arpa/inet.h>

#include <cctype>
#include <charconv>

namespace omni {
namespace {

Error invalid(std::string_view text, const std::string& what) {
  return Error{ErrorCode::InvalidArgument, "'" + std::string(text) + "' " + what};
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// A decimal number with nothing else around it (no sign, no spaces), at most `max`.
bool parse_decimal(std::string_view text, uint64_t max, uint64_t& value) {
  if (text.empty() || !is_digit(text.front())) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  return ec == std::errc() && ptr == end && value <= max;
}

bool is_ipv6(std::string_view host) {
  // A zone ("fe80::1%eth0") names a local interface; inet_pton reads the address part only.
  const std::string address(host.substr(0, host.find('%')));
  if (const auto percent = host.find('%'); percent != std::string_view::npos) {
    const std::string_view zone = host.substr(percent + 1);
    if (zone.empty()) return false;
    for (char c : zone)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  }
  in6_addr out;
  return inet_pton(AF_INET6, address.c_str(), &out) == 1;
}

// Empty when `host` is a name or an IPv4 address, else what is wrong with it.
std::string host_problem(std::string_view host) {
  if (host.size() > 253) return "has a host name longer than 253 characters";
  bool numeric = true;
  size_t label = 0;
  for (char c : host) {
    if (c == '.') {
      if (label == 0) return "has an empty label in its host name";
      label = 0;
      continue;
    }
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
      return "has the character '" + std::string(1, c) + "' in its host (a name, an IPv4 address or [IPv6])";
    if (!is_digit(c)) numeric = false;
    if (++label > 63) return "has a host name label longer than 63 characters";
  }
  if (label == 0) return "has an empty label in its host name";
  if (numeric) {
    in_addr out;
    const std::string copy(host);
    if (inet_pton(AF_INET, copy.c_str(), &out) != 1) return "has an invalid IPv4 address";
  }
  return "";
}

}  // namespace

std::string HostPort::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<HostPort> parse_host_port(std::string_view text) {
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return invalid(text, "has an unclosed '[' (write [IPv6]:PORT)");
    if (close + 1 == text.size() || text[close + 1] != ':') return invalid(text, "has no port after ']' (write [IPv6]:PORT)");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    if (!is_ipv6(host)) return invalid(text, "has no IPv6 address between its brackets");
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return invalid(text, "has no port (write HOST:PORT)");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.empty()) return invalid(text, "has no host (write HOST:PORT)");
    if (host.find(':') != std::string_view::npos)
      return invalid(text, "has ':' in its host (write IPv6 addresses in brackets: [::1]:7000)");
    if (std::string problem = host_problem(host); !problem.empty()) return invalid(text, problem);
  }
  if (port.empty()) return invalid(text, "has no port (write HOST:PORT)");
  uint64_t value = 0;
  if (!parse_decimal(port, 65535, value)) return invalid(text, "has an invalid port '" + std::string(port) + "' (0-65535)");
  return HostPort{std::string(host), static_cast<uint16_t>(value)};
}

std::string BlockRange::to_string() const { return std::to_string(begin) + ":" + std::to_string(end); }

Result<BlockRange> parse_block_range(std::string_view text, bool allow_empty) {
  const auto colon = text.find(':');
  uint64_t begin = 0, end = 0;
  if (colon == std::string_view::npos || !parse_decimal(text.substr(0, colon), UINT32_MAX, begin) ||
      !parse_decimal(text.substr(colon + 1), UINT32_MAX, end))
    return invalid(text, "is not a block range A:B (blocks A to B-1)");
  if (begin > end && allow_empty) return invalid(text, "is a reversed block range: A:B needs A <= B");
  if (begin >= end && !allow_empty)
    return invalid(text, "is an empty block range: A:B needs A < B (blocks A to B-1)");
  return BlockRange{static_cast<uint32_t>(begin), static_cast<uint32_t>(end)};
}

Result<uint64_t> parse_byte_amount(std::string_view text) {
  struct Suffix {
    std::string_view text;
    uint64_t factor;
  };
  static constexpr Suffix kSuffixes[] = {{"Ki", 1ull << 10}, {"Mi", 1ull << 20}, {"Gi", 1ull << 30},
                                         {"k", 1000},        {"M", 1000000},    {"G", 1000000000}};
  uint64_t factor = 1;
  std::string_view digits = text;
  for (const Suffix& s : kSuffixes)
    if (text.size() > s.text.size() && text.ends_with(s.text)) {
      factor = s.factor;
      digits = text.substr(0, text.size() - s.text.size());
      break;
    }
  uint64_t n = 0;
  if (!parse_decimal(digits, UINT64_MAX, n))
    return invalid(text, "is not an amount of bytes (a whole number, optionally with k, M, G, Ki, Mi or Gi)");
  if (n > UINT64_MAX / factor) return invalid(text, "is too large an amount of bytes");
  return n * factor;
}

std::string hex_encode(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

Result<std::vector<uint8_t>> hex_decode(std::string_view text) {
  if (text.size() % 2) return invalid(text, "has an odd number of hex digits");
  std::vector<uint8_t> out(text.size() / 2);
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    int v;
    if (is_digit(c)) v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else return invalid(text, "has '" + std::string(1, c) + "', not a lower-case hex digit");
    out[i / 2] = static_cast<uint8_t>(out[i / 2] << 4 | v);
  }
  return out;
}

std::string base32_encode(std::span<const uint8_t> bytes) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  std::string out;
  out.reserve((bytes.size() * 8 + 4) / 5);
  uint32_t buffer = 0;
  int bits = 0;
  for (uint8_t b : bytes) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out.push_back(kAlphabet[(buffer >> (bits - 5)) & 31]);
      bits -= 5;
    }
    buffer &= (1u << bits) - 1;
  }
  if (bits > 0) out.push_back(kAlphabet[(buffer << (5 - bits)) & 31]);
  return out;
}

Result<std::vector<uint8_t>> base32_decode(std::string_view text) {
  std::vector<uint8_t> out;
  out.reserve(text.size() * 5 / 8);
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    int v;
    if (c >= 'a' && c <= 'z') v = c - 'a';
    else if (c >= '2' && c <= '7') v = c - '2' + 26;
    else return invalid(text, "has '" + std::string(1, c) + "', not a base32 character (a-z, 2-7)");
    buffer = (buffer << 5) | static_cast<uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      out.push_back(static_cast<uint8_t>(buffer >> (bits - 8)));
      bits -= 8;
    }
    buffer &= (1u << bits) - 1;
  }
  // What is left must be fewer than 5 bits, all zero: the padding of the last character.
  if (bits >= 5 || buffer != 0) return invalid(text, "is not canonical base32 (bad length or padding bits)");
  return out;
}

}  // namespace omni
