// The F16-row dots and F16 rounding of attention: every SIMD path gives the scalar path's bits, and
// the scalar path agrees with ops.h's dots on converted rows and with a double-precision dot.
#include "kernels/f16_rows.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"

namespace omni::kernels {
namespace {

struct Case {
  int64_t n_rows, len;
  size_t stride;
};

std::vector<uint16_t> random_f16(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<uint16_t> v(n);
  for (auto& h : v) h = fp32_to_fp16(dist(rng));
  return v;
}

TEST(F16Rows, FastPathMatchesReferenceBitForBit) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (const Case& c : {Case{1, 16, 16}, Case{37, 64, 256}, Case{64, 512, 600}, Case{5, 1024, 1024},
                        Case{9, 96, 100}, Case{3, 70, 80}, Case{64, 32, 4096}, Case{2, 7, 7}}) {
    const auto rows = random_f16(static_cast<size_t>(c.n_rows) * c.stride, rng);
    std::vector<float> x(static_cast<size_t>(c.len));
    for (auto& v : x) v = fp16_to_fp32(fp32_to_fp16(dist(rng)));
    for (auto order : {F16DotOrder::kBatched, F16DotOrder::kSingle}) {
      if (order == F16DotOrder::kBatched && c.len % 16 != 0) continue;
      std::vector<float> fast(static_cast<size_t>(c.n_rows)), ref(fast.size());
      dot_f16_rows(rows.data(), c.stride, c.n_rows, x.data(), c.len, order, 0.125f, fast.data());
      dot_f16_rows_ref(rows.data(), c.stride, c.n_rows, x.data(), c.len, order, 0.125f, ref.data());
      for (int64_t j = 0; j < c.n_rows; ++j) {
        ASSERT_EQ(std::bit_cast<uint32_t>(fast[j]), std::bit_cast<uint32_t>(ref[j]))
            << "row " << j << " len " << c.len << " order " << static_cast<int>(order);
        // Independent checks: ops.h's dot on the converted row, and a double-precision dot.
        std::vector<float> a(static_cast<size_t>(c.len));
        double exact = 0;
        for (int64_t i = 0; i < c.len; ++i) {
          a[i] = fp16_to_fp32(rows[j * c.stride + i]);
          exact += static_cast<double>(a[i]) * x[i];
        }
        const float via_ops = (order == F16DotOrder::kBatched ? dot_f16_batched(a.data(), x.data(), c.len)
                                                              : dot_f16_single(a.data(), x.data(), c.len)) *
                              0.125f;
        ASSERT_EQ(std::bit_cast<uint32_t>(via_ops), std::bit_cast<uint32_t>(ref[j]));
        ASSERT_NEAR(ref[j], exact * 0.125, 1e-4 * (1.0 + std::fabs(exact)));
      }
    }
  }
}

// Several vectors at once (attention's queries of one head): each output equals the scalar path
// for that vector alone, for every vector count (the kernel handles 1-4 at a time) and row counts
// that leave partial row groups.
TEST(F16Rows, MultiVectorMatchesReferenceBitForBit) {
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (const Case& c : {Case{1, 16, 16}, Case{37, 64, 256}, Case{64, 512, 600}, Case{5, 128, 128}, Case{19, 7, 7}}) {
    const auto rows = random_f16(static_cast<size_t>(c.n_rows) * c.stride, rng);
    for (int n_x : {1, 2, 3, 4, 5, 7, 8}) {
      std::vector<std::vector<float>> x(static_cast<size_t>(n_x), std::vector<float>(static_cast<size_t>(c.len)));
      for (auto& v : x)
        for (auto& e : v) e = fp16_to_fp32(fp32_to_fp16(dist(rng)));
      for (auto order : {F16DotOrder::kBatched, F16DotOrder::kSingle}) {
        if (order == F16DotOrder::kBatched && c.len % 16 != 0) continue;
        std::vector<std::vector<float>> fast(static_cast<size_t>(n_x), std::vector<float>(static_cast<size_t>(c.n_rows)));
        std::vector<const float*> xs;
        std::vector<float*> outs;
        for (int i = 0; i < n_x; ++i) {
          xs.push_back(x[static_cast<size_t>(i)].data());
          outs.push_back(fast[static_cast<size_t>(i)].data());
        }
        dot_f16_rows_multi(rows.data(), c.stride, c.n_rows, xs.data(), n_x, c.len, order, 0.125f, outs.data());
        for (int i = 0; i < n_x; ++i) {
          std::vector<float> ref(static_cast<size_t>(c.n_rows));
          dot_f16_rows_ref(rows.data(), c.stride, c.n_rows, xs[static_cast<size_t>(i)], c.len, order, 0.125f, ref.data());
          for (int64_t j = 0; j < c.n_rows; ++j)
            ASSERT_EQ(std::bit_cast<uint32_t>(fast[static_cast<size_t>(i)][static_cast<size_t>(j)]),
                      std::bit_cast<uint32_t>(ref[static_cast<size_t>(j)]))
                << "vector " << i << " of " << n_x << " row " << j << " len " << c.len << " order " << static_cast<int>(order);
        }
      }
    }
  }
}

TEST(F16Rows, RoundingMatchesScalarIncludingSpecialValues) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> bits;
  std::vector<float> x(4099);
  for (auto& v : x) v = std::bit_cast<float>(bits(rng));
  x[0] = 65520.0f;           // rounds to infinity
  x[1] = 5.96e-8f;           // near the smallest subnormal
  x[2] = -0.0f;
  x[3] = 1.0f + 1.0f / 2048;  // a tie: rounds to even
  auto fast = x, ref = x;
  round_through_f16(fast.data(), static_cast<int64_t>(fast.size()));
  round_through_f16_ref(ref.data(), static_cast<int64_t>(ref.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(ref[i])) {
      ASSERT_TRUE(std::isnan(fast[i])) << i;
      continue;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>(fast[i]), std::bit_cast<uint32_t>(ref[i])) << i << " from " << x[i];
  }
  EXPECT_TRUE(std::isinf(ref[0]));
  EXPECT_EQ(ref[3], 1.0f);
}

// Each SIMD level in turn (a level the CPU lacks gives the best it has, so that one runs twice).
constexpr const char* kSimdLevels[] = {"avx2", "avx512", "neon", "dotprod", "i8mm"};
struct LevelCap {
  explicit LevelCap(const char* level) { force_simd_level(level); }
  ~LevelCap() { force_simd_level(nullptr); }
};

// softmax's SIMD paths against their scalar reference, with masked (-inf) tails, lengths that leave a
// libm tail, and values reaching exp's underflow range.
TEST(Softmax, FastPathMatchesReferenceBitForBit) {
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 30.0f);
  for (int64_t n : {1, 15, 16, 17, 64, 100, 512, 1031}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = dist(rng);
    for (int64_t i = std::max<int64_t>(1, n * 3 / 4); i < n; ++i) x[static_cast<size_t>(i)] = -INFINITY;
    if (n > 2) x[1] = x[0] - 120.0f;  // a subnormal exp
    auto ref = x;
    softmax_reference(ref.data(), n);
    for (const char* level : kSimdLevels) {
      LevelCap cap(level);
      auto fast = x;
      softmax(fast.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(fast[i]), std::bit_cast<uint32_t>(ref[i])) << level << " n " << n << " i " << i;
    }
    double total = 0;
    for (float v : ref) total += v;
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
}

// silu_mul's SIMD paths against their scalar reference: values across exp's range (overflow to inf
// and underflow to subnormals included) and lengths that leave a libm tail.
TEST(SiluMul, FastPathMatchesReferenceBitForBit) {
  std::mt19937 rng(12);
  std::normal_distribution<float> dist(0.0f, 40.0f);
  for (int64_t n : {1, 15, 16, 17, 100, 5632}) {
    std::vector<float> gate(static_cast<size_t>(n)), up(static_cast<size_t>(n));
    for (auto& v : gate) v = dist(rng);
    for (auto& v : up) v = dist(rng);
    if (n > 3) {
      gate[0] = -100.0f;  // exp(100) overflows
      gate[1] = 95.0f;    // exp(-95) is subnormal
      gate[2] = -0.0f;
    }
    auto ref = gate;
    silu_mul_reference(ref.data(), up.data(), n);
    for (const char* level : kSimdLevels) {
      LevelCap cap(level);
      auto fast = gate;
      silu_mul(fast.data(), up.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(fast[i]), std::bit_cast<uint32_t>(ref[i]))
            << level << " n " << n << " i " << i << " x " << gate[i];
    }
  }
}

// gelu_mul against GELU in double precision: inside (-10, 10) the result is the F16 rounding of
// GELU at the F16 rounding of x (ggml's table), so it lies within half an F16 step of that (plus
// the float evaluation's own error); outside, 0 and x. Then multiplied by `up`. (That the table
// equals ggml's entry for entry was checked against ggml itself; the gemma references test it.)
TEST(GeluMul, IsGeluOfTheF16InputRoundedToF16) {
  std::vector<float> gate, up;
  for (float x = -12.0f; x <= 12.0f; x += 0.0137f) gate.push_back(x);
  for (float x : {-10.0f, -9.999f, 9.999f, 10.0f, -0.0f, 1e-6f, -1.999f}) gate.push_back(x);
  up.assign(gate.size(), 1.0f);
  up[3] = -2.5f;
  auto out = gate;
  gelu_mul(out.data(), up.data(), static_cast<int64_t>(out.size()));
  for (size_t i = 0; i < gate.size(); ++i) {
    const float x = gate[i];
    double want;
    if (x <= -10.0f) {
      want = 0.0;
    } else if (x >= 10.0f) {
      want = x;
    } else {
      const double h = fp16_to_fp32(fp32_to_fp16(x));
      const double g = 0.5 * h * (1.0 + std::tanh(0.7978845608028654 * h * (1.0 + 0.044715 * h * h)));
      const double step = std::max(std::ldexp(1.0, std::ilogb(std::max(std::fabs(g), 6.1e-5)) - 10), std::ldexp(1.0, -24));
      // Float evaluation loses up to about |h| ulp(1) where 1 + tanh cancels (large negative x).
      ASSERT_NEAR(out[i] / up[i], g, 0.5 * step * 1.01 + 1.2e-7 * std::fabs(h) + 1e-7 * std::fabs(g)) << "x " << x;
      // The stored value is an F16 number.
      ASSERT_EQ(fp16_to_fp32(fp32_to_fp16(out[i] / up[i])), out[i] / up[i]) << "x " << x;
      continue;
    }
    ASSERT_EQ(out[i], static_cast<float>(want * up[i])) << "x " << x;
  }
}

}  // namespace
}  // namespace omni::kernels
