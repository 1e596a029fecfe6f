#include "base/parse.h"

#include <gtest/gtest.h>

#include <random>

namespace omni {
namespace {

std::vector<uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

// RFC 4648 section 10 test vectors, lower-cased and without '=' padding.
const std::pair<const char*, const char*> kBase32Vectors[] = {
    {"", ""}, {"f", "my"}, {"fo", "mzxq"}, {"foo", "mzxw6"}, {"foob", "mzxw6yq"}, {"fooba", "mzxw6ytb"},
    {"foobar", "mzxw6ytboi"}};
const std::pair<const char*, const char*> kHexVectors[] = {
    {"", ""}, {"f", "66"}, {"fo", "666f"}, {"foo", "666f6f"}, {"foob", "666f6f62"}, {"fooba", "666f6f6261"},
    {"foobar", "666f6f626172"}};

// Base32 the slow way, one bit at a time, as a second opinion on the shift-register code.
std::string base32_bitwise(const std::vector<uint8_t>& bytes) {
  const char* alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  std::string out;
  const size_t n_bits = bytes.size() * 8;
  for (size_t start = 0; start < n_bits; start += 5) {
    int v = 0;
    for (size_t k = 0; k < 5; ++k) {
      const size_t bit = start + k;
      const int b = bit < n_bits ? (bytes[bit / 8] >> (7 - bit % 8)) & 1 : 0;
      v = v << 1 | b;
    }
    out += alphabet[v];
  }
  return out;
}

TEST(Base32, Rfc4648Vectors) {
  for (auto [plain, encoded] : kBase32Vectors) {
    EXPECT_EQ(base32_encode(bytes_of(plain)), encoded) << plain;
    auto back = base32_decode(encoded);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(*back, bytes_of(plain));
  }
}

TEST(Base32, AgreesWithBitwiseEncodingAndRoundTrips) {
  std::mt19937 rng(7);
  for (size_t n = 0; n < 80; ++n) {
    std::vector<uint8_t> bytes(n);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    const std::string text = base32_encode(bytes);
    EXPECT_EQ(text, base32_bitwise(bytes)) << n;
    auto back = base32_decode(text);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(*back, bytes);
  }
}

TEST(Base32, RefusesOtherSpellings) {
  // Upper case, padding, other alphabets, and a last character whose unused bits are not zero
  // ("mz": 'z' carries bits beyond the one byte of "my").
  for (const char* bad : {"MY", "my======", "m1", "m8", "mz", "m", "mzxw6yr", "mzx", "my "}) {
    auto r = base32_decode(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_TRUE(r.error().is(ErrorCode::InvalidArgument));
    EXPECT_NE(r.error().message.find(bad), std::string::npos) << r.error().message;
  }
}

TEST(Hex, Rfc4648Vectors) {
  for (auto [plain, encoded] : kHexVectors) {
    EXPECT_EQ(hex_encode(bytes_of(plain)), encoded) << plain;
    auto back = hex_decode(encoded);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(*back, bytes_of(plain));
  }
}

TEST(Hex, EveryByteRoundTripsAndMatchesPrintf) {
  for (int b = 0; b < 256; ++b) {
    char expected[3];
    std::snprintf(expected, sizeof expected, "%02x", b);
    const std::vector<uint8_t> one{static_cast<uint8_t>(b)};
    EXPECT_EQ(hex_encode(one), expected);
    auto back = hex_decode(expected);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, one);
  }
}

TEST(Hex, RefusesOddLengthUpperCaseAndOtherCharacters) {
  for (const char* bad : {"6", "666", "6F", "0x66", "g0", " 66"}) {
    auto r = hex_decode(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_TRUE(r.error().is(ErrorCode::InvalidArgument));
  }
}

TEST(HostPort, ReadsNamesIpv4AndBracketedIpv6) {
  struct Case {
    const char* text;
    const char* host;
    uint16_t port;
  };
  for (const Case& c : {Case{"127.0.0.1:7000", "127.0.0.1", 7000}, Case{"0.0.0.0:0", "0.0.0.0", 0},
                        Case{"localhost:65535", "localhost", 65535}, Case{"relay.example-1.org:1", "relay.example-1.org", 1},
                        Case{"[::1]:9", "::1", 9}, Case{"[fe80::1%eth0]:80", "fe80::1%eth0", 80},
                        Case{"[2001:db8::7]:7100", "2001:db8::7", 7100}, Case{"host:007", "host", 7}}) {
    auto r = parse_host_port(c.text);
    ASSERT_TRUE(r) << c.text << ": " << r.error().message;
    EXPECT_EQ(r->host, c.host);
    EXPECT_EQ(r->port, c.port);
  }
}

TEST(HostPort, WritesWhatItReads) {
  for (const char* text : {"127.0.0.1:7000", "[::1]:9", "name.example:80", "[2001:db8::7]:0"}) {
    auto r = parse_host_port(text);
    ASSERT_TRUE(r) << text;
    EXPECT_EQ(r->to_string(), text);
  }
}

TEST(HostPort, RefusesMalformedTextNamingIt) {
  struct Case {
    const char* text;
    const char* says;  // part of the message
  };
  for (const Case& c : {Case{"127.0.0.1", "no port"}, Case{"host:", "no port"}, Case{":80", "no host"}, Case{"host:80:", "in its host"},
                        Case{"host:65536", "invalid port"}, Case{"host:-1", "invalid port"}, Case{"host:8x", "invalid port"},
                        Case{"host:+80", "invalid port"}, Case{"host: 80", "invalid port"}, Case{"::1:80", "brackets"},
                        Case{"[::1]80", "no port"}, Case{"[::1:80", "unclosed"}, Case{"[::1]:", "no port"}, Case{"[]:80", "IPv6"},
                        Case{"[1.2.3.4]:80", "IPv6"}, Case{"[::1]x:80", "no port"}, Case{"999.1.1.1:80", "IPv4"},
                        Case{"1.2.3:80", "IPv4"}, Case{"a..b:80", "empty label"}, Case{"host name:80", "character ' '"},
                        Case{"id@host:80", "character '@'"}, Case{"", "no port"}}) {
    auto r = parse_host_port(c.text);
    ASSERT_FALSE(r) << c.text;
    EXPECT_TRUE(r.error().is(ErrorCode::InvalidArgument));
    EXPECT_NE(r.error().message.find(c.says), std::string::npos) << c.text << ": " << r.error().message;
    EXPECT_NE(r.error().message.find("'" + std::string(c.text) + "'"), std::string::npos) << r.error().message;
  }
  EXPECT_FALSE(parse_host_port(std::string(64, 'a') + ".example:80"));
  EXPECT_TRUE(parse_host_port(std::string(63, 'a') + ".example:80"));
}

TEST(BlockRange, ReadsHalfOpenRanges) {
  auto r = parse_block_range("0:11");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->begin, 0u);
  EXPECT_EQ(r->end, 11u);
  EXPECT_EQ(r->to_string(), "0:11");
  auto top = parse_block_range("4294967294:4294967295");
  ASSERT_TRUE(top);
  EXPECT_EQ(top->end, UINT32_MAX);
}

TEST(BlockRange, RefusesEmptyReversedAndMalformedRanges) {
  for (const char* bad : {"3:3", "5:2", "", ":", "1:", ":4", "1:4:5", "-1:4", "1:4x", " 1:4", "1;4", "0:4294967296",
                          "a:b", "+1:4"}) {
    auto r = parse_block_range(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_TRUE(r.error().is(ErrorCode::InvalidArgument));
  }
}

TEST(BlockRange, AnEmptyRangeWhereTheCallerAllowsIt) {
  auto empty = parse_block_range("3:3", /*allow_empty=*/true);
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_EQ(*empty, (BlockRange{3, 3}));
  EXPECT_FALSE(parse_block_range("3:3").ok());
  for (const char* bad : {"4:3", "3", "a:3"}) {
    auto r = parse_block_range(bad, /*allow_empty=*/true);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_TRUE(r.error().is(ErrorCode::InvalidArgument));
  }
}

TEST(ByteAmount, SuffixesMultiply) {
  EXPECT_EQ(*parse_byte_amount("0"), 0u);
  EXPECT_EQ(*parse_byte_amount("1234"), 1234u);
  EXPECT_EQ(*parse_byte_amount("200k"), 200u * 1000);
  EXPECT_EQ(*parse_byte_amount("3M"), 3u * 1000 * 1000);
  EXPECT_EQ(*parse_byte_amount("2G"), 2ull * 1000 * 1000 * 1000);
  EXPECT_EQ(*parse_byte_amount("5Ki"), 5u * 1024);
  EXPECT_EQ(*parse_byte_amount("1Mi"), 1024u * 1024);
  EXPECT_EQ(*parse_byte_amount("1Gi"), 1024ull * 1024 * 1024);
}

TEST(ByteAmount, RefusesMalformedAndOverflowingAmounts) {
  for (const char* bad : {"", "k", "1.5M", "-1", " 1", "1 k", "1K", "1m", "1Ti", "18446744073709551616", "20000000000G",
                          "1kk"}) {
    auto r = parse_byte_amount(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_TRUE(r.error().is(ErrorCode::InvalidArgument));
  }
}

}  // namespace
}  // namespace omni
