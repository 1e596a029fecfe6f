// The NEON kernels (internal to the kernels library; AArch64 only). Included by dot_neon.cpp,
// dot_neon_dotprod.cpp and dot_neon_i8mm.cpp, each compiled for its -march level: the integer
// dots below use vdotq_s32 where the file's flags allow it (__ARM_FEATURE_DOTPROD), widening
// multiplies otherwise, and the Q4_0 chain uses vmmlaq_s32 where __ARM_FEATURE_MATMUL_INT8 is
// set. In an anonymous namespace, like dot_tile.h: every including file gets its own private copy.
//
// The float operations are those of the scalar references in dot_scalar.cpp, lane for lane (the
// swarm compares outputs computed on different CPUs, so an ARM node must give an x86 node's bits):
//  - Q8_0 / Q4_0 / Q5_0: per block 8 lanes (lane m = products 4m..4m+3), lane = fma(d_w d_x,
//    lane sum, lane), reduce_8_lanes at the end. Q4_1 / Q5_1 add m_w * s_x to a scalar. Q4_0
//    with rows % 8 == 0: one chain per output, acc = fma(block sum, d_w d_x, acc).
//  - K quants: 8 int32 lanes per super-block (lane m: elements 4m..4m+3 of each 32-element chunk
//    times its scale), then lane = fma(d, lane, .); the mins as each format adds them.
//  - F16 / F32 / BF16: tinyBLAS's 16 FMA lanes for prompt batches, ggml_vec_dot's 4 x 16 lanes
//    (BF16: 2 x 16, unfused) for single rows, reduce_16_lanes.
// Integer sums are exact whatever the instruction (no intermediate can overflow: an activation is
// never -128, so a pair of int8 products stays within int16), so only the float order matters.
#pragma once

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/activation_quant.h"
#include "kernels/blocks.h"
#include "kernels/dot_kernels.h"
#include "kernels/dot_tile.h"

namespace omni::kernels {
namespace neon {
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

inline float fp16s(uint16_t h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }

// Lane i of acc plus the sum of products 4i .. 4i + 3 of a and b.
inline int32x4_t dot4(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(acc, a, b);
#else
  const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
  const int16x8_t hi = vmull_high_s8(a, b);
  return vpadalq_s16(acc, vpaddq_s16(lo, hi));  // pairs, then pairs of pairs
#endif
}

// reduce_8_lanes on lanes lo = 0..3, hi = 4..7: u = hi + lo, then (u0 + u2) + (u1 + u3).
inline float hsum8(float32x4_t lo, float32x4_t hi) {
  const float32x4_t u = vaddq_f32(hi, lo);
  const float32x2_t v = vadd_f32(vget_low_f32(u), vget_high_f32(u));
  return vget_lane_f32(v, 0) + vget_lane_f32(v, 1);
}
// reduce_16_lanes on lanes a0 = 0..3, a1 = 4..7, a2 = 8..11, a3 = 12..15.
inline float hsum16(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3) {
  return hsum8(vaddq_f32(a2, a0), vaddq_f32(a3, a1));
}

// ---------------------------------------------------------------------------------------------
// F16 weights against fp16-rounded f32 activations, F32 against f32, BF16 against bf16-rounded.

struct WeightsF16 {
  static float32x4_t vec(const uint8_t* w, int64_t i) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(w) + i)));
  }
  static float one(const uint8_t* w, int64_t i) { return fp16s(load_u16(w + 2 * i)); }
};
struct WeightsF32 {
  static float32x4_t vec(const uint8_t* w, int64_t i) { return vld1q_f32(reinterpret_cast<const float*>(w) + i); }
  static float one(const uint8_t* w, int64_t i) { return reinterpret_cast<const float*>(w)[i]; }
};
struct WeightsBF16 {
  static float32x4_t vec(const uint8_t* w, int64_t i) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(w) + i), 16));
  }
  static float one(const uint8_t* w, int64_t i) {
    const uint32_t bits = static_cast<uint32_t>(load_u16(w + 2 * i)) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
};

// tinyBLAS: one 16-lane FMA chain per output; cols % 16 == 0.
template <class L>
struct Batched16 {
  static constexpr int kNR = 2, kNT = 2;
  template <int NR, int NT>
  static void dot_rows(const uint8_t* w, size_t w_stride, const uint8_t* act, const ActLayout& l, float* out) {
    const float* a[NT];
    float32x4_t acc[NR * NT][4];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) a[t] = reinterpret_cast<const float*>(act + t * l.stride);
#pragma GCC unroll 8
    for (int k = 0; k < NR * NT; ++k)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[k][j] = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < l.cols; i += 16) {
      float32x4_t wv[NR][4];
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) wv[r][j] = L::vec(w + r * w_stride, i + 4 * j);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        float32x4_t av[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) av[j] = vld1q_f32(a[t] + i + 4 * j);
#pragma GCC unroll 8
        for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) acc[r * NT + t][j] = vfmaq_f32(acc[r * NT + t][j], wv[r][j], av[j]);
      }
    }
#pragma GCC unroll 8
    for (int k = 0; k < NR * NT; ++k) out[k] = hsum16(acc[k][0], acc[k][1], acc[k][2], acc[k][3]);
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
        float32x4_t acc[16];  // acc[4j + k]: lanes 4k .. 4k + 3 of accumulator j
#pragma GCC unroll 16
        for (int k = 0; k < 16; ++k) acc[k] = vdupq_n_f32(0.0f);
        for (int64_t i = 0; i < np; i += 64) {
#pragma GCC unroll 16
          for (int k = 0; k < 16; ++k) acc[k] = vfmaq_f32(acc[k], L::vec(wr, i + 4 * k), vld1q_f32(a + i + 4 * k));
        }
        float32x4_t s[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) s[k] = vaddq_f32(vaddq_f32(acc[k], acc[8 + k]), vaddq_f32(acc[4 + k], acc[12 + k]));
        const float reduced = hsum16(s[0], s[1], s[2], s[3]);
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
// 32-element steps, c = c + x * y (not fused); each reduced and added in double, then the tail.
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
        float32x4_t c[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) c[k] = vdupq_n_f32(0.0f);
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
#pragma GCC unroll 8
          for (int k = 0; k < 8; ++k)
            c[k] = vaddq_f32(vmulq_f32(WeightsBF16::vec(wr, i + 4 * k), vld1q_f32(a + i + 4 * k)), c[k]);
        }
        double sum = 0.0;
        sum += static_cast<double>(hsum16(c[0], c[1], c[2], c[3]));
        sum += static_cast<double>(hsum16(c[4], c[5], c[6], c[7]));
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
// 32-element block formats against kQ8_0 / kQ8_1 activations. Values: elements 0..15, 16..31.

struct Values {
  int8x16_t lo, hi;
};

inline Values nibbles(const uint8_t* qs) {
  const uint8x16_t q = vld1q_u8(qs);
  return {vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), vreinterpretq_s8_u8(vshrq_n_u8(q, 4))};
}

// 16 bits (two bytes) -> 16 bytes of 0 or 16 (the fifth bit of the _0 / _1 formats' values).
inline uint8x16_t fifth_bits(uint32_t bits16) {
  static constexpr uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t spread = vcombine_u8(vdup_n_u8(static_cast<uint8_t>(bits16)), vdup_n_u8(static_cast<uint8_t>(bits16 >> 8)));
  return vandq_u8(vtstq_u8(spread, vld1q_u8(kBit)), vdupq_n_u8(16));
}

struct ValuesQ8_0 {
  using Block = BlockQ8_0;
  static Values get(const Block& b) { return {vld1q_s8(b.qs), vld1q_s8(b.qs + 16)}; }
};
struct ValuesQ4_0 {
  using Block = BlockQ4_0;
  static Values get(const Block& b) {
    const Values v = nibbles(b.qs);
    return {vsubq_s8(v.lo, vdupq_n_s8(8)), vsubq_s8(v.hi, vdupq_n_s8(8))};
  }
};
struct ValuesQ5_0 {
  using Block = BlockQ5_0;
  static Values get(const Block& b) {
    const uint32_t qh = load_u32(b.qh);
    const Values v = nibbles(b.qs);
    return {vsubq_s8(vorrq_s8(v.lo, vreinterpretq_s8_u8(fifth_bits(qh & 0xffffu))), vdupq_n_s8(16)),
            vsubq_s8(vorrq_s8(v.hi, vreinterpretq_s8_u8(fifth_bits(qh >> 16))), vdupq_n_s8(16))};
  }
};
// Unsigned values of the _1 formats (below 32, so valid signed operands too).
struct ValuesQ4_1 {
  using Block = BlockQ4_1;
  static Values get(const Block& b) { return nibbles(b.qs); }
};
struct ValuesQ5_1 {
  using Block = BlockQ5_1;
  static Values get(const Block& b) {
    const uint32_t qh = load_u32(b.qh);
    const Values v = nibbles(b.qs);
    return {vorrq_s8(v.lo, vreinterpretq_s8_u8(fifth_bits(qh & 0xffffu))),
            vorrq_s8(v.hi, vreinterpretq_s8_u8(fifth_bits(qh >> 16)))};
  }
};

struct Lanes8 {
  float32x4_t lo, hi;
};

template <class V>
struct LaneBlocks {
  static constexpr int kNT = 4;
  using Acc = Lanes8;
  static Acc zero() { return {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
  static float reduce(const Acc& a) { return hsum8(a.lo, a.hi); }

  template <int NT>
  static void run(const uint8_t* w, size_t, const uint8_t* act, const ActLayout& l, int64_t u0, int64_t u1, Acc* acc) {
    const auto* x = reinterpret_cast<const typename V::Block*>(w);
    const int64_t nb = l.cols / kQK;
    const int64_t b1 = 8 * u1 < nb ? 8 * u1 : nb;
    ActRef a[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) a[t] = act_ref(act, l, t);
    for (int64_t b = 8 * u0; b < b1; ++b) {
      const Values v = V::get(x[b]);
      const float dw = fp16s(x[b].d);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const int8_t* q = reinterpret_cast<const int8_t*>(a[t].q) + kQK * b;
        const int32x4_t s0 = dot4(vdupq_n_s32(0), v.lo, vld1q_s8(q));
        const int32x4_t s1 = dot4(vdupq_n_s32(0), v.hi, vld1q_s8(q + 16));
        const float32x4_t d = vdupq_n_f32(dw * a[t].d[b]);
        acc[t].lo = vfmaq_f32(acc[t].lo, d, vcvtq_f32_s32(s0));
        acc[t].hi = vfmaq_f32(acc[t].hi, d, vcvtq_f32_s32(s1));
      }
    }
  }
};

// Q4_1 / Q5_1: lane = fma(lane sum, d_w d_x, lane); the mins as summs += m_w * s_x; hsum8 + summs.
struct Acc1 {
  Lanes8 a;
  float s;
};
template <class V>
struct LaneBlocks1 {
  static constexpr int kNT = 4;
  using Acc = Acc1;
  static Acc zero() { return {{vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}, 0.0f}; }
  static float reduce(const Acc& a) { return hsum8(a.a.lo, a.a.hi) + a.s; }

  template <int NT>
  static void run(const uint8_t* w, size_t, const uint8_t* act, const ActLayout& l, int64_t u0, int64_t u1, Acc* acc) {
    const auto* x = reinterpret_cast<const typename V::Block*>(w);
    const int64_t nb = l.cols / kQK;
    const int64_t b1 = 8 * u1 < nb ? 8 * u1 : nb;
    ActRef a[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) a[t] = act_ref(act, l, t);
    for (int64_t b = 8 * u0; b < b1; ++b) {
      const Values v = V::get(x[b]);
      const float dw = fp16s(x[b].d), mw = fp16s(x[b].m);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        acc[t].s += mw * reinterpret_cast<const float*>(a[t].x)[b];
        const int8_t* q = reinterpret_cast<const int8_t*>(a[t].q) + kQK * b;
        const int32x4_t s0 = dot4(vdupq_n_s32(0), v.lo, vld1q_s8(q));
        const int32x4_t s1 = dot4(vdupq_n_s32(0), v.hi, vld1q_s8(q + 16));
        const float32x4_t d = vdupq_n_f32(dw * a[t].d[b]);
        acc[t].a.lo = vfmaq_f32(acc[t].a.lo, vcvtq_f32_s32(s0), d);
        acc[t].a.hi = vfmaq_f32(acc[t].a.hi, vcvtq_f32_s32(s1), d);
      }
    }
  }
};

// Q4_0 as ggml's repacked (rows % 8 == 0) kernels: acc = fma(block sum, d_w d_x, acc), one chain
// per output. A float kernel over 4 rows: lane r of an accumulator is row r's chain. The block
// sums are exact integers, so the i8mm build may form them with vmmlaq_s32, two rows by two tokens
// at a time.
struct Q4_0Chain {
  static constexpr int kNR = 4, kNT = 4;

  // The d of each of n (<= 4) rows' block at p, as floats (zero past n).
  template <int N>
  static float32x4_t row_scales(const uint8_t* p, size_t stride) {
    uint16_t h[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
    for (int r = 0; r < N; ++r) h[r] = load_u16(p + r * stride);
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
  }

  template <int NR, int NT>
  static void dot_rows(const uint8_t* w, size_t w_stride, const uint8_t* act, const ActLayout& l, float* out) {
    const int64_t nb = l.cols / kQK;
    ActRef a[NT];
    float32x4_t acc[NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      a[t] = act_ref(act, l, t);
      acc[t] = vdupq_n_f32(0.0f);
    }
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = w + b * static_cast<int64_t>(sizeof(BlockQ4_0));
      Values v[4];
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r)
        v[r] = r < NR ? ValuesQ4_0::get(*reinterpret_cast<const BlockQ4_0*>(blk + r * w_stride))
                      : Values{vdupq_n_s8(0), vdupq_n_s8(0)};
      const float32x4_t dw = row_scales<NR>(blk, w_stride);
      int32x4_t sums[NT];  // lane r: row r's block sum
#if defined(__ARM_FEATURE_MATMUL_INT8)
      if constexpr (NT >= 2) {
        block_sums_mmla<NT>(v, a, b, sums);
      } else {
        block_sums_dot<NT>(v, a, b, sums);
      }
#else
      block_sums_dot<NT>(v, a, b, sums);
#endif
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t)
        acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(sums[t]), vmulq_f32(dw, vdupq_n_f32(a[t].d[b])));
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      float lanes[4];
      vst1q_f32(lanes, acc[t]);
#pragma GCC unroll 4
      for (int r = 0; r < NR; ++r) out[r * NT + t] = lanes[r];
    }
  }

  template <int NT>
  static void block_sums_dot(const Values* v, const ActRef* a, int64_t b, int32x4_t* sums) {
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const int8_t* q = reinterpret_cast<const int8_t*>(a[t].q) + kQK * b;
      const int8x16_t q0 = vld1q_s8(q), q1 = vld1q_s8(q + 16);
      int32x4_t s[4];
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) s[r] = dot4(dot4(vdupq_n_s32(0), v[r].lo, q0), v[r].hi, q1);
      sums[t] = vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]));
    }
  }

#if defined(__ARM_FEATURE_MATMUL_INT8)
  // 8-byte halves of two vectors side by side: (lo of a, lo of b) or (hi of a, hi of b).
  static int8x16_t zip_lo(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
  }
  static int8x16_t zip_hi(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
  }

  // vmmlaq_s32 on (rows i, i+1) x (tokens j, j+1) gives lanes (i j, i j+1, i+1 j, i+1 j+1). An odd
  // last token is paired with itself.
  template <int NT>
  static void block_sums_mmla(const Values* v, const ActRef* a, int64_t b, int32x4_t* sums) {
    int8x16_t rows[2][4];  // row pair p, elements 8k .. 8k + 7 of both rows
#pragma GCC unroll 2
    for (int p = 0; p < 2; ++p) {
      rows[p][0] = zip_lo(v[2 * p].lo, v[2 * p + 1].lo);
      rows[p][1] = zip_hi(v[2 * p].lo, v[2 * p + 1].lo);
      rows[p][2] = zip_lo(v[2 * p].hi, v[2 * p + 1].hi);
      rows[p][3] = zip_hi(v[2 * p].hi, v[2 * p + 1].hi);
    }
#pragma GCC unroll 4
    for (int j = 0; j < NT; j += 2) {
      const int8_t* q0 = reinterpret_cast<const int8_t*>(a[j].q) + kQK * b;
      const int8_t* q1 = reinterpret_cast<const int8_t*>(a[j + 1 < NT ? j + 1 : j].q) + kQK * b;
      const int8x16_t t0lo = vld1q_s8(q0), t0hi = vld1q_s8(q0 + 16);
      const int8x16_t t1lo = vld1q_s8(q1), t1hi = vld1q_s8(q1 + 16);
      const int8x16_t toks[4] = {zip_lo(t0lo, t1lo), zip_hi(t0lo, t1lo), zip_lo(t0hi, t1hi), zip_hi(t0hi, t1hi)};
      int32x4_t m[2];
#pragma GCC unroll 2
      for (int p = 0; p < 2; ++p) {
        m[p] = vdupq_n_s32(0);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) m[p] = vmmlaq_s32(m[p], rows[p][k], toks[k]);
      }
      // m[p] = (2p j, 2p j+1, 2p+1 j, 2p+1 j+1): token j takes lanes 0 and 2 of both.
      const int32x4_t even = vreinterpretq_s32_s64(vzip1q_s64(vreinterpretq_s64_s32(m[0]), vreinterpretq_s64_s32(m[1])));
      const int32x4_t odd = vreinterpretq_s32_s64(vzip2q_s64(vreinterpretq_s64_s32(m[0]), vreinterpretq_s64_s32(m[1])));
      // even = (0 j, 0 j+1, 2 j, 2 j+1), odd = (1 j, 1 j+1, 3 j, 3 j+1).
      sums[j] = vzip1q_s32(vuzp1q_s32(even, even), vuzp1q_s32(odd, odd));
      if (j + 1 < NT) sums[j + 1] = vzip1q_s32(vuzp2q_s32(even, even), vuzp2q_s32(odd, odd));
    }
  }
#endif
};

// ---------------------------------------------------------------------------------------------
// K quants against kQ8_K activations. Each unpacker gives chunk c's 32 signed weights (offsets
// applied) and the integer scale of its two 16-element halves, plus the mins per format.

enum class Mins { kNone, kLanes8First, kLanes4, kScalar };

// The 16 signed scales of a Q3_K super-block (six bits, offset 32 removed).
inline void unpack_scales_q3k(const uint8_t* s, int* out) {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? (s[j] & 0x0f) : (s[j - 8] >> 4);
    const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = (low | (high << 4)) - 32;
  }
}
// The 8 scales and 8 mins (6 bits each) of a Q4_K / Q5_K super-block.
inline void unpack_scales_k4(const uint8_t* s, int* scales, int* mins) {
  for (int j = 0; j < 4; ++j) {
    scales[j] = s[j] & 63;
    mins[j] = s[j + 4] & 63;
    scales[4 + j] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
    mins[4 + j] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
  }
}

inline int8x16_t two_bits(const uint8_t* p, int shift) {
  return vreinterpretq_s8_u8(vandq_u8(vshlq_u8(vld1q_u8(p), vdupq_n_s8(static_cast<int8_t>(-shift))), vdupq_n_u8(3)));
}
inline int8x16_t four_bits(const uint8_t* p, int shift) {
  return vreinterpretq_s8_u8(vandq_u8(vshlq_u8(vld1q_u8(p), vdupq_n_s8(static_cast<int8_t>(-shift))), vdupq_n_u8(15)));
}
// Bytes of `value` where bit `bit` of p's bytes is set, else 0.
inline int8x16_t bit_as(const uint8_t* p, int bit, uint8_t value) {
  return vreinterpretq_s8_u8(vandq_u8(vtstq_u8(vld1q_u8(p), vdupq_n_u8(static_cast<uint8_t>(1u << bit))), vdupq_n_u8(value)));
}

struct Q2_KUnpack {
  using Block = BlockQ2_K;
  static constexpr Mins kMins = Mins::kLanes8First;
  const Block& x;
  int scale[16], min[16];
  float d, dmin;
  explicit Q2_KUnpack(const Block& b) : x(b) {
    for (int j = 0; j < 16; ++j) {
      scale[j] = b.scales[j] & 0x0f;
      min[j] = b.scales[j] >> 4;
    }
    d = fp16s(b.d);
    dmin = fp16s(b.dmin);
  }
  Values chunk(int c, int& s0, int& s1) const {
    s0 = scale[2 * c];
    s1 = scale[2 * c + 1];
    const uint8_t* q = x.qs + 32 * (c >> 2);
    return {two_bits(q, 2 * (c & 3)), two_bits(q + 16, 2 * (c & 3))};
  }
};

struct Q3_KUnpack {
  using Block = BlockQ3_K;
  static constexpr Mins kMins = Mins::kNone;
  const Block& x;
  int scale[16], min[16] = {};
  float d, dmin = 0.0f;
  explicit Q3_KUnpack(const Block& b) : x(b) {
    unpack_scales_q3k(b.scales, scale);
    d = fp16s(b.d);
  }
  // Value = low 2 bits - (4 unless bit c of hmask is set).
  Values chunk(int c, int& s0, int& s1) const {
    s0 = scale[2 * c];
    s1 = scale[2 * c + 1];
    const uint8_t* q = x.qs + 32 * (c >> 2);
    const int8x16_t four = vdupq_n_s8(4);
    return {vsubq_s8(two_bits(q, 2 * (c & 3)), vsubq_s8(four, bit_as(x.hmask, c, 4))),
            vsubq_s8(two_bits(q + 16, 2 * (c & 3)), vsubq_s8(four, bit_as(x.hmask + 16, c, 4)))};
  }
};

struct Q4_KUnpack {
  using Block = BlockQ4_K;
  static constexpr Mins kMins = Mins::kLanes4;
  const Block& x;
  int scale[8], min[8];
  float d, dmin;
  explicit Q4_KUnpack(const Block& b) : x(b) {
    unpack_scales_k4(b.scales, scale, min);
    d = fp16s(b.d);
    dmin = fp16s(b.dmin);
  }
  Values chunk(int c, int& s0, int& s1) const {
    s0 = s1 = scale[c];
    const uint8_t* q = x.qs + 32 * (c >> 1);
    return {four_bits(q, 4 * (c & 1)), four_bits(q + 16, 4 * (c & 1))};
  }
};

struct Q5_KUnpack {
  using Block = BlockQ5_K;
  static constexpr Mins kMins = Mins::kScalar;
  const Block& x;
  int scale[8], min[8];
  float d, dmin;
  explicit Q5_KUnpack(const Block& b) : x(b) {
    unpack_scales_k4(b.scales, scale, min);
    d = fp16s(b.d);
    dmin = fp16s(b.dmin);
  }
  Values chunk(int c, int& s0, int& s1) const {
    s0 = s1 = scale[c];
    const uint8_t* q = x.qs + 32 * (c >> 1);
    return {vorrq_s8(four_bits(q, 4 * (c & 1)), bit_as(x.qh, c, 16)),
            vorrq_s8(four_bits(q + 16, 4 * (c & 1)), bit_as(x.qh + 16, c, 16))};
  }
};

struct Q6_KUnpack {
  using Block = BlockQ6_K;
  static constexpr Mins kMins = Mins::kNone;
  const Block& x;
  int min[16] = {};
  float d, dmin = 0.0f;
  explicit Q6_KUnpack(const Block& b) : x(b) { d = fp16s(b.d); }
  Values chunk(int c, int& s0, int& s1) const {
    s0 = x.scales[2 * c];
    s1 = x.scales[2 * c + 1];
    const int h = c >> 2, r = c & 3;
    const uint8_t* ql = x.ql + 64 * h + 32 * (r & 1);
    const uint8_t* qh = x.qh + 32 * h;
    const int8x16_t lo = vorrq_s8(four_bits(ql, 4 * (r >> 1)), vshlq_n_s8(two_bits(qh, 2 * r), 4));
    const int8x16_t hi = vorrq_s8(four_bits(ql + 16, 4 * (r >> 1)), vshlq_n_s8(two_bits(qh + 16, 2 * r), 4));
    return {vsubq_s8(lo, vdupq_n_s8(32)), vsubq_s8(hi, vdupq_n_s8(32))};
  }
};

struct KAcc {
  Lanes8 a;
  float32x4_t m;
  float s;
};

template <class U>
struct KDot {
  static constexpr int kNT = 4;
  using Acc = KAcc;
  static Acc zero() { return {{vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}, vdupq_n_f32(0.0f), 0.0f}; }
  static float reduce(const Acc& acc) {
    const float main = hsum8(acc.a.lo, acc.a.hi);
    if constexpr (U::kMins == Mins::kLanes4) {
      // (m0 + m2) + (m1 + m3)
      const float32x2_t v = vadd_f32(vget_low_f32(acc.m), vget_high_f32(acc.m));
      return main + (vget_lane_f32(v, 0) + vget_lane_f32(v, 1));
    }
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
      int32x4_t lo[NT], hi[NT];
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) lo[t] = hi[t] = vdupq_n_s32(0);
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        int s0, s1;
        const Values v = u.chunk(c, s0, s1);
#pragma GCC unroll 8
        for (int t = 0; t < NT; ++t) {
          const int8_t* q = reinterpret_cast<const int8_t*>(a[t].q) + b * kQKK + 32 * c;
          lo[t] = vmlaq_n_s32(lo[t], dot4(vdupq_n_s32(0), v.lo, vld1q_s8(q)), s0);
          hi[t] = vmlaq_n_s32(hi[t], dot4(vdupq_n_s32(0), v.hi, vld1q_s8(q + 16)), s1);
        }
      }
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const float da = a[t].d[b];
        const float dmin = -da * u.dmin;
        const auto* bs = reinterpret_cast<const int16_t*>(a[t].x) + 16 * b;
        if constexpr (U::kMins == Mins::kLanes8First) {
          int m[8];
          for (int j = 0; j < 8; ++j) m[j] = u.min[2 * j] * bs[2 * j] + u.min[2 * j + 1] * bs[2 * j + 1];
          const float32x4_t dm = vdupq_n_f32(dmin);
          acc[t].a.lo = vfmaq_f32(acc[t].a.lo, dm, vcvtq_f32_s32(vld1q_s32(m)));
          acc[t].a.hi = vfmaq_f32(acc[t].a.hi, dm, vcvtq_f32_s32(vld1q_s32(m + 4)));
        }
        const float32x4_t d = vdupq_n_f32(da * u.d);
        acc[t].a.lo = vfmaq_f32(acc[t].a.lo, d, vcvtq_f32_s32(lo[t]));
        acc[t].a.hi = vfmaq_f32(acc[t].a.hi, d, vcvtq_f32_s32(hi[t]));
        if constexpr (U::kMins == Mins::kLanes4 || U::kMins == Mins::kScalar) {
          int q8s[8], prod[4];
          for (int j = 0; j < 8; ++j) q8s[j] = bs[2 * j] + bs[2 * j + 1];
          for (int j = 0; j < 4; ++j) prod[j] = u.min[2 * j] * q8s[2 * j] + u.min[2 * j + 1] * q8s[2 * j + 1];
          if constexpr (U::kMins == Mins::kLanes4) {
            acc[t].m = vfmaq_f32(acc[t].m, vdupq_n_f32(dmin), vcvtq_f32_s32(vld1q_s32(prod)));
          } else {
            acc[t].s += dmin * static_cast<float>(prod[0] + prod[1] + prod[2] + prod[3]);
          }
        }
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// The table of the including file's level.

constexpr TypeKernel kernel(ActFormat act, TileFn fn) { return {act, quantize_activation_ref, fn}; }

const KernelTable& table() {
  static const KernelTable t = {{
      kernel(ActFormat::kF32, tile<F32Batched>),
      kernel(ActFormat::kF16, tile<F16Batched>),
      kernel(ActFormat::kBF16, tile<BF16Batched>),
      kernel(ActFormat::kQ8_0, tile<LaneBlocks<ValuesQ8_0>>),
      kernel(ActFormat::kQ8_0, tile<LaneBlocks<ValuesQ4_0>>),
      kernel(ActFormat::kQ8_1, tile<LaneBlocks1<ValuesQ4_1>>),
      kernel(ActFormat::kQ8_0, tile<LaneBlocks<ValuesQ5_0>>),
      kernel(ActFormat::kQ8_1, tile<LaneBlocks1<ValuesQ5_1>>),
      kernel(ActFormat::kQ8_K, tile<KDot<Q2_KUnpack>>),
      kernel(ActFormat::kQ8_K, tile<KDot<Q3_KUnpack>>),
      kernel(ActFormat::kQ8_K, tile<KDot<Q4_KUnpack>>),
      kernel(ActFormat::kQ8_K, tile<KDot<Q5_KUnpack>>),
      kernel(ActFormat::kQ8_K, tile<KDot<Q6_KUnpack>>),
  },
  kernel(ActFormat::kF16, tile<F16Single>),
  kernel(ActFormat::kF32, tile<F32Single>),
  kernel(ActFormat::kBF16, tile<BF16Single>),
  kernel(ActFormat::kQ8_0, tile<Q4_0Chain>)};
  return t;
}

}  // namespace
}  // namespace neon
}  // namespace omni::kernels
