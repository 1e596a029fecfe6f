// Scalar conversions between float and the two 16-bit float formats GGUF tensors use.
//
// fp16 is IEEE 754 binary16: float -> half rounds to nearest, ties to even; values from 65520 up
// become infinity; results below the normal range are correctly rounded subnormals; NaN stays NaN
// (sign and top payload bits kept, quiet bit set). half -> float is exact.
// bf16 is the top half of a float, converted as ggml does (ggml_compute_fp32_to_bf16): round to
// nearest even (subnormals are kept, not flushed), NaN forced quiet. bf16 -> float is exact.
// These are reference conversions (bit-exact with ggml's F16C / scalar paths), not fast paths.
#pragma once

#include <bit>
#include <cstdint>

namespace omni::kernels {

constexpr uint16_t fp32_to_fp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x03ffu));  // NaN
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 (and inf): inf
  if (ax < 0x38800000u) {  // below 2^-14: a half subnormal (or zero), in units of 2^-24
    if (ax < 0x33000000u) return static_cast<uint16_t>(sign);  // below 2^-25: rounds to zero
    const uint32_t exp = ax >> 23;                               // 102..112
    const uint32_t mant = (ax & 0x007fffffu) | 0x00800000u;
    const uint32_t shift = 126 - exp;  // 14..24
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;  // may carry into the smallest normal: fine
    return static_cast<uint16_t>(sign | q);
  }
  const uint32_t rebased = ax - (112u << 23);  // exponent bias 127 -> 15
  uint32_t q = rebased >> 13;
  const uint32_t rem = rebased & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;  // a carry into the exponent is correct
  return static_cast<uint16_t>(sign | q);
}

constexpr float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x03ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp == 0) {
    if (mant == 0) return std::bit_cast<float>(sign);
    // Subnormal m * 2^-24: normalise so the leading one becomes the implicit bit.
    uint32_t e = 113;  // float biased exponent of 2^-14
    while (!(mant & 0x0400u)) {
      mant <<= 1;
      --e;
    }
    return std::bit_cast<float>(sign | (e << 23) | ((mant & 0x03ffu) << 13));
  }
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

constexpr uint16_t fp32_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

constexpr float bf16_to_fp32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

}  // namespace omni::kernels
