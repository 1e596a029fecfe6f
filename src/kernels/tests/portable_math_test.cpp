// tanh_portable against tanh in long double: within 1 ulp of float everywhere sampled (every
// 97th float bit pattern, both signs, plus every F16 value), exact at the special values. That its
// bits are the same on every CPU is what cross_cpu_test checks (gemma2's logits, x86-64 against
// AArch64 under qemu).
#include "kernels/portable_math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/fp16.h"

namespace omni::kernels {
namespace {

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

// Distance in units in the last place between two finite floats of the same sign or zero.
int64_t ulps(float a, float b) {
  auto key = [](float f) {
    int32_t i;
    std::memcpy(&i, &f, sizeof i);
    return i < 0 ? static_cast<int64_t>(INT32_MIN) - i : static_cast<int64_t>(i);
  };
  return std::llabs(key(a) - key(b));
}

void expect_close(float x) {
  const float ours = tanh_portable(x);
  const float exact = static_cast<float>(std::tanh(static_cast<long double>(x)));
  ASSERT_LE(ulps(ours, exact), 1) << "x = " << x << " (" << std::hexfloat << x << "): " << ours << " vs " << exact;
}

TEST(TanhPortable, WithinOneUlpOfTheExactValue) {
  int64_t checked = 0;
  for (uint64_t b = 0; b < 0x7f800000u; b += 97) {  // every finite positive float's neighbourhood
    expect_close(from_bits(static_cast<uint32_t>(b)));
    expect_close(-from_bits(static_cast<uint32_t>(b)));
    checked += 2;
  }
  for (uint32_t h = 0; h < 0x7c00u; ++h) {  // every finite F16 value (the GELU table's inputs)
    expect_close(fp16_to_fp32(static_cast<uint16_t>(h)));
    expect_close(-fp16_to_fp32(static_cast<uint16_t>(h)));
  }
  EXPECT_GT(checked, 40'000'000);
}

TEST(TanhPortable, SpecialValues) {
  EXPECT_EQ(tanh_portable(0.0f), 0.0f);
  EXPECT_TRUE(std::signbit(tanh_portable(-0.0f)));
  EXPECT_EQ(tanh_portable(std::numeric_limits<float>::infinity()), 1.0f);
  EXPECT_EQ(tanh_portable(-std::numeric_limits<float>::infinity()), -1.0f);
  EXPECT_TRUE(std::isnan(tanh_portable(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(tanh_portable(9.2f), 1.0f);
  const float tiny = std::numeric_limits<float>::denorm_min();
  EXPECT_EQ(tanh_portable(tiny), tiny);
}

}  // namespace
}  // namespace omni::kernels
