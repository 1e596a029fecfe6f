// Scalar reference dot products: ggml's vec_dot formulas (integer dot per block or sub-block, then
// the float scales), one output at a time. Portable C++, the oracle the SIMD kernels are tested
// against, and the path for CPUs without AVX2. Compiled with -ffp-contract=off so the float
// operations are exactly the ones written.
#include <cmath>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/dot_kernels.h"
#include "kernels/fp16.h"
#include "kernels/ops.h"

namespace omni::kernels {
namespace {

// The parts of one activation record.
struct Act {
  const int8_t* q;
  const float* d;
  const void* x;
  explicit Act(const uint8_t* rec, const ActLayout& l)
      : q(reinterpret_cast<const int8_t*>(rec)),
        d(reinterpret_cast<const float*>(rec + l.d_offset)),
        x(rec + l.x_offset) {}
};

// The 8 six-bit scales and 8 six-bit mins of a Q4_K / Q5_K super-block, unpacked from their 12
// bytes: out[0..8) scales, out[8..16) mins (ggml's get_scale_min_k4, all at once).
void unpack_scales_k4(const uint8_t* s, uint8_t* out) {
  for (int j = 0; j < 4; ++j) {
    out[j] = s[j] & 63;
    out[8 + j] = s[j + 4] & 63;
    out[4 + j] = static_cast<uint8_t>((s[j + 8] & 0x0f) | ((s[j] >> 6) << 4));
    out[12 + j] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
  }
}

// The 16 signed scales of a Q3_K super-block (six bits, offset 32 removed). The low 4 bits of
// scale j are nibble (j / 8) of byte j % 8; the high 2 bits are bit pair j / 4 of byte 8 + j % 4.
void unpack_scales_q3k(const uint8_t* s, int8_t* out) {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? (s[j] & 0x0f) : (s[j - 8] >> 4);
    const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = static_cast<int8_t>((low | (high << 4)) - 32);
  }
}

inline float fp16(uint16_t h) { return fp16_to_fp32(h); }

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}






// ---------------------------------------------------------------------------------------------
// The lane-exact references (docs/design.md, "Numerical parity with llama.cpp"): the SIMD paths
// in dot_lanes_x86.h must give these bits.

float weight_f16(const uint8_t* w, int64_t i) { return fp16(reinterpret_cast<const uint16_t*>(w)[i]); }
float weight_f32(const uint8_t* w, int64_t i) { return reinterpret_cast<const float*>(w)[i]; }
float weight_bf16(const uint8_t* w, int64_t i) { return bf16_to_fp32(reinterpret_cast<const uint16_t*>(w)[i]); }
using WeightFn = float (*)(const uint8_t*, int64_t);

// F16 / F32 / BF16 prompt batches (tinyBLAS): 16 lanes, one FMA chain each over 16-element
// steps, reduce16; cols % 16 == 0.
template <WeightFn W>
float dot_batched16(const uint8_t* w, const uint8_t* a, const ActLayout& l) {
  const auto* y = reinterpret_cast<const float*>(a);
  float lanes[16] = {};
  for (int64_t i = 0; i < l.cols; i += 16)
    for (int k = 0; k < 16; ++k) lanes[k] = std::fma(W(w, i + k), y[i + k], lanes[k]);
  return reduce_16_lanes(lanes);
}

// F16 / F32 single rows (ggml_vec_dot_f16 / _f32): 4 x 16 lanes over 64-element steps; acc0 +=
// acc2, acc1 += acc3, acc0 += acc1, reduce16; the tail added in double (F16) or float (F32).
template <WeightFn W, bool kDoubleTail>
float dot_single64(const uint8_t* w, const uint8_t* a, const ActLayout& l) {
  const auto* y = reinterpret_cast<const float*>(a);
  const int64_t n = l.cols, np = n & ~int64_t{63};
  float acc[4][16] = {};
  for (int64_t i = 0; i < np; i += 64)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 16; ++k) acc[j][k] = std::fma(W(w, i + 16 * j + k), y[i + 16 * j + k], acc[j][k]);
  for (int k = 0; k < 16; ++k) {
    acc[0][k] = acc[0][k] + acc[2][k];
    acc[1][k] = acc[1][k] + acc[3][k];
  }
  for (int k = 0; k < 16; ++k) acc[0][k] = acc[0][k] + acc[1][k];
  const float reduced = reduce_16_lanes(acc[0]);
  if constexpr (kDoubleTail) {
    double sum = reduced;
    for (int64_t i = np; i < n; ++i) sum += static_cast<double>(W(w, i) * y[i]);
    return static_cast<float>(sum);
  } else {
    float sum = reduced;
    for (int64_t i = np; i < n; ++i) sum += W(w, i) * y[i];
    return sum;
  }
}

// BF16 single rows (ggml_vec_dot_bf16, AVX512F without AVX512-BF16): two 16-lane accumulators
// over 32-element steps, c = c + x * y unfused; both reduced and added in double, tail in double.
float dot_bf16_single_ref(const uint8_t* w, const uint8_t* a, const ActLayout& l) {
  const auto* y = reinterpret_cast<const float*>(a);
  const int64_t n = l.cols;
  float c[2][16] = {};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 16; ++k) c[j][k] = weight_bf16(w, i + 16 * j + k) * y[i + 16 * j + k] + c[j][k];
  double sum = 0.0;
  sum += static_cast<double>(reduce_16_lanes(c[0]));
  sum += static_cast<double>(reduce_16_lanes(c[1]));
  for (; i < n; ++i) sum += static_cast<double>(weight_bf16(w, i) * y[i]);
  return static_cast<float>(sum);
}

// The 32 signed values of a Q8_0 / Q4_0 block, in element order.
void block_values(const BlockQ8_0& b, int* v) {
  for (int j = 0; j < kQK; ++j) v[j] = b.qs[j];
}
void block_values(const BlockQ4_0& b, int* v) {
  for (int j = 0; j < kQK / 2; ++j) {
    v[j] = (b.qs[j] & 0x0f) - 8;
    v[j + kQK / 2] = (b.qs[j] >> 4) - 8;
  }
}

void block_values(const BlockQ5_0& b, int* v) {
  const uint32_t qh = load_u32(b.qh);
  for (int j = 0; j < kQK / 2; ++j) {
    v[j] = ((b.qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4)) - 16;
    v[j + kQK / 2] = ((b.qs[j] >> 4) | static_cast<int>(((qh >> (j + kQK / 2)) & 1u) << 4)) - 16;
  }
}
void block_values(const BlockQ4_1& b, int* v) {
  for (int j = 0; j < kQK / 2; ++j) {
    v[j] = b.qs[j] & 0x0f;
    v[j + kQK / 2] = b.qs[j] >> 4;
  }
}
void block_values(const BlockQ5_1& b, int* v) {
  const uint32_t qh = load_u32(b.qh);
  for (int j = 0; j < kQK / 2; ++j) {
    v[j] = (b.qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
    v[j + kQK / 2] = (b.qs[j] >> 4) | static_cast<int>(((qh >> (j + kQK / 2)) & 1u) << 4);
  }
}

// Per block 8 lanes (lane m: products 4m..4m+3), lane = fma(d_w d_x, lane sum, lane); hsum8.
template <class Block>
float dot_lanes8(const uint8_t* w, const uint8_t* a, const ActLayout& l) {
  const auto* x = reinterpret_cast<const Block*>(w);
  const Act y(a, l);
  float acc[8] = {};
  for (int64_t b = 0; b < l.cols / kQK; ++b) {
    int v[kQK];
    block_values(x[b], v);
    const int8_t* q = y.q + b * kQK;
    const float d = fp16(x[b].d) * y.d[b];
    for (int m = 0; m < 8; ++m) {
      int s = 0;
      for (int k = 4 * m; k < 4 * m + 4; ++k) s += v[k] * q[k];
      acc[m] = std::fma(d, static_cast<float>(s), acc[m]);
    }
  }
  return reduce_8_lanes(acc);
}

// Q4_1 / Q5_1 (ggml's AVX2 vec_dot): lane = fma(lane sum, d_w d_x, lane); summs += m_w * s_x;
// hsum8 + summs.
template <class Block>
float dot_lanes8_min(const uint8_t* w, const uint8_t* a, const ActLayout& l) {
  const auto* x = reinterpret_cast<const Block*>(w);
  const Act y(a, l);
  const auto* s = static_cast<const float*>(y.x);
  float acc[8] = {}, summs = 0.0f;
  for (int64_t b = 0; b < l.cols / kQK; ++b) {
    int v[kQK];
    block_values(x[b], v);
    const int8_t* q = y.q + b * kQK;
    summs += fp16(x[b].m) * s[b];
    const float d = fp16(x[b].d) * y.d[b];
    for (int m = 0; m < 8; ++m) {
      int sum = 0;
      for (int k = 4 * m; k < 4 * m + 4; ++k) sum += v[k] * q[k];
      acc[m] = std::fma(static_cast<float>(sum), d, acc[m]);
    }
  }
  return reduce_8_lanes(acc) + summs;
}

// Q4_0 as ggml's repacked kernels (rows % 8 == 0): acc = fma(block sum, d_w d_x, acc).
float dot_q4_0_chain(const uint8_t* w, const uint8_t* a, const ActLayout& l) {
  const auto* x = reinterpret_cast<const BlockQ4_0*>(w);
  const Act y(a, l);
  float acc = 0.0f;
  for (int64_t b = 0; b < l.cols / kQK; ++b) {
    int v[kQK];
    block_values(x[b], v);
    const int8_t* q = y.q + b * kQK;
    int s = 0;
    for (int k = 0; k < kQK; ++k) s += v[k] * q[k];
    acc = std::fma(static_cast<float>(s), fp16(x[b].d) * y.d[b], acc);
  }
  return acc;
}

// K quants: per super-block the 256 signed weight values (offsets applied) in element order and
// the scale of each 16 elements; lanes as ggml's AVX2 vec_dot; mins as each format adds them.
enum class KMins { kNone, kLanes8First, kLanes4, kScalar };

struct KBlock {
  int v[kQKK];
  int scale[16];
  int min[16];  // per 16 elements (Q2_K) or per 32 in min[0..8) (Q4_K / Q5_K)
  float d = 0.0f, dmin = 0.0f;
};

void unpack_k(const BlockQ2_K& x, KBlock& k) {
  for (int h = 0; h < 2; ++h)
    for (int p = 0; p < 4; ++p)
      for (int e = 0; e < 32; ++e) k.v[128 * h + 32 * p + e] = (x.qs[32 * h + e] >> (2 * p)) & 3;
  for (int j = 0; j < 16; ++j) {
    k.scale[j] = x.scales[j] & 0x0f;
    k.min[j] = x.scales[j] >> 4;
  }
  k.d = fp16(x.d);
  k.dmin = fp16(x.dmin);
}
void unpack_k(const BlockQ3_K& x, KBlock& k) {
  for (int h = 0; h < 2; ++h)
    for (int p = 0; p < 4; ++p)
      for (int e = 0; e < 32; ++e)
        k.v[128 * h + 32 * p + e] =
            ((x.qs[32 * h + e] >> (2 * p)) & 3) - ((x.hmask[e] & (1 << (4 * h + p))) ? 0 : 4);
  int8_t sc[16];
  unpack_scales_q3k(x.scales, sc);
  for (int j = 0; j < 16; ++j) k.scale[j] = sc[j];
  k.d = fp16(x.d);
}
void unpack_k4(const uint8_t* qs, const uint8_t* qh, const uint8_t* scales, KBlock& k) {
  for (int c = 0; c < 4; ++c)
    for (int e = 0; e < 32; ++e) {
      const int h0 = qh ? ((qh[e] >> (2 * c)) & 1) << 4 : 0;
      const int h1 = qh ? ((qh[e] >> (2 * c + 1)) & 1) << 4 : 0;
      k.v[64 * c + e] = (qs[32 * c + e] & 0x0f) | h0;
      k.v[64 * c + 32 + e] = (qs[32 * c + e] >> 4) | h1;
    }
  uint8_t sm[16];
  unpack_scales_k4(scales, sm);
  for (int j = 0; j < 16; ++j) k.scale[j] = sm[j / 2];
  for (int j = 0; j < 8; ++j) k.min[j] = sm[8 + j];
}
void unpack_k(const BlockQ4_K& x, KBlock& k) {
  unpack_k4(x.qs, nullptr, x.scales, k);
  k.d = fp16(x.d);
  k.dmin = fp16(x.dmin);
}
void unpack_k(const BlockQ5_K& x, KBlock& k) {
  unpack_k4(x.qs, x.qh, x.scales, k);
  k.d = fp16(x.d);
  k.dmin = fp16(x.dmin);
}
void unpack_k(const BlockQ6_K& x, KBlock& k) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = x.ql + 64 * h;
    const uint8_t* qh = x.qh + 32 * h;
    for (int r = 0; r < 4; ++r)
      for (int e = 0; e < 32; ++e) {
        const int nib = r < 2 ? (ql[e + 32 * r] & 0x0f) : (ql[e + 32 * (r - 2)] >> 4);
        k.v[128 * h + 32 * r + e] = (nib | (((qh[e] >> (2 * r)) & 3) << 4)) - 32;
      }
  }
  for (int j = 0; j < 16; ++j) k.scale[j] = x.scales[j];
  k.d = fp16(x.d);
}

template <class Block, KMins kMins>
float dot_k(const uint8_t* w, const uint8_t* a, const ActLayout& l) {
  const auto* x = reinterpret_cast<const Block*>(w);
  const Act y(a, l);
  const auto* bsums = static_cast<const int16_t*>(y.x);
  float acc[8] = {}, accm[4] = {}, summs = 0.0f;
  for (int64_t b = 0; b < l.cols / kQKK; ++b) {
    KBlock k;
    unpack_k(x[b], k);
    const int8_t* q8 = y.q + b * kQKK;
    const int16_t* bs = bsums + b * 16;
    const float da = y.d[b];
    const float d = da * k.d;
    const float dmin = -da * k.dmin;
    int lanes[8] = {};
    for (int c = 0; c < 8; ++c)
      for (int m = 0; m < 8; ++m) {
        int s = 0;
        for (int e = 32 * c + 4 * m; e < 32 * c + 4 * m + 4; ++e) s += k.v[e] * q8[e];
        lanes[m] += k.scale[(32 * c + 4 * m) / 16] * s;
      }
    if constexpr (kMins == KMins::kLanes8First) {
      for (int j = 0; j < 8; ++j)
        acc[j] = std::fma(dmin, static_cast<float>(k.min[2 * j] * bs[2 * j] + k.min[2 * j + 1] * bs[2 * j + 1]), acc[j]);
    }
    for (int m = 0; m < 8; ++m) acc[m] = std::fma(d, static_cast<float>(lanes[m]), acc[m]);
    if constexpr (kMins == KMins::kLanes4 || kMins == KMins::kScalar) {
      int q8s[8], prod[4];
      for (int j = 0; j < 8; ++j) q8s[j] = bs[2 * j] + bs[2 * j + 1];
      for (int j = 0; j < 4; ++j) prod[j] = k.min[2 * j] * q8s[2 * j] + k.min[2 * j + 1] * q8s[2 * j + 1];
      if constexpr (kMins == KMins::kLanes4) {
        for (int j = 0; j < 4; ++j) accm[j] = std::fma(dmin, static_cast<float>(prod[j]), accm[j]);
      } else {
        summs += dmin * static_cast<float>(prod[0] + prod[1] + prod[2] + prod[3]);
      }
    }
  }
  const float main = reduce_8_lanes(acc);
  if constexpr (kMins == KMins::kLanes4) return main + ((accm[0] + accm[2]) + (accm[1] + accm[3]));
  if constexpr (kMins == KMins::kScalar) return main + summs;
  return main;
}

template <float (*Dot)(const uint8_t*, const uint8_t*, const ActLayout&)>
void tile(const uint8_t* w, size_t w_stride, int64_t nr, const uint8_t* act, const ActLayout& layout, int64_t nt,
          float* y, int64_t ldy) {
  for (int64_t r = 0; r < nr; ++r) {
    for (int64_t t = 0; t < nt; ++t) y[t * ldy + r] = Dot(w + r * w_stride, act + t * layout.stride, layout);
  }
}

constexpr TypeKernel kernel(ActFormat act, TileFn fn) { return {act, quantize_activation_ref, fn}; }

}  // namespace

const KernelTable& scalar_kernels() {
  static const KernelTable table = {
      {
          kernel(ActFormat::kF32, tile<dot_batched16<weight_f32>>),
          kernel(ActFormat::kF16, tile<dot_batched16<weight_f16>>),
          kernel(ActFormat::kBF16, tile<dot_batched16<weight_bf16>>),
          kernel(ActFormat::kQ8_0, tile<dot_lanes8<BlockQ8_0>>),
          kernel(ActFormat::kQ8_0, tile<dot_lanes8<BlockQ4_0>>),
          kernel(ActFormat::kQ8_1, tile<dot_lanes8_min<BlockQ4_1>>),
          kernel(ActFormat::kQ8_0, tile<dot_lanes8<BlockQ5_0>>),
          kernel(ActFormat::kQ8_1, tile<dot_lanes8_min<BlockQ5_1>>),
          kernel(ActFormat::kQ8_K, tile<dot_k<BlockQ2_K, KMins::kLanes8First>>),
          kernel(ActFormat::kQ8_K, tile<dot_k<BlockQ3_K, KMins::kNone>>),
          kernel(ActFormat::kQ8_K, tile<dot_k<BlockQ4_K, KMins::kLanes4>>),
          kernel(ActFormat::kQ8_K, tile<dot_k<BlockQ5_K, KMins::kScalar>>),
          kernel(ActFormat::kQ8_K, tile<dot_k<BlockQ6_K, KMins::kNone>>),
      },
      kernel(ActFormat::kF16, tile<dot_single64<weight_f16, true>>),
      kernel(ActFormat::kF32, tile<dot_single64<weight_f32, false>>),
      kernel(ActFormat::kBF16, tile<dot_bf16_single_ref>),
      kernel(ActFormat::kQ8_0, tile<dot_q4_0_chain>)};
  return table;
}

}  // namespace omni::kernels
