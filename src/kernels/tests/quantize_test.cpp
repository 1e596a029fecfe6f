// Tests of the fp16/bf16 conversions and the reference quantizers.
//
// Oracles, none of them the code under test: long-hand IEEE arithmetic in double for fp16/bf16;
// error bounds derived from each format's definition; element-by-element encoders written from the
// formats' descriptions (not from the loops in quantize.cpp) for the bit layouts; and the shared
// models in ../shared/models, which were quantized by llama.cpp from one set of F16 weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "kernels/fp16.h"
#include "kernels/quantize.h"

namespace omni::kernels {
namespace {

using gguf::TensorType;

// ------------------------------------------------------------------------------------------------
// fp16 / bf16

// IEEE binary16 value of bit pattern h, computed long-hand in double.
double half_value_longhand(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  double v;
  if (exp == 0) v = std::ldexp(static_cast<double>(mant), -24);
  else if (exp == 31) v = mant ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else v = std::ldexp(1.0 + mant / 1024.0, exp - 15);
  return sign ? -v : v;
}

TEST(QuantFp16, HalfToFloatMatchesLongHandForAllPatterns) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double want = half_value_longhand(static_cast<uint16_t>(h));
    const float got = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << h;
      EXPECT_EQ(std::signbit(got), (h & 0x8000) != 0) << h;  // -0 stays -0
    }
  }
}

TEST(QuantFp16, HalfFloatHalfIsIdentity) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t back = fp32_to_fp16(fp16_to_fp32(static_cast<uint16_t>(h)));
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x03ff);
    if (is_nan) {
      EXPECT_EQ(back & 0x7c00, 0x7c00) << h;
      EXPECT_NE(back & 0x03ff, 0) << h;
      EXPECT_EQ(back & 0x8000, h & 0x8000) << h;
      EXPECT_NE(back & 0x0200, 0) << h;  // quiet
    } else {
      EXPECT_EQ(back, h) << h;
    }
  }
}

// Nearest half to x (finite float), ties to the even bit pattern, chosen by comparing distances in
// double among all 31744 non-negative finite halves plus 65536 standing for infinity (the IEEE rule
// for overflow with round-to-nearest).
class HalfOracle {
 public:
  HalfOracle() {
    for (uint32_t h = 0; h < 0x7c00; ++h) values_.push_back(half_value_longhand(static_cast<uint16_t>(h)));
    values_.push_back(65536.0);  // pattern 0x7c00: infinity
  }
  uint16_t round(float x) const {
    const double a = std::fabs(static_cast<double>(x));
    const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    if (a >= values_.back()) return sign | 0x7c00;
    auto it = std::upper_bound(values_.begin(), values_.end(), a);  // first value > a
    const size_t hi = static_cast<size_t>(it - values_.begin()), lo = hi - 1;
    const double dlo = a - values_[lo], dhi = values_[hi] - a;
    size_t pick = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
    return static_cast<uint16_t>(sign | pick);
  }
  const std::vector<double>& values() const { return values_; }

 private:
  std::vector<double> values_;  // index = bit pattern
};

TEST(QuantFp16, FloatToHalfMatchesLongHandRounding) {
  const HalfOracle oracle;
  std::mt19937_64 rng(42);
  // Random bit patterns over the whole range where halves live (and beyond, for overflow).
  std::uniform_int_distribution<uint32_t> bits(0x30000000u, 0x48000000u);
  for (int i = 0; i < 2000000; ++i) {
    uint32_t b = bits(rng) | (i & 1 ? 0x80000000u : 0u);
    const float x = std::bit_cast<float>(b);
    ASSERT_EQ(fp32_to_fp16(x), oracle.round(x)) << std::hexfloat << x;
  }
  // Exact midpoints between neighbouring halves (representable in float: 12 significant bits),
  // and the floats just either side of them: ties go to even, everything else to the nearer.
  const auto& v = oracle.values();
  for (size_t h = 0; h + 1 < v.size(); ++h) {
    const float mid = static_cast<float>((v[h] + v[h + 1]) / 2);
    ASSERT_EQ(static_cast<double>(mid), (v[h] + v[h + 1]) / 2);
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f), -mid}) {
      ASSERT_EQ(fp32_to_fp16(x), oracle.round(x)) << std::hexfloat << x;
    }
  }
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65519.99f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie with 0: even
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(1e-30f), 0x0000);
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  const uint16_t nan = fp32_to_fp16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff));
  const uint16_t snan = fp32_to_fp16(std::numeric_limits<float>::signaling_NaN());
  EXPECT_TRUE((snan & 0x7c00) == 0x7c00 && (snan & 0x200));
}

// Nearest bf16 by comparing, in double, the two candidates around x: truncation and one ulp up.
uint16_t bf16_longhand(float x) {
  const uint32_t b = std::bit_cast<uint32_t>(x);
  const uint16_t lo = static_cast<uint16_t>(b >> 16), hi = static_cast<uint16_t>(lo + 1);
  const double a = std::fabs(static_cast<double>(x));
  const double vlo = std::fabs(static_cast<double>(bf16_to_fp32(lo)));
  // hi may be the pattern of infinity; its "value" for rounding purposes is 2^128.
  const double vhi = (hi & 0x7fff) == 0x7f80 ? std::ldexp(1.0, 128) : std::fabs(static_cast<double>(bf16_to_fp32(hi)));
  const double dlo = a - vlo, dhi = vhi - a;
  return dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
}

TEST(QuantBf16, MatchesLongHandRounding) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_fp32(static_cast<uint16_t>(h));
    EXPECT_EQ(std::bit_cast<uint32_t>(f), h << 16);
    const bool is_nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
    if (is_nan) {
      EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(f)))) << h;
    } else {
      EXPECT_EQ(fp32_to_bf16(f), h) << h;
    }
  }
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<uint32_t> bits(0u, 0x7f7fffffu);  // every finite float, both signs
  for (int i = 0; i < 2000000; ++i) {
    const uint32_t b = bits(rng) | (i & 1 ? 0x80000000u : 0u);
    const float x = std::bit_cast<float>(b);
    ASSERT_EQ(fp32_to_bf16(x), bf16_longhand(x)) << std::hexfloat << x;
  }
  // Ties: exactly half an ulp above an even and an odd pattern.
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // even stays
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // odd rounds up
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x00018000u)), 0x0002);  // subnormals are not flushed
  const uint16_t q = fp32_to_bf16(std::numeric_limits<float>::signaling_NaN());
  EXPECT_TRUE((q & 0x7f80) == 0x7f80 && (q & 0x40));
}

// ------------------------------------------------------------------------------------------------
// Round trips

size_t bytes_of(TensorType t, int64_t n) { return static_cast<size_t>(*gguf::row_bytes(t, static_cast<uint64_t>(n))); }

std::vector<uint8_t> quantize(TensorType t, const std::vector<float>& x) {
  // Guard bytes after the row catch a quantizer that writes past row_bytes.
  std::vector<uint8_t> out(bytes_of(t, static_cast<int64_t>(x.size())) + 64, 0xA5);
  quantize_row(t, x.data(), out.data(), static_cast<int64_t>(x.size()));
  for (size_t i = out.size() - 64; i < out.size(); ++i) EXPECT_EQ(out[i], 0xA5) << "wrote past the row";
  out.resize(out.size() - 64);
  return out;
}

std::vector<float> dequantize(TensorType t, const std::vector<uint8_t>& q, size_t n) {
  std::vector<float> out(n + 16, 12345.0f);
  dequantize_row(t, q.data(), out.data(), static_cast<int64_t>(n));
  for (size_t i = n; i < out.size(); ++i) EXPECT_EQ(out[i], 12345.0f) << "wrote past the row";
  out.resize(n);
  return out;
}

// Test rows: several distributions, including blocks that are all zero, constant, one-signed, or
// have a single outlier.
std::vector<std::vector<float>> test_rows() {
  std::mt19937_64 rng(1234);
  std::normal_distribution<float> normal(0.0f, 0.06f);
  std::uniform_real_distribution<float> uniform(-3.0f, 3.0f);
  std::vector<std::vector<float>> rows;
  const int n = 4096;
  std::vector<float> r(n);
  for (auto& v : r) v = normal(rng);
  rows.push_back(r);
  for (auto& v : r) v = uniform(rng);
  rows.push_back(r);
  for (auto& v : r) v = std::fabs(normal(rng)) + 0.5f;  // all positive, offset
  rows.push_back(r);
  for (auto& v : r) v = -std::fabs(uniform(rng)) * 100.0f;  // all negative, large
  rows.push_back(r);
  for (int i = 0; i < n; ++i) r[i] = (i / 256) % 3 == 0 ? 0.0f : (i / 256) % 3 == 1 ? 0.25f : normal(rng);
  rows.push_back(r);
  for (int i = 0; i < n; ++i) r[i] = normal(rng) * (i % 97 == 0 ? 50.0f : 1.0f);  // outliers
  rows.push_back(r);
  for (auto& v : r) v = normal(rng) * 1e-6f;  // tiny: scales near the fp16 subnormal range
  rows.push_back(r);
  return rows;
}

constexpr double kHalfRel = 1.0 / 2048;  // relative rounding error of an fp16 scale

// Largest error ggml's format allows for one 32-element block x[0..31], from the format's
// definition: step d = range / levels, values rounded to the nearest level (error d/2) except the
// one clamped level of the symmetric formats (error d), plus the effect of storing d (and the min)
// as fp16.
double block_bound(TensorType t, const float* x) {
  double amax = 0, mn = x[0], mx = x[0];
  for (int j = 0; j < 32; ++j) {
    amax = std::max(amax, static_cast<double>(std::fabs(x[j])));
    mn = std::min(mn, static_cast<double>(x[j]));
    mx = std::max(mx, static_cast<double>(x[j]));
  }
  const double tiny = 1e-12 + amax * 1e-6;  // float arithmetic in the formulas
  // fp16 rounding of very small scales is absolute (subnormals): allow 2^-25 per level.
  const double sub = std::ldexp(1.0, -25);
  switch (t) {
    case TensorType::Q8_0: {
      const double d = amax / 127;
      return d / 2 + 127 * (d * kHalfRel + sub) + tiny;
    }
    case TensorType::Q4_0: {
      const double d = amax / 8;
      return d + 8 * (d * kHalfRel + sub) + tiny;
    }
    case TensorType::Q5_0: {
      const double d = amax / 16;
      return d + 16 * (d * kHalfRel + sub) + tiny;
    }
    case TensorType::Q4_1: {
      const double d = (mx - mn) / 15;
      return d / 2 + 15 * (d * kHalfRel + sub) + std::fabs(mn) * kHalfRel + sub + tiny;
    }
    case TensorType::Q5_1: {
      const double d = (mx - mn) / 31;
      return d / 2 + 31 * (d * kHalfRel + sub) + std::fabs(mn) * kHalfRel + sub + tiny;
    }
    default: return 0;
  }
}

class QuantRoundTrip : public ::testing::TestWithParam<TensorType> {};

TEST_P(QuantRoundTrip, ErrorWithinTheFormatsBound) {
  const TensorType t = GetParam();
  double worst_ratio = 0;  // error / bound: must stay <= 1 and should get near it
  for (const auto& row : test_rows()) {
    const auto q = quantize(t, row);
    ASSERT_EQ(q.size(), bytes_of(t, static_cast<int64_t>(row.size())));
    const auto back = dequantize(t, q, row.size());
    for (size_t i = 0; i < row.size(); ++i) {
      const double err = std::fabs(static_cast<double>(back[i]) - row[i]);
      double bound;
      if (t == TensorType::F32) bound = 0;
      else if (t == TensorType::F16) bound = std::fabs(row[i]) * kHalfRel + std::ldexp(1.0, -25);
      else if (t == TensorType::BF16) bound = std::fabs(row[i]) / 256;
      else bound = block_bound(t, &row[i - i % 32]);
      ASSERT_LE(err, bound) << "element " << i << " value " << row[i] << " got " << back[i];
      if (bound > 0) worst_ratio = std::max(worst_ratio, err / bound);
    }
  }
  if (t != TensorType::F32) {
    EXPECT_GT(worst_ratio, 0.3) << "suspiciously exact: is it quantizing at all?";
  }
}

TEST_P(QuantRoundTrip, ZerosGiveZeros) {
  const TensorType t = GetParam();
  std::vector<float> zeros(512, 0.0f);
  const auto back = dequantize(t, quantize(t, zeros), zeros.size());
  for (float v : back) EXPECT_EQ(v, 0.0f);
}

TEST_P(QuantRoundTrip, QuantizingTheDequantizedRowIsStable) {
  // Dequantized values lie on the format's grid, so quantizing them again reproduces them.
  const TensorType t = GetParam();
  for (const auto& row : test_rows()) {
    const auto once = dequantize(t, quantize(t, row), row.size());
    const auto twice = dequantize(t, quantize(t, once), row.size());
    for (size_t i = 0; i < row.size(); ++i) {
      const double tol = t == TensorType::Q4_1 || t == TensorType::Q5_1 ? block_bound(t, &once[i - i % 32]) : 0;
      ASSERT_NEAR(twice[i], once[i], tol + 1e-6 * std::fabs(once[i])) << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllQuantizable, QuantRoundTrip,
                         ::testing::Values(TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q8_0,
                                           TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1),
                         [](const auto& info) { return gguf::tensor_type_name(info.param); });

// ------------------------------------------------------------------------------------------------
// K-quant round trips. The K formats choose their scales by searches, so the bound is per 256-value
// super-block from the format's grid: Q6_K has 64 signed levels spanning [-amax, amax] (step
// amax/32), Q5_K / Q4_K 32 / 16 levels spanning [min, max] (at most 2 amax), Q3_K 8 signed levels
// (step amax/4, the clamped end costing a whole step), Q2_K 4 levels spanning [min, max]. The
// sub-block scales are least-squares fits rounded to 4-8 bits, so an element may miss its nearest
// level, but not by more than one step. Stored as fp16, d and dmin also round absolutely near the
// subnormal range: `levels * scale_max * 2^-25` covers that.
double k_roundtrip_bound(TensorType t, double amax) {
  const double sub = std::ldexp(1.0, -25);
  switch (t) {
    case TensorType::Q6_K: return amax / 32 + 32 * 128 * sub;
    case TensorType::Q5_K: return 2 * amax / 31 + 32 * 64 * 2 * sub;
    case TensorType::Q4_K: return 2 * amax / 15 + 16 * 64 * 2 * sub;
    case TensorType::Q3_K: return amax / 4 + amax / 8 + 4 * 32 * sub;
    case TensorType::Q2_K: return 2 * amax / 3 + amax / 8 + 4 * 16 * 2 * sub;
    default: return 0;
  }
}

// Root-mean-square error relative to the RMS of normally distributed values: a loose ceiling (the
// formats' typical figures are about half of these), to catch a search that chooses badly.
double k_gaussian_rel_rmse(TensorType t) {
  switch (t) {
    case TensorType::Q6_K: return 0.02;
    case TensorType::Q5_K: return 0.05;
    case TensorType::Q4_K: return 0.1;
    case TensorType::Q3_K: return 0.2;
    case TensorType::Q2_K: return 0.4;
    default: return 0;
  }
}

class QuantKRoundTrip : public ::testing::TestWithParam<TensorType> {};

TEST_P(QuantKRoundTrip, ErrorWithinTheFormatsBound) {
  const TensorType t = GetParam();
  double worst_ratio = 0;
  for (const auto& row : test_rows()) {
    const auto q = quantize(t, row);
    ASSERT_EQ(q.size(), bytes_of(t, static_cast<int64_t>(row.size())));
    const auto back = dequantize(t, q, row.size());
    for (size_t s = 0; s < row.size(); s += 256) {
      double amax = 0;
      for (size_t i = s; i < s + 256; ++i) amax = std::max(amax, static_cast<double>(std::fabs(row[i])));
      const double bound = k_roundtrip_bound(t, amax);
      for (size_t i = s; i < s + 256; ++i) {
        const double err = std::fabs(static_cast<double>(back[i]) - row[i]);
        ASSERT_LE(err, bound) << "element " << i << " value " << row[i] << " got " << back[i];
        if (amax > 1e-3) worst_ratio = std::max(worst_ratio, err / bound);
      }
    }
  }
  EXPECT_GT(worst_ratio, 0.2) << "suspiciously exact: is it quantizing at all?";
}

TEST_P(QuantKRoundTrip, GaussianErrorIsSmall) {
  const TensorType t = GetParam();
  std::mt19937_64 rng(99);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> row(256 * 64);
  for (auto& v : row) v = normal(rng);
  const auto back = dequantize(t, quantize(t, row), row.size());
  double se = 0, ss = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    se += (static_cast<double>(back[i]) - row[i]) * (static_cast<double>(back[i]) - row[i]);
    ss += static_cast<double>(row[i]) * row[i];
  }
  const double rel = std::sqrt(se / ss);
  EXPECT_LT(rel, k_gaussian_rel_rmse(t));
  EXPECT_GT(rel, k_gaussian_rel_rmse(t) / 20) << "suspiciously exact";
}

TEST_P(QuantKRoundTrip, ZerosGiveZeros) {
  const TensorType t = GetParam();
  std::vector<float> zeros(512, 0.0f);
  const auto back = dequantize(t, quantize(t, zeros), zeros.size());
  for (float v : back) EXPECT_EQ(v, 0.0f);
}

TEST_P(QuantKRoundTrip, MoreBitsGiveLessError) {
  // Each K format must beat the one with a bit fewer on the same data (a mixed-up scale or a
  // misplaced bit plane would not).
  const TensorType t = GetParam();
  if (t == TensorType::Q2_K) GTEST_SKIP() << "lowest";
  const TensorType fewer = t == TensorType::Q3_K ? TensorType::Q2_K
                           : t == TensorType::Q4_K ? TensorType::Q3_K
                           : t == TensorType::Q5_K ? TensorType::Q4_K
                                                   : TensorType::Q5_K;
  for (const auto& row : test_rows()) {
    float amax = 0;
    double sum = 0, sum2 = 0;
    for (float v : row) {
      amax = std::max(amax, std::fabs(v));
      sum += v;
      sum2 += static_cast<double>(v) * v;
    }
    if (amax < 1e-3f) continue;  // the tiny row: fp16 scales underflow in every format alike
    // One-signed rows favour Q2_K's min offset over Q3_K's symmetric grid: compare centred rows.
    if (std::fabs(sum) / static_cast<double>(row.size()) > 0.1 * std::sqrt(sum2 / static_cast<double>(row.size())))
      continue;
    auto sq_err = [&](TensorType u) {
      const auto back = dequantize(u, quantize(u, row), row.size());
      double se = 0;
      for (size_t i = 0; i < row.size(); ++i) se += (static_cast<double>(back[i]) - row[i]) * (back[i] - row[i]);
      return se;
    };
    const double a = sq_err(t), b = sq_err(fewer);
    EXPECT_LT(a, b) << gguf::tensor_type_name(fewer);
  }
}

INSTANTIATE_TEST_SUITE_P(K, QuantKRoundTrip,
                         ::testing::Values(TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K,
                                           TensorType::Q6_K),
                         [](const auto& info) { return gguf::tensor_type_name(info.param); });


TEST(QuantExact, Q8_0ReproducesExactMultiplesOfAPowerOfTwoScale) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> k(-127, 127);
  std::vector<float> x(32 * 64);
  for (size_t b = 0; b < 64; ++b) {
    const float d = std::ldexp(1.0f, static_cast<int>(b % 20) - 12);  // exact in fp16
    for (size_t j = 0; j < 32; ++j) x[b * 32 + j] = static_cast<float>(k(rng)) * d;
    x[b * 32 + b % 32] = (b % 2 ? -127.0f : 127.0f) * d;  // the block's absmax is 127 d
  }
  const auto back = dequantize(TensorType::Q8_0, quantize(TensorType::Q8_0, x), x.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(back[i], x[i]) << i;
}

TEST(QuantExact, SymmetricAndAffineFormatsReproduceTheirGrids) {
  // Q4_0 / Q5_0: a block whose most negative value is -8d (-16d) and others k*d with k in
  // [-8, 7] ([-16, 15]) comes back exactly. Q4_1 / Q5_1: m + k*d with k in [0, 15] ([0, 31]).
  std::mt19937 rng(5);
  struct Case {
    TensorType type;
    int lo, hi;
    bool affine;
  };
  for (const Case c : {Case{TensorType::Q4_0, -8, 7, false}, Case{TensorType::Q5_0, -16, 15, false},
                       Case{TensorType::Q4_1, 0, 15, true}, Case{TensorType::Q5_1, 0, 31, true}}) {
    std::uniform_int_distribution<int> k(c.lo, c.hi);
    std::vector<float> x(32 * 32);
    for (size_t b = 0; b < 32; ++b) {
      const float d = std::ldexp(1.0f, static_cast<int>(b % 10) - 6);
      const float m = c.affine ? -std::ldexp(1.0f, static_cast<int>(b % 7) - 3) : 0.0f;
      for (size_t j = 0; j < 32; ++j) x[b * 32 + j] = m + static_cast<float>(k(rng)) * d;
      x[b * 32 + (b * 7) % 32] = m + static_cast<float>(c.lo) * d;  // pin the range
      x[b * 32 + (b * 7 + 1) % 32] = m + static_cast<float>(c.hi) * d;
    }
    const auto back = dequantize(c.type, quantize(c.type, x), x.size());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(back[i], x[i]) << gguf::tensor_type_name(c.type) << " " << i;
  }
}

// ------------------------------------------------------------------------------------------------
// Bit layouts: blocks assembled element by element from each format's description, then decoded.

void put_half(std::vector<uint8_t>& b, size_t at, float v) {
  const uint16_t h = fp32_to_fp16(v);
  b[at] = static_cast<uint8_t>(h & 0xff);
  b[at + 1] = static_cast<uint8_t>(h >> 8);
}

void set_bits(std::vector<uint8_t>& b, size_t byte, int bit, int width, int value) {
  b[byte] = static_cast<uint8_t>(b[byte] | ((value & ((1 << width) - 1)) << bit));
}

TEST(QuantLayout, LegacyBlocks) {
  // Q4_0: d, then 16 bytes; element j < 16 is the low nibble of byte j, element j + 16 the high one.
  std::vector<uint8_t> b(18, 0);
  put_half(b, 0, 0.5f);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  auto y = dequantize(TensorType::Q4_0, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * (j - 8));
    EXPECT_EQ(y[j + 16], 0.5f * (7 - j));
  }
  // Q5_0: d, 32 high bits (bit j = fifth bit of element j, little-endian), then nibbles as Q4_0.
  b.assign(22, 0);
  put_half(b, 0, 0.25f);
  std::vector<int> q5(32);
  for (int j = 0; j < 32; ++j) q5[j] = (j * 13 + 5) % 32;
  for (int j = 0; j < 32; ++j) {
    set_bits(b, 2 + j / 8, j % 8, 1, q5[j] >> 4);
    set_bits(b, 6 + j % 16, j < 16 ? 0 : 4, 4, q5[j] & 15);
  }
  y = dequantize(TensorType::Q5_0, b, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.25f * (q5[j] - 16)) << j;
  // Q5_1: d, m, high bits, nibbles.
  b.assign(24, 0);
  put_half(b, 0, 0.125f);
  put_half(b, 2, -1.0f);
  for (int j = 0; j < 32; ++j) {
    set_bits(b, 4 + j / 8, j % 8, 1, q5[j] >> 4);
    set_bits(b, 8 + j % 16, j < 16 ? 0 : 4, 4, q5[j] & 15);
  }
  y = dequantize(TensorType::Q5_1, b, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.125f * q5[j] - 1.0f) << j;
  // Q4_1: d, m, nibbles.
  b.assign(20, 0);
  put_half(b, 0, 2.0f);
  put_half(b, 2, 0.5f);
  for (int j = 0; j < 32; ++j) set_bits(b, 4 + j % 16, j < 16 ? 0 : 4, 4, q5[j] & 15);
  y = dequantize(TensorType::Q4_1, b, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 2.0f * (q5[j] & 15) + 0.5f) << j;
  // Q8_0: d, 32 signed bytes.
  b.assign(34, 0);
  put_half(b, 0, -0.75f);
  for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j * 8 - 128));
  y = dequantize(TensorType::Q8_0, b, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], -0.75f * (j * 8 - 128)) << j;
}

// K formats: 256 elements per super-block. Expected values are computed per element from the
// description below, with a relative tolerance for the order of float operations.
struct KCase {
  std::vector<uint8_t> bytes;
  std::vector<double> want;
};

// Q2_K: scales[16] (low nibble scale, high nibble min, for elements 16s..16s+15), qs[64], d, dmin.
// Element i: 2 bits at byte 32*(i/128) + i%32, bit 2*((i%128)/32). Value d*sc*q - dmin*m.
KCase make_q2_k(std::mt19937& rng) {
  KCase c{std::vector<uint8_t>(84, 0), std::vector<double>(256)};
  const float d = 0.0625f, dmin = 0.03125f;
  put_half(c.bytes, 80, d);
  put_half(c.bytes, 82, dmin);
  int sc[16], mn[16];
  for (int s = 0; s < 16; ++s) {
    sc[s] = static_cast<int>(rng() % 16);
    mn[s] = static_cast<int>(rng() % 16);
    c.bytes[s] = static_cast<uint8_t>(sc[s] | (mn[s] << 4));
  }
  for (int i = 0; i < 256; ++i) {
    const int q = static_cast<int>(rng() % 4);
    set_bits(c.bytes, 16 + 32 * (i / 128) + i % 32, 2 * ((i % 128) / 32), 2, q);
    c.want[i] = d * sc[i / 16] * q - dmin * mn[i / 16];
  }
  return c;
}

// Q3_K: hmask[32], qs[64], scales[12], d. Element i: low 2 bits as Q2_K; high bit at hmask byte
// i%32, bit i/32; q = low2 + 4*high - 4. Six-bit scale s (value sc - 32): low 4 bits in byte s%8
// (low nibble for s < 8, high nibble otherwise), high 2 bits in byte 8 + s%4 at bit 2*(s/4).
KCase make_q3_k(std::mt19937& rng) {
  KCase c{std::vector<uint8_t>(110, 0), std::vector<double>(256)};
  const float d = 0.015625f;
  put_half(c.bytes, 108, d);
  int sc[16];
  for (int s = 0; s < 16; ++s) {
    sc[s] = static_cast<int>(rng() % 64);
    set_bits(c.bytes, 96 + s % 8, s < 8 ? 0 : 4, 4, sc[s] & 15);
    set_bits(c.bytes, 96 + 8 + s % 4, 2 * (s / 4), 2, sc[s] >> 4);
  }
  for (int i = 0; i < 256; ++i) {
    const int q = static_cast<int>(rng() % 8);  // 0..7, value q - 4
    set_bits(c.bytes, 32 + 32 * (i / 128) + i % 32, 2 * ((i % 128) / 32), 2, q & 3);
    set_bits(c.bytes, i % 32, i / 32, 1, q >> 2);
    c.want[i] = static_cast<double>(d) * (sc[i / 16] - 32) * (q - 4);
  }
  return c;
}

// Q4_K / Q5_K six-bit scales and mins for the 8 sub-blocks of 32: for s < 4, byte s holds the scale
// and byte s+4 the min in their low 6 bits; for s >= 4, byte s+4 holds the scale's low 4 bits (low
// nibble) and the min's (high nibble), and the top 2 bits go to the top bits of bytes s-4 and s.
void put_k4_scales(std::vector<uint8_t>& b, size_t at, const int* sc, const int* mn) {
  for (int s = 0; s < 8; ++s) {
    if (s < 4) {
      set_bits(b, at + s, 0, 6, sc[s]);
      set_bits(b, at + s + 4, 0, 6, mn[s]);
    } else {
      set_bits(b, at + s + 4, 0, 4, sc[s] & 15);
      set_bits(b, at + s + 4, 4, 4, mn[s] & 15);
      set_bits(b, at + s - 4, 6, 2, sc[s] >> 4);
      set_bits(b, at + s, 6, 2, mn[s] >> 4);
    }
  }
}

// Q4_K: d, dmin, scales[12], qs[128]. Element i: nibble at byte 32*(i/64) + i%32, low nibble when
// (i/32) is even. Value d*sc*q - dmin*m of sub-block i/32.
// Q5_K: d, dmin, scales[12], qh[32], qs[128]: as Q4_K plus a fifth bit at qh byte i%32, bit i/32.
KCase make_q45_k(std::mt19937& rng, bool five) {
  const size_t qs_at = five ? 48 : 16;
  KCase c{std::vector<uint8_t>(five ? 176 : 144, 0), std::vector<double>(256)};
  const float d = 0.0078125f, dmin = 0.125f;
  put_half(c.bytes, 0, d);
  put_half(c.bytes, 2, dmin);
  int sc[8], mn[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = static_cast<int>(rng() % 64);
    mn[s] = static_cast<int>(rng() % 64);
  }
  put_k4_scales(c.bytes, 4, sc, mn);
  for (int i = 0; i < 256; ++i) {
    const int q = static_cast<int>(rng() % (five ? 32 : 16));
    set_bits(c.bytes, qs_at + 32 * (i / 64) + i % 32, (i / 32) % 2 ? 4 : 0, 4, q & 15);
    if (five) set_bits(c.bytes, 16 + i % 32, i / 32, 1, q >> 4);
    c.want[i] = static_cast<double>(d) * sc[i / 32] * q - static_cast<double>(dmin) * mn[i / 32];
  }
  return c;
}

// Q6_K: ql[128], qh[64], scales[16] (int8), d. Element i, with c = i/128, k = i%128, p = k/32,
// l = k%32: low 4 bits at ql byte 64c + 32*(p%2) + l (high nibble when p >= 2), top 2 bits at qh
// byte 32c + l, bit 2p. Value d * scale[i/16] * (q - 32).
KCase make_q6_k(std::mt19937& rng) {
  KCase c{std::vector<uint8_t>(210, 0), std::vector<double>(256)};
  const float d = 0.001953125f;
  put_half(c.bytes, 208, d);
  int sc[16];
  for (int s = 0; s < 16; ++s) {
    sc[s] = static_cast<int>(rng() % 256) - 128;
    c.bytes[192 + s] = static_cast<uint8_t>(static_cast<int8_t>(sc[s]));
  }
  for (int i = 0; i < 256; ++i) {
    const int q = static_cast<int>(rng() % 64);
    const int cc = i / 128, k = i % 128, p = k / 32, l = k % 32;
    set_bits(c.bytes, 64 * cc + 32 * (p % 2) + l, p >= 2 ? 4 : 0, 4, q & 15);
    set_bits(c.bytes, 128 + 32 * cc + l, 2 * p, 2, q >> 4);
    c.want[i] = static_cast<double>(d) * sc[i / 16] * (q - 32);
  }
  return c;
}

TEST(QuantLayout, KBlocksDecodeElementByElement) {
  std::mt19937 rng(11);
  struct Named {
    TensorType type;
    KCase (*make)(std::mt19937&);
  };
  const Named cases[] = {
      {TensorType::Q2_K, make_q2_k},
      {TensorType::Q3_K, make_q3_k},
      {TensorType::Q4_K, [](std::mt19937& r) { return make_q45_k(r, false); }},
      {TensorType::Q5_K, [](std::mt19937& r) { return make_q45_k(r, true); }},
      {TensorType::Q6_K, make_q6_k},
  };
  for (const auto& nc : cases) {
    for (int rep = 0; rep < 20; ++rep) {
      // Two super-blocks in a row, to check the stride too.
      KCase a = nc.make(rng), b = nc.make(rng);
      std::vector<uint8_t> bytes = a.bytes;
      bytes.insert(bytes.end(), b.bytes.begin(), b.bytes.end());
      ASSERT_EQ(bytes.size(), bytes_of(nc.type, 512));
      const auto y = dequantize(nc.type, bytes, 512);
      for (int i = 0; i < 512; ++i) {
        const double want = i < 256 ? a.want[i] : b.want[i - 256];
        ASSERT_NEAR(y[i], want, 1e-6 * (1 + std::fabs(want))) << gguf::tensor_type_name(nc.type) << " element " << i;
      }
    }
  }
}

TEST(QuantApi, SupportedTypes) {
  for (auto t : {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q8_0, TensorType::Q4_0,
                 TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q2_K, TensorType::Q3_K,
                 TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K}) {
    EXPECT_TRUE(can_quantize(t));
    EXPECT_TRUE(can_dequantize(t));
  }
  for (auto t : {TensorType::Q8_1, TensorType::Q8_K, TensorType::IQ4_NL, TensorType::I32, TensorType::MXFP4}) {
    EXPECT_FALSE(can_quantize(t));
    EXPECT_FALSE(can_dequantize(t));
  }
}

TEST(QuantApiDeathTest, ContractViolationsAbort) {
  std::vector<float> x(33, 1.0f);
  std::vector<uint8_t> y(64);
  EXPECT_DEATH(quantize_row(TensorType::Q8_0, x.data(), y.data(), 33), "whole number of blocks");
  EXPECT_DEATH(quantize_row(TensorType::Q4_K, x.data(), y.data(), 32), "whole number of blocks");
  EXPECT_DEATH(quantize_row(TensorType::IQ4_NL, x.data(), y.data(), 32), "not supported");
}

// ------------------------------------------------------------------------------------------------
// The shared models: synth-llama-{f16,q8_0,q4_0,q6_k,q4_k_m}.gguf.
//
// Findings (checked by the tests below): all five hold the SAME weights — every quantized tensor
// dequantizes to the F16 file's tensor within its format's error bound, with correlation > 0.995 —
// so they were made by quantizing the F16 file. Quantizing the F16 tensors again with our
// quantize_row reproduces the Q8_0 and Q4_0 tensors of the shared files byte for byte (all of them;
// the Q4_0 file's output.weight is Q6_K, as llama-quantize chooses), which shows that our reference
// quantizers are bit-exact with ggml's. The same holds for the K-quant files: every Q4_K, Q6_K (and
// Q5_K, were there any) tensor of the q6_k and q4_k_m files is reproduced byte for byte, which checks
// the K quantizers' scale searches and packing against ggml's quantize_row_q*_K_ref.

std::string shared_model(const std::string& name) { return std::string(OMNI_SHARED_DIR) + "/models/" + name; }

std::vector<float> dequantize_tensor(const gguf::File& f, const gguf::TensorInfo& t) {
  std::vector<float> out(t.n_elements);
  dequantize_row(t.type, f.tensor_data(t).data(), out.data(), static_cast<int64_t>(t.n_elements));
  return out;
}

// Error bound of a K-format super-block of 256 values whose largest magnitude is amax: one step of
// the format's grid. Q6_K: 64 signed levels spanning [-amax, amax] -> step amax/32. Q4_K: 16
// levels spanning [min, max] (at most 2 amax) -> step 2 amax/15; the chosen scales/mins are
// least-squares fits quantized to 6 bits, so an element may miss its nearest level but not by a step.
double k_superblock_bound(TensorType t, double amax) {
  if (t == TensorType::Q6_K) return amax / 32;
  if (t == TensorType::Q4_K) return 2 * amax / 15;
  return -1;
}

class QuantSharedModels : public ::testing::TestWithParam<const char*> {};

TEST_P(QuantSharedModels, HoldTheF16WeightsWithinTheFormatsBound) {
  auto ref = gguf::File::open(shared_model("synth-llama-f16.gguf"));
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  auto file = gguf::File::open(shared_model(std::string("synth-llama-") + GetParam() + ".gguf"));
  ASSERT_TRUE(file.ok()) << file.error().message;
  ASSERT_EQ(file->tensors().size(), ref->tensors().size());
  for (const auto& t : file->tensors()) {
    const gguf::TensorInfo* r = ref->find_tensor(t.name);
    ASSERT_NE(r, nullptr) << t.name;
    ASSERT_EQ(r->shape, t.shape) << t.name;
    const auto want = dequantize_tensor(*ref, *r);
    const auto got = dequantize_tensor(*file, t);
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      sab += static_cast<double>(want[i]) * got[i];
      saa += static_cast<double>(want[i]) * want[i];
      sbb += static_cast<double>(got[i]) * got[i];
    }
    const double corr = sab / std::sqrt(saa * sbb);
    const double min_corr = t.type == TensorType::F32    ? 1.0
                            : t.type == TensorType::Q8_0 ? 0.9999
                            : t.type == TensorType::Q6_K ? 0.9995
                                                         : 0.995;  // Q4_0, Q4_K
    EXPECT_GE(corr, min_corr) << t.name << " " << gguf::tensor_type_name(t.type);
    if (t.type == TensorType::F32) {
      EXPECT_EQ(got, want) << t.name;
      continue;
    }
    const bool k = t.type == TensorType::Q4_K || t.type == TensorType::Q6_K;
    const size_t block = k ? 256 : 32;
    for (size_t s = 0; s < want.size(); s += block) {
      double amax = 0, err = 0;
      for (size_t i = s; i < s + block; ++i) {
        amax = std::max(amax, static_cast<double>(std::fabs(want[i])));
        err = std::max(err, static_cast<double>(std::fabs(want[i] - got[i])));
      }
      const double bound = k ? k_superblock_bound(t.type, amax) : block_bound(t.type, &want[s]);
      ASSERT_LE(err, bound) << t.name << " block at " << s;
    }
  }
}

TEST_P(QuantSharedModels, RequantizingTheF16WeightsReproducesTheFileBytes) {
  auto ref = gguf::File::open(shared_model("synth-llama-f16.gguf"));
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  auto file = gguf::File::open(shared_model(std::string("synth-llama-") + GetParam() + ".gguf"));
  ASSERT_TRUE(file.ok()) << file.error().message;
  int requantized = 0;
  for (const auto& t : file->tensors()) {
    if (t.shape.size() < 2) continue;  // norms: F32 in every file
    const auto src = dequantize_tensor(*ref, *ref->find_tensor(t.name));
    const uint64_t ne0 = t.shape[0];
    const size_t rb = bytes_of(t.type, static_cast<int64_t>(ne0));
    std::vector<uint8_t> bytes(t.n_bytes);
    for (uint64_t row = 0; row < t.rows(); ++row)
      quantize_row(t.type, src.data() + row * ne0, bytes.data() + row * rb, static_cast<int64_t>(ne0));
    const auto data = file->tensor_data(t);
    ASSERT_EQ(data.size(), bytes.size());
    EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), data.begin()))
        << t.name << " (" << gguf::tensor_type_name(t.type) << ") differs from ggml's bytes";
    ++requantized;
  }
  EXPECT_EQ(requantized, 30);  // all weight matrices: 4 blocks x 7, token_embd, output
}

INSTANTIATE_TEST_SUITE_P(Llama, QuantSharedModels, ::testing::Values("q8_0", "q4_0", "q6_k", "q4_k_m"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace omni::kernels
