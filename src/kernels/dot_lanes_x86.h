// Kernels whose float arithmetic reproduces llama.cpp's lane structure exactly (internal to the
// kernels library; needs AVX2, FMA and F16C). Included by dot_avx2.cpp and dot_avx512.cpp, which
// compile the same operations for their instruction sets, so both give the bits of the scalar
// references in dot_scalar.cpp (see docs/design.md, "Numerical parity with llama.cpp"). Integer
// sums are exact whatever the instruction; only the float operations follow ggml's order:
//  - Q8_0 / Q4_0: per block 8 lanes (lane m = products 4m..4m+3), lane = fma(d_w d_x, lane, .),
//    hsum8 at the end. (Q4_0 with rows % 8 == 0, which ggml repacks, is one chain per output,
//    acc = fma(block sum, d_w d_x, acc): each ISA file has its own kernel for it.)
//  - F16: single rows as ggml_vec_dot_f16 (4 x 16 lanes over 64-element steps, tail in double),
//    prompt batches as tinyBLAS (16 lanes over 16-element steps), reduce16 tree.
//  - K quants: ggml's AVX2 vec_dot, 8 int32 lanes per super-block (lane m: elements 4m..4m+3 of
//    each 32-element chunk times its scale), mins as each ggml kernel adds them.
// In an anonymous namespace, like dot_tile.h: every including file gets its own private copy.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/activation_quant.h"
#include "kernels/blocks.h"
#include "kernels/dot_tile.h"
#include "kernels/dot_x86.h"

namespace omni::kernels {
namespace lanes {
namespace {

// ggml's hsum_float_8: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// (a0+a2) + (a1+a3).
inline float hsum4(__m128 s) {
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float fp16s(uint16_t h) { return _cvtsh_ss(h); }

// ---------------------------------------------------------------------------------------------
// F16 weights against fp16-rounded f32 activations, F32 weights against f32 activations.

struct WeightsF16 {
  static __m256 vec(const uint8_t* w, int64_t i) { return _mm256_cvtph_ps(load128(w + 2 * i)); }
  static float one(const uint8_t* w, int64_t i) { return fp16s(load_u16(w + 2 * i)); }
};
struct WeightsF32 {
  static __m256 vec(const uint8_t* w, int64_t i) { return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + i); }
  static float one(const uint8_t* w, int64_t i) { return reinterpret_cast<const float*>(w)[i]; }
};

struct WeightsBF16 {
  static __m256 vec(const uint8_t* w, int64_t i) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(w + 2 * i)), 16));
  }
  static float one(const uint8_t* w, int64_t i) {
    const uint32_t bits = static_cast<uint32_t>(load_u16(w + 2 * i)) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
};

// tinyBLAS: one 16-lane FMA chain per output (two 8-lane halves); cols % 16 == 0.
template <class L>
struct Batched16 {
  static constexpr int kNR = 2, kNT = 2;
  template <int NR, int NT>
  static void dot_rows(const uint8_t* w, size_t w_stride, const uint8_t* act, const ActLayout& l, float* out) {
    const int64_t n = l.cols;
    const float* a[NT];
    __m256 lo[NR * NT], hi[NR * NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) a[t] = reinterpret_cast<const float*>(act + t * l.stride);
#pragma GCC unroll 8
    for (int k = 0; k < NR * NT; ++k) lo[k] = hi[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
      __m256 w0[NR], w1[NR];
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) {
        w0[r] = L::vec(w + r * w_stride, i);
        w1[r] = L::vec(w + r * w_stride, i + 8);
      }
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const __m256 a0 = _mm256_loadu_ps(a[t] + i), a1 = _mm256_loadu_ps(a[t] + i + 8);
#pragma GCC unroll 8
        for (int r = 0; r < NR; ++r) {
          lo[r * NT + t] = _mm256_fmadd_ps(w0[r], a0, lo[r * NT + t]);
          hi[r * NT + t] = _mm256_fmadd_ps(w1[r], a1, hi[r * NT + t]);
        }
      }
    }
#pragma GCC unroll 8
    for (int k = 0; k < NR * NT; ++k) out[k] = hsum8(_mm256_add_ps(hi[k], lo[k]));
  }
};

// ggml_vec_dot_f16 / _f32: 4 accumulators of 16 lanes over 64-element steps; acc0 += acc2,
// acc1 += acc3, acc0 += acc1, reduce16; the tail (n % 64) added in double (F16) or float (F32).
template <class L, bool kDoubleTail>
struct Single64 {
  static constexpr int kNR = 1, kNT = 1;
  template <int NR, int NT>
  static void dot_rows(const uint8_t* w, size_t w_stride, const uint8_t* act, const ActLayout& l, float* out) {
    const int64_t n = l.cols, np = n & ~int64_t{63};
#pragma GCC unroll 1
    for (int r = 0; r < NR; ++r) {
#pragma GCC unroll 1
      for (int t = 0; t < NT; ++t) {
        const uint8_t* wr = w + r * w_stride;
        const float* a = reinterpret_cast<const float*>(act + t * l.stride);
        __m256 acc[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) acc[k] = _mm256_setzero_ps();
        for (int64_t i = 0; i < np; i += 64) {
#pragma GCC unroll 8
          for (int k = 0; k < 8; ++k)
            acc[k] = _mm256_fmadd_ps(L::vec(wr, i + 8 * k), _mm256_loadu_ps(a + i + 8 * k), acc[k]);
        }
        // acc[2j], acc[2j+1]: lanes 0-7 and 8-15 of accumulator j.
        const __m256 s0 = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
        const __m256 s1 = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
        const float reduced = hsum8(_mm256_add_ps(s1, s0));
        if constexpr (kDoubleTail) {
          double sum = reduced;
          for (int64_t i = np; i < n; ++i) sum += static_cast<double>(L::one(wr, i) * a[i]);
          out[r * NT + t] = static_cast<float>(sum);
        } else {
          float sum = reduced;
          for (int64_t i = np; i < n; ++i) sum += L::one(wr, i) * a[i];
          out[r * NT + t] = sum;
        }
      }
    }
  }
};

// ggml_vec_dot_bf16 of an AVX512F build without AVX512-BF16: two 16-lane accumulators over
// 32-element steps, c = c + x * y (not fused); each reduced (reduce16) and added in double, then
// the tail in double.
struct BF16Single {
  static constexpr int kNR = 1, kNT = 1;
  template <int NR, int NT>
  static void dot_rows(const uint8_t* w, size_t w_stride, const uint8_t* act, const ActLayout& l, float* out) {
    const int64_t n = l.cols;
#pragma GCC unroll 1
    for (int r = 0; r < NR; ++r) {
#pragma GCC unroll 1
      for (int t = 0; t < NT; ++t) {
        const uint8_t* wr = w + r * w_stride;
        const float* a = reinterpret_cast<const float*>(act + t * l.stride);
        __m256 c[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) c[k] = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
#pragma GCC unroll 4
          for (int k = 0; k < 4; ++k)
            c[k] = _mm256_add_ps(_mm256_mul_ps(WeightsBF16::vec(wr, i + 8 * k), _mm256_loadu_ps(a + i + 8 * k)), c[k]);
        }
        double sum = 0.0;
        sum += static_cast<double>(hsum8(_mm256_add_ps(c[1], c[0])));
        sum += static_cast<double>(hsum8(_mm256_add_ps(c[3], c[2])));
        for (; i < n; ++i) sum += static_cast<double>(WeightsBF16::one(wr, i) * a[i]);
        out[r * NT + t] = static_cast<float>(sum);
      }
    }
  }
};

using BF16Batched = Batched16<WeightsBF16>;
using F16Batched = Batched16<WeightsF16>;
using F32Batched = Batched16<WeightsF32>;
using F16Single = Single64<WeightsF16, true>;
using F32Single = Single64<WeightsF32, false>;

// ---------------------------------------------------------------------------------------------
// 32-element block formats against kQ8_0 / kQ8_1 activations.

// 32 bits -> 32 bytes of 0x00 / 0xff (ggml's bytes_from_bits_32).
inline __m256i bits_bytes(uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000));
  const __m256i with_others = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(with_others, _mm256_set1_epi64x(-1));
}
inline __m256i nibbles(const uint8_t* qs) {
  const __m128i q = load128(qs);
  const __m256i z = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
  return _mm256_and_si256(z, _mm256_set1_epi8(0x0f));
}

struct ValuesQ8_0 {
  using Block = BlockQ8_0;
  static __m256i get(const Block& b) { return load256(b.qs); }
};
struct ValuesQ4_0 {
  using Block = BlockQ4_0;
  static __m256i get(const Block& b) { return _mm256_sub_epi8(nibbles(b.qs), _mm256_set1_epi8(8)); }
};
struct ValuesQ5_0 {
  using Block = BlockQ5_0;
  static __m256i get(const Block& b) {
    const __m256i high = _mm256_and_si256(bits_bytes(load_u32(b.qh)), _mm256_set1_epi8(16));
    return _mm256_sub_epi8(_mm256_or_si256(nibbles(b.qs), high), _mm256_set1_epi8(16));
  }
};
// Unsigned values of the _1 formats.
struct ValuesQ4_1 {
  using Block = BlockQ4_1;
  static __m256i get(const Block& b) { return nibbles(b.qs); }
};
struct ValuesQ5_1 {
  using Block = BlockQ5_1;
  static __m256i get(const Block& b) {
    return _mm256_or_si256(nibbles(b.qs), _mm256_and_si256(bits_bytes(load_u32(b.qh)), _mm256_set1_epi8(16)));
  }
};

// The 8 lane sums of a block's 32 products (sign trick: |w| times x with w's sign).
inline __m256i block_lanes(__m256i v, const int8_t* q) {
  const __m256i u = _mm256_sign_epi8(v, v);
  const __m256i s = _mm256_sign_epi8(load256(q), v);
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

template <class V>
struct LaneBlocks {
  static constexpr int kNT = 4;
  using Acc = __m256;
  static Acc zero() { return _mm256_setzero_ps(); }
  static float reduce(const Acc& a) { return hsum8(a); }

  template <int NT>
  static void run(const uint8_t* w, size_t, const uint8_t* act, const ActLayout& l, int64_t u0, int64_t u1, Acc* acc) {
    const auto* x = reinterpret_cast<const typename V::Block*>(w);
    const int64_t nb = l.cols / kQK;
    const int64_t b1 = 8 * u1 < nb ? 8 * u1 : nb;
    ActRef a[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) a[t] = act_ref(act, l, t);
    for (int64_t b = 8 * u0; b < b1; ++b) {
      const __m256i v = V::get(x[b]);
      const float dw = fp16s(x[b].d);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const __m256i s = block_lanes(v, reinterpret_cast<const int8_t*>(a[t].q) + kQK * b);
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[t].d[b]), _mm256_cvtepi32_ps(s), acc[t]);
      }
    }
  }
};

// Q4_1 / Q5_1 (ggml's AVX2 vec_dot): 8 lanes of unsigned weights times activations, lane =
// fma(lane sum, d_w d_x, lane); the mins as summs += m_w * s_x in float; hsum8 + summs.
struct Acc1 {
  __m256 a;
  float s;
};
template <class V>
struct LaneBlocks1 {
  static constexpr int kNT = 4;
  using Acc = Acc1;
  static Acc zero() { return {_mm256_setzero_ps(), 0.0f}; }
  static float reduce(const Acc& a) { return hsum8(a.a) + a.s; }

  template <int NT>
  static void run(const uint8_t* w, size_t, const uint8_t* act, const ActLayout& l, int64_t u0, int64_t u1, Acc* acc) {
    const auto* x = reinterpret_cast<const typename V::Block*>(w);
    const int64_t nb = l.cols / kQK;
    const int64_t b1 = 8 * u1 < nb ? 8 * u1 : nb;
    ActRef a[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) a[t] = act_ref(act, l, t);
    for (int64_t b = 8 * u0; b < b1; ++b) {
      const __m256i v = V::get(x[b]);
      const float dw = fp16s(x[b].d), mw = fp16s(x[b].m);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        acc[t].s += mw * reinterpret_cast<const float*>(a[t].x)[b];
        const __m256i p = _mm256_maddubs_epi16(v, load256(a[t].q + kQK * b));
        const __m256i lanes = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
        acc[t].a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_set1_ps(dw * a[t].d[b]), acc[t].a);
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// K quants against kQ8_K activations. chunk(c, sc) gives chunk c's 32 weights as the unsigned
// operand of vpmaddubsw, `off` the value subtracted from each (as bytes, or zero), and the int16
// scale of each weight pair.

// Sub-block scales as int16, prepared once per super-block so that each chunk takes one vpshufb.
// Formats with 16 scales: chunk c's first 16 weights take scale 2c, its last 16 scale 2c + 1.
struct Scales16 {
  __m256i lo, hi;  // scales 0-7 and 8-15 as int16, in both 128-bit lanes
  explicit Scales16(__m128i sc8) {
    const __m256i all = _mm256_cvtepi8_epi16(sc8);
    lo = _mm256_permute4x64_epi64(all, _MM_SHUFFLE(1, 0, 1, 0));
    hi = _mm256_permute4x64_epi64(all, _MM_SHUFFLE(3, 2, 3, 2));
  }
  __m256i chunk(int c) const {
    const int j = c & 3;
    const __m256i pick = _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(0x0100 * (4 * j + 3) + 4 * j + 2)),
                                          _mm_set1_epi16(static_cast<short>(0x0100 * (4 * j + 1) + 4 * j)));
    return _mm256_shuffle_epi8(c < 4 ? lo : hi, pick);
  }
};
// Formats with 8 scales (bytes 0-7 of sm): chunk c takes scale c.
struct Scales8 {
  __m256i all;  // scales 0-7 as int16, in both 128-bit lanes
  explicit Scales8(__m128i sm) : all(_mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm))) {}
  __m256i chunk(int c) const {
    return _mm256_shuffle_epi8(all, _mm256_set1_epi16(static_cast<short>(0x0100 * (2 * c + 1) + 2 * c)));
  }
};
inline __m256i bit_as(__m256i v, int bit, char value) {
  const __m256i m = _mm256_set1_epi8(static_cast<char>(1 << bit));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, m), m), _mm256_set1_epi8(value));
}
inline __m256i shift_right(__m256i v, int bits) { return _mm256_srl_epi16(v, _mm_cvtsi32_si128(bits)); }

enum class Mins { kNone, kLanes8First, kLanes4, kScalar };

struct Q2_KUnpack {
  using Block = BlockQ2_K;
  static constexpr Mins kMins = Mins::kLanes8First;
  static constexpr bool kOffset = false;
  const Block& x;
  Scales16 sc;
  __m256i mins;  // int16 min per 16 elements
  float d, dmin;
  explicit Q2_KUnpack(const Block& b) : x(b), sc(_mm_and_si128(load128(b.scales), _mm_set1_epi8(0x0f))) {
    const __m128i s = load128(b.scales);
    mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), _mm_set1_epi8(0x0f)));
    d = fp16s(b.d);
    dmin = fp16s(b.dmin);
  }
  __m256i chunk(int c, __m256i& s, __m256i&) const {
    s = sc.chunk(c);
    return _mm256_and_si256(shift_right(load256(x.qs + 32 * (c >> 2)), 2 * (c & 3)), _mm256_set1_epi8(3));
  }
};

struct Q3_KUnpack {
  using Block = BlockQ3_K;
  static constexpr Mins kMins = Mins::kNone;
  static constexpr bool kOffset = true;
  const Block& x;
  Scales16 sc;
  __m256i hmask, mins;
  float d, dmin = 0.0f;
  explicit Q3_KUnpack(const Block& b) : x(b), sc(scales_q3k(b.scales)) {
    hmask = load256(b.hmask);
    d = fp16s(b.d);
  }
  // Value = low 2 bits - (4 unless bit c of hmask is set).
  __m256i chunk(int c, __m256i& s, __m256i& off) const {
    s = sc.chunk(c);
    off = _mm256_andnot_si256(bit_as(hmask, c, 4), _mm256_set1_epi8(4));
    return _mm256_and_si256(shift_right(load256(x.qs + 32 * (c >> 2)), 2 * (c & 3)), _mm256_set1_epi8(3));
  }
};

struct Q4_KUnpack {
  using Block = BlockQ4_K;
  static constexpr Mins kMins = Mins::kLanes4;
  static constexpr bool kOffset = false;
  const Block& x;
  __m128i sm, mins;  // mins: int16 m0..m7
  Scales8 sc;
  float d, dmin;
  explicit Q4_KUnpack(const Block& b) : x(b), sm(scales_mins_k4(b.scales)), sc(sm) {
    mins = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));
    d = fp16s(b.d);
    dmin = fp16s(b.dmin);
  }
  __m256i chunk(int c, __m256i& s, __m256i&) const {
    s = sc.chunk(c);
    return _mm256_and_si256(shift_right(load256(x.qs + 32 * (c >> 1)), 4 * (c & 1)), _mm256_set1_epi8(0x0f));
  }
};

struct Q5_KUnpack {
  using Block = BlockQ5_K;
  static constexpr Mins kMins = Mins::kScalar;
  static constexpr bool kOffset = false;
  const Block& x;
  __m128i sm, mins;
  Scales8 sc;
  __m256i qh;
  float d, dmin;
  explicit Q5_KUnpack(const Block& b) : x(b), sm(scales_mins_k4(b.scales)), sc(sm) {
    mins = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));
    qh = load256(b.qh);
    d = fp16s(b.d);
    dmin = fp16s(b.dmin);
  }
  __m256i chunk(int c, __m256i& s, __m256i&) const {
    s = sc.chunk(c);
    const __m256i v = _mm256_and_si256(shift_right(load256(x.qs + 32 * (c >> 1)), 4 * (c & 1)), _mm256_set1_epi8(0x0f));
    return _mm256_or_si256(v, bit_as(qh, c, 16));
  }
};

struct Q6_KUnpack {
  using Block = BlockQ6_K;
  static constexpr Mins kMins = Mins::kNone;
  static constexpr bool kOffset = true;
  const Block& x;
  Scales16 sc;
  __m256i mins;
  float d, dmin = 0.0f;
  explicit Q6_KUnpack(const Block& b) : x(b), sc(load128(b.scales)) {
    d = fp16s(b.d);
  }
  __m256i chunk(int c, __m256i& s, __m256i& off) const {
    s = sc.chunk(c);
    off = _mm256_set1_epi8(32);
    const int h = c >> 2, r = c & 3;
    const __m256i ql = load256(x.ql + 64 * h + 32 * (r & 1));
    const __m256i low = _mm256_and_si256(shift_right(ql, 4 * (r >> 1)), _mm256_set1_epi8(0x0f));
    const __m256i high = _mm256_and_si256(shift_right(load256(x.qh + 32 * h), 2 * r), _mm256_set1_epi8(3));
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
  }
};

struct KAcc {
  __m256 a;
  __m128 m;
  float s;
};

template <class U>
struct KDot {
  static constexpr int kNT = 4;
  using Acc = KAcc;
  static Acc zero() { return {_mm256_setzero_ps(), _mm_setzero_ps(), 0.0f}; }
  static float reduce(const Acc& acc) {
    const float main = hsum8(acc.a);
    if constexpr (U::kMins == Mins::kLanes4) return main + hsum4(acc.m);
    if constexpr (U::kMins == Mins::kScalar) return main + acc.s;
    return main;
  }

  template <int NT>
  static void run(const uint8_t* w, size_t, const uint8_t* act, const ActLayout& l, int64_t u0, int64_t u1, Acc* acc) {
    const auto* x = reinterpret_cast<const typename U::Block*>(w);
    ActRef a[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) a[t] = act_ref(act, l, t);
    for (int64_t b = u0; b < u1; ++b) {
      const U u(x[b]);
      __m256i isum[NT];
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        __m256i sc, off = _mm256_setzero_si256();
        const __m256i v = u.chunk(c, sc, off);
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) {
          const __m256i q = load256(a[t].q + b * kQKK + 32 * c);
          __m256i p = _mm256_maddubs_epi16(v, q);
          if constexpr (U::kOffset) p = _mm256_sub_epi16(p, _mm256_maddubs_epi16(off, q));
          isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, sc));
        }
      }
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const float da = a[t].d[b];
        const __m256 d = _mm256_set1_ps(da * u.d);
        const auto* bsums = reinterpret_cast<const int16_t*>(a[t].x) + 16 * b;
        if constexpr (U::kMins == Mins::kLanes8First) {
          const __m256i m = _mm256_madd_epi16(u.mins, load256(bsums));
          acc[t].a = _mm256_fmadd_ps(_mm256_set1_ps(-da * u.dmin), _mm256_cvtepi32_ps(m), acc[t].a);
        }
        acc[t].a = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum[t]), acc[t].a);
        if constexpr (U::kMins == Mins::kLanes4 || U::kMins == Mins::kScalar) {
          const __m256i bs = load256(bsums);
          const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
          const __m128i prod = _mm_madd_epi16(u.mins, q8s);
          const float dmin = -da * u.dmin;
          if constexpr (U::kMins == Mins::kLanes4) {
            acc[t].m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc[t].m);
          } else {
            __m128i h = _mm_add_epi32(prod, _mm_unpackhi_epi64(prod, prod));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
            acc[t].s += dmin * static_cast<float>(_mm_cvtsi128_si32(h));
          }
        }
      }
    }
  }
};

}  // namespace
}  // namespace lanes
}  // namespace omni::kernels
