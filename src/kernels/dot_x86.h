// Helpers shared by the x86 SIMD kernel files (internal to the kernels library; needs AVX2 and
// F16C at least). In an anonymous namespace on purpose, like dot_tile.h: each including file is
// compiled for its own instruction set and gets its own private copy.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace omni::kernels {
namespace {

inline uint16_t load_u16(const void* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

inline float round_fp16(float v) { return _cvtsh_ss(_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }

// The 12 scale bytes of a K super-block as dwords 0-2 (no over-read past them).
inline __m128i scale_bytes(const uint8_t* s) {
  return _mm_insert_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s)), static_cast<int>(load_u32(s + 8)), 2);
}

// Scales (bytes 0-7) and mins (bytes 8-15) of a Q4_K / Q5_K super-block, 6 bits each, from the
// packed dwords D0 D1 D2: scales 0-3 = D0 & 63, mins 0-3 = D1 & 63, scales 4-7 = low nibbles of D2
// with D0's top two bits above, mins 4-7 = high nibbles of D2 with D1's top bits.
inline __m128i scales_mins_k4(const uint8_t* s) {
  const __m128i x = scale_bytes(s);
  const __m128i a = _mm_shuffle_epi32(x, _MM_SHUFFLE(2, 1, 2, 0));  // D0 D2 D1 D2
  const __m128i b = _mm_shuffle_epi32(x, _MM_SHUFFLE(1, 1, 0, 0));  // D0 D0 D1 D1
  const __m128i low = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
                                    _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
  const __m128i high = _mm_and_si128(_mm_srli_epi32(b, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
  return _mm_or_si128(low, high);
}

// The 16 signed scales of a Q3_K super-block: low 4 bits of scale j are nibble j / 8 of byte j % 8,
// high 2 bits are bits 2 (j / 4) of byte 8 + j % 4; stored with an offset of 32.
inline __m128i scales_q3k(const uint8_t* s) {
  const __m128i x = scale_bytes(s);
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i low = _mm_unpacklo_epi64(_mm_and_si128(x, m4), _mm_and_si128(_mm_srli_epi16(x, 4), m4));
  const __m128i top = _mm_srlv_epi32(_mm_shuffle_epi32(x, _MM_SHUFFLE(2, 2, 2, 2)), _mm_setr_epi32(0, 2, 4, 6));
  const __m128i high = _mm_slli_epi16(_mm_and_si128(top, _mm_set1_epi8(3)), 4);
  return _mm_sub_epi8(_mm_or_si128(low, high), _mm_set1_epi8(32));
}

}  // namespace
}  // namespace omni::kernels
