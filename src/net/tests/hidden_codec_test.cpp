// Hidden-state encodings: F32 exact; F16 within half an F16 ulp (bound computed from the value's
// exponent here, not from the codec); Q8 within half a step of max|row|/127; malformed inputs refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "net/hidden_codec.h"

namespace omni::net {
namespace {

std::vector<float> random_rows(uint32_t rows, uint32_t n_embd, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(size_t{rows} * n_embd);
  for (size_t i = 0; i < v.size(); ++i) v[i] = normal(rng) * std::exp2(static_cast<float>(i % 17) - 8);  // wide range
  return v;
}

TEST(HiddenCodec, F32IsExact) {
  auto v = random_rows(3, 64, 1);
  auto w = v;
  ASSERT_TRUE(round_trip_hidden(w, 64, HiddenEncoding::F32).ok());
  EXPECT_EQ(v, w);
}

TEST(HiddenCodec, F16WithinHalfUlp) {
  auto v = random_rows(4, 256, 2);
  auto w = v;
  ASSERT_TRUE(round_trip_hidden(w, 256, HiddenEncoding::F16).ok());
  std::vector<uint8_t> bytes;
  ASSERT_TRUE(encode_hidden(v, 256, HiddenEncoding::F16, bytes).ok());
  EXPECT_EQ(bytes.size(), v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    const float a = std::fabs(v[i]);
    // F16: 10 fraction bits; subnormal below 2^-14 with a fixed step of 2^-24.
    const float ulp = a < std::ldexp(1.0f, -14) ? std::ldexp(1.0f, -24) : std::ldexp(1.0f, std::ilogb(a) - 10);
    EXPECT_LE(std::fabs(w[i] - v[i]), ulp / 2) << i << " " << v[i];
  }
}

TEST(HiddenCodec, Q8WithinHalfStep) {
  const uint32_t n = 256;
  auto v = random_rows(5, n, 3);
  auto w = v;
  ASSERT_TRUE(round_trip_hidden(w, n, HiddenEncoding::Q8).ok());
  for (uint32_t t = 0; t < 5; ++t) {
    float amax = 0;
    for (uint32_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(v[t * n + i]));
    const float step = amax / 127;
    for (uint32_t i = 0; i < n; ++i) EXPECT_LE(std::fabs(w[t * n + i] - v[t * n + i]), step * 0.5f * 1.0001f);
  }
  std::vector<uint8_t> bytes;
  ASSERT_TRUE(encode_hidden(v, n, HiddenEncoding::Q8, bytes).ok());
  EXPECT_EQ(bytes.size(), 5u * (4 + n));
}

TEST(HiddenCodec, ZeroRowQ8) {
  std::vector<float> v(32, 0.0f);
  ASSERT_TRUE(round_trip_hidden(v, 32, HiddenEncoding::Q8).ok());
  for (float x : v) EXPECT_EQ(x, 0.0f);
}

// Values past F16's largest finite value (65504) become infinity in F16: refused when encoding, as
// decoding refuses an infinity on the wire. 65519 still rounds down to 65504.
TEST(HiddenCodec, F16OverflowIsRefusedNotSentAsInfinity) {
  std::vector<uint8_t> bytes;
  std::vector<float> edge{65504.0f, -65519.0f};
  ASSERT_TRUE(encode_hidden(edge, 2, HiddenEncoding::F16, bytes).ok());
  std::vector<float> out;
  ASSERT_TRUE(decode_hidden(bytes, 1, 2, HiddenEncoding::F16, out).ok());
  EXPECT_EQ(out, (std::vector<float>{65504.0f, -65504.0f}));
  for (float big : {65520.0f, -1e6f, 3e38f}) {
    std::vector<float> row{1.0f, big};
    auto r = encode_hidden(row, 2, HiddenEncoding::F16, bytes);
    ASSERT_FALSE(r.ok()) << big;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
    std::vector<float> wide = row;
    EXPECT_TRUE(round_trip_hidden(wide, 2, HiddenEncoding::F32).ok()) << "f32 carries " << big;
  }
}

TEST(HiddenCodec, RejectsBadInput) {
  std::vector<float> out;
  std::vector<uint8_t> bytes(100);
  auto r = decode_hidden(bytes, 1, 64, HiddenEncoding::F16, out);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Corruption) << r.error().message;
  EXPECT_NE(r.error().message.find("take 128 bytes, got 100"), std::string::npos) << r.error().message;
  std::vector<float> nan{1.0f, std::nanf("")};
  EXPECT_FALSE(encode_hidden(nan, 2, HiddenEncoding::F16, bytes).ok());
  // An F16 infinity (0x7c00) on the wire.
  std::vector<uint8_t> inf{0x00, 0x7c};
  EXPECT_FALSE(decode_hidden(inf, 1, 1, HiddenEncoding::F16, out).ok());
  // A negative Q8 scale.
  std::vector<uint8_t> q(5, 0);
  const float neg = -1.0f;
  std::memcpy(q.data(), &neg, 4);
  EXPECT_FALSE(decode_hidden(q, 1, 1, HiddenEncoding::Q8, out).ok());
  EXPECT_FALSE(parse_hidden_encoding("bf16").ok());
  EXPECT_TRUE(parse_hidden_encoding("q8").ok());
}

}  // namespace
}  // namespace omni::net
