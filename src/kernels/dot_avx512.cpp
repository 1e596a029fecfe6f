// AVX-512 kernels (F, BW, VL, DQ, VNNI). Compiled with those -m flags; only reached through
// avx512_kernels() after matmul.cpp's CPU check. Everything here has internal linkage and uses no
// inline functions or templates shared with other translation units, so no AVX-512 code can leak
// into the baseline program through the linker's choice among duplicate definitions.
//
// A tile runs one weight row against up to kNT tokens: the row is unpacked once per kNT tokens
// while their activations stay in L1. Integer dots: vpdpbusd for the 32-element block formats
// (activation offset by 128 as the unsigned operand, or unsigned weights against signed
// activations), vpmaddubsw + vpdpwssd for the K quants (sub-block scales applied as int16).
// GCC 12's AVX-512 headers self-initialize "undefined" vectors, which -Wuninitialized reports
// inside the intrinsics (GCC bug 105593); the pragmas cover the header only, not this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/blocks.h"
#include "kernels/dot_kernels.h"
#include "kernels/dot_tile.h"
#include "kernels/dot_x86.h"
#include "kernels/dot_lanes_x86.h"

namespace omni::kernels {
namespace {

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }

// ---------------------------------------------------------------------------------------------
// Activation quantizers: the bytes quantize_activation_ref writes, computed 16 lanes at a time.

// Round half to even; a non-finite product (the conversion gives INT_MIN) becomes 0, as in the
// reference.
inline __m512i round_to_int(__m512 v) {
  const __m512i i = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_maskz_mov_epi32(_mm512_cmpneq_epi32_mask(i, _mm512_set1_epi32(INT32_MIN)), i);
}

// bf16 rounding as fp32_to_bf16: round to nearest even, NaN kept quiet. Returns the bf16 bits in
// the high half of each lane (low half zero).
inline __m512i bf16_bits(__m512 v) {
  const __m512i x = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(x, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
  const __m512i nan = _mm512_or_si512(x, _mm512_set1_epi32(0x400000));
  const __mmask16 is_nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  return _mm512_and_si512(_mm512_mask_mov_epi32(rounded, is_nan, nan),
                          _mm512_set1_epi32(static_cast<int>(0xffff0000u)));
}

void quantize_floats(const float* x, const ActLayout& l, uint8_t* dst) {
  std::memset(dst, 0, l.stride);
  const int64_t n = l.cols;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    switch (l.format) {
      case ActFormat::kF16:
        _mm512_mask_storeu_ps(reinterpret_cast<float*>(dst) + i, m,
                              _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
        break;
      case ActFormat::kBF16:
        _mm512_mask_storeu_ps(reinterpret_cast<float*>(dst) + i, m, _mm512_castsi512_ps(bf16_bits(v)));
        break;
      default:
        _mm512_mask_storeu_ps(reinterpret_cast<float*>(dst) + i, m, v);
        break;
    }
  }
}

void quantize_q8(const float* x, const ActLayout& l, uint8_t* dst) {
  std::memset(dst, 0, l.stride);
  auto* d = reinterpret_cast<float*>(dst + l.d_offset);
  auto* s = reinterpret_cast<float*>(dst + l.x_offset);
  const bool nibble = l.format == ActFormat::kQ8_0N || l.format == ActFormat::kQ8_1N;
  const bool with_s = l.format == ActFormat::kQ8_1 || l.format == ActFormat::kQ8_1N;
  const __m512i offset = _mm512_set1_epi32(l.format == ActFormat::kQ8_0U ? 128 : 0);
  const int64_t nb = l.cols / kQK;
  for (int64_t b = 0; b < nb; ++b, x += kQK) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float scale = amax / 127.0f;
    const __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    const __m512i i0 = round_to_int(_mm512_mul_ps(v0, id)), i1 = round_to_int(_mm512_mul_ps(v1, id));
    uint8_t* first = dst + (nibble ? nibble_order_pos(b, 0) : b * kQK);
    uint8_t* second = dst + (nibble ? nibble_order_pos(b, 16) : b * kQK + 16);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(first), _mm512_cvtepi32_epi8(_mm512_add_epi32(i0, offset)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(second), _mm512_cvtepi32_epi8(_mm512_add_epi32(i1, offset)));
    d[b] = round_fp16(scale);
    if (with_s) s[b] = round_fp16(scale * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1))));
  }
  if (l.format == ActFormat::kQ8_0N) {
    // Lane sums: minus the 4 + 4 values each lane of a dot over low and high halves takes.
    auto* lanes = reinterpret_cast<__m512i*>(dst + l.x_offset);
    const __m512i ones = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
    for (int64_t quad = 0; quad < (nb + 3) / 4; ++quad) {
      const __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, ones, load512(dst + 128 * quad)), ones,
                                              load512(dst + 128 * quad + 64));
      _mm512_storeu_si512(lanes + quad, _mm512_sub_epi32(zero, sum));
    }
  }
}

void quantize_q8_k(const float* x, const ActLayout& l, uint8_t* dst) {
  std::memset(dst, 0, l.stride);
  auto* d = reinterpret_cast<float*>(dst + l.d_offset);
  auto* bsums = reinterpret_cast<int16_t*>(dst + l.x_offset);
  for (int64_t b = 0; b < l.cols / kQKK; ++b, x += kQKK) {
    __m512 vmax = _mm512_setzero_ps();
    for (int k = 0; k < 16; ++k) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(x + 16 * k)));
    const float amax = _mm512_reduce_max_ps(vmax);
    if (amax == 0.0f) continue;  // d, values and sums stay zero
    // The first element of largest magnitude gives the sign, as in the reference.
    float max = 0.0f;
    for (int k = 0; k < 16; ++k) {
      const __m512 v = _mm512_loadu_ps(x + 16 * k);
      const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (hit) {
        max = x[16 * k + __builtin_ctz(hit)];
        break;
      }
    }
    const float iscale = -127.0f / max;
    for (int k = 0; k < 16; ++k) {
      const __m512i q = _mm512_min_epi32(
          round_to_int(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * k), _mm512_set1_ps(iscale))), _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + b * kQKK + 16 * k), _mm512_cvtepi32_epi8(q));
      bsums[16 * b + k] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
    }
    d[b] = 1.0f / iscale;
  }
}

// ---------------------------------------------------------------------------------------------
// Q4_0 as ggml's repacked kernels compute it (rows % 8 == 0): per output, one FMA chain over the
// blocks, acc = fma(whole-block integer sum, d_w * d_x, acc). The integer sums are exact, so any
// way of forming them gives the scalar reference's bits; this one puts one weight row in each of
// 16 lanes, so vpdpbusd against a broadcast dword of activations sums a row's block without any
// horizontal reduction. 16 rows x kChainTokens tokens per register tile: the rows' nibbles are
// transposed into that layout once per block and used for every token.

constexpr int kChainRows = 16, kChainTokens = 8;

// Lane m of a chain tile holds row chain_lane_row(m) of the 16 (the 4 x 4 dword transpose below
// gives this order; the map is its own inverse).
constexpr int chain_lane_row(int m) { return 4 * (m % 4) + m / 4; }

// Per token and block of a tile: 8 * the sum of the block's activation values.
thread_local std::vector<int32_t> t_chain_offsets;

template <int TN>
void q4_0_chain_tokens(const uint8_t* const* rows, const uint8_t* act, const ActLayout& l,
                       const int32_t* offsets, int64_t nb, const uint8_t* prefetch, int64_t prefetch_lines, __m512* acc) {
  const __m512i low = _mm512_set1_epi8(0x0f);
  #pragma GCC unroll 8
  for (int t = 0; t < TN; ++t) acc[t] = _mm512_setzero_ps();
  int64_t pf_line = 0, pf_due = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t at = b * static_cast<int64_t>(sizeof(BlockQ4_0)) + 2;  // the block's 16 nibble bytes
    // The hardware prefetchers do not follow 16 rows read side by side; the rows are contiguous,
    // so fetch the next group's bytes by hand, spread over this group's blocks.
    // (Lines [b * L / nb, (b + 1) * L / nb) at block b, counted without a division.)
    if (prefetch) {
      for (pf_due += prefetch_lines; pf_due >= nb; pf_due -= nb, ++pf_line)
        _mm_prefetch(reinterpret_cast<const char*>(prefetch + 64 * pf_line), _MM_HINT_T1);
    }
    __m512i z[4];
    #pragma GCC unroll 8
    for (int g = 0; g < 4; ++g) {
      z[g] = _mm512_castsi128_si512(load128(rows[4 * g] + at));
      z[g] = _mm512_inserti32x4(z[g], load128(rows[4 * g + 1] + at), 1);
      z[g] = _mm512_inserti32x4(z[g], load128(rows[4 * g + 2] + at), 2);
      z[g] = _mm512_inserti32x4(z[g], load128(rows[4 * g + 3] + at), 3);
    }
    // Per 128-bit lane j: dword i of p[k] = dword k of z[i], i.e. lane 4j + i holds row 4i + j.
    const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    const __m512i p[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2), _mm512_unpacklo_epi64(t1, t3),
                          _mm512_unpackhi_epi64(t1, t3)};
    // Elements 4k .. 4k + 3 of every row: low nibbles of dword k for k < 4, high nibbles after.
    __m512i v[8];
    #pragma GCC unroll 8
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm512_and_si512(p[k], low);
      v[k + 4] = _mm512_and_si512(_mm512_srli_epi32(p[k], 4), low);
    }
    // The 16 rows' d in lane order, assembled in general-purpose registers (a vpgatherdd costs more
    // than the rest of the block on some CPUs, and the integer ports are idle here).
    uint64_t d_bits[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const int64_t d_at = b * static_cast<int64_t>(sizeof(BlockQ4_0));
      d_bits[j] = load_u16(rows[j] + d_at) | static_cast<uint64_t>(load_u16(rows[j + 4] + d_at)) << 16 |
                  static_cast<uint64_t>(load_u16(rows[j + 8] + d_at)) << 32 |
                  static_cast<uint64_t>(load_u16(rows[j + 12] + d_at)) << 48;
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_set_epi64x(static_cast<int64_t>(d_bits[3]), static_cast<int64_t>(d_bits[2]),
                                                       static_cast<int64_t>(d_bits[1]), static_cast<int64_t>(d_bits[0])));
    #pragma GCC unroll 8
    for (int t = 0; t < TN; ++t) {
      const uint8_t* q = act + static_cast<size_t>(t) * l.stride + kQK * b;
      __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
      #pragma GCC unroll 8
      for (int k = 0; k < 8; k += 2) {
        s0 = _mm512_dpbusd_epi32(s0, v[k], _mm512_set1_epi32(static_cast<int>(load_u32(q + 4 * k))));
        s1 = _mm512_dpbusd_epi32(s1, v[k + 1], _mm512_set1_epi32(static_cast<int>(load_u32(q + 4 * k + 4))));
      }
      const __m512i sum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(offsets[t * nb + b]));
      const float dx = reinterpret_cast<const float*>(act + static_cast<size_t>(t) * l.stride + l.d_offset)[b];
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(d, _mm512_set1_ps(dx)), acc[t]);
    }
  }
}

void q4_0_chain_tile(const uint8_t* w, size_t w_stride, int64_t nr, const uint8_t* act, const ActLayout& l, int64_t nt,
                     float* y, int64_t ldy) {
  const int64_t nb = l.cols / kQK;
  std::vector<int32_t>& offsets = t_chain_offsets;
  if (offsets.size() < static_cast<size_t>(nt * nb)) offsets.resize(static_cast<size_t>(nt * nb));
  // The weights are stored as nibble n = value + 8: the dot takes 8 * sum(x) back off.
  for (int64_t t = 0; t < nt; ++t) {
    const uint8_t* q = act + static_cast<size_t>(t) * l.stride;
    for (int64_t b = 0; b < nb; ++b) {
      const __m256i biased = _mm256_xor_si256(load256(q + kQK * b), _mm256_set1_epi8(static_cast<char>(0x80)));
      const __m256i sad = _mm256_sad_epu8(biased, _mm256_setzero_si256());  // 4 sums of 8 (value + 128)
      const __m128i half = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
      const int64_t total = _mm_cvtsi128_si64(half) + _mm_extract_epi64(half, 1) - 32 * 128;
      offsets[static_cast<size_t>(t * nb + b)] = static_cast<int32_t>(8 * total);
    }
  }
  alignas(64) int32_t lane_row[16];
  for (int m = 0; m < 16; ++m) lane_row[m] = chain_lane_row(m);
  const __m512i lane_order = _mm512_load_si512(lane_row);
  // The first row group's bytes; the others are fetched while the previous group runs.
  for (int64_t line = 0; line < (std::min<int64_t>(kChainRows, nr) * static_cast<int64_t>(w_stride) + 63) / 64; ++line)
    _mm_prefetch(reinterpret_cast<const char*>(w + 64 * line), _MM_HINT_T1);
  for (int64_t r0 = 0; r0 < nr; r0 += kChainRows) {
    const int n_rows = static_cast<int>(std::min<int64_t>(kChainRows, nr - r0));
    const uint8_t* rows[kChainRows];
    for (int i = 0; i < kChainRows; ++i) rows[i] = w + (r0 + std::min(i, n_rows - 1)) * static_cast<int64_t>(w_stride);
    const __mmask16 keep = static_cast<__mmask16>((1u << n_rows) - 1);
    for (int64_t t0 = 0; t0 < nt; t0 += kChainTokens) {
      const int n_tok = static_cast<int>(std::min<int64_t>(kChainTokens, nt - t0));
      __m512 acc[kChainTokens];
      const uint8_t* a = act + static_cast<size_t>(t0) * l.stride;
      const int32_t* off = offsets.data() + t0 * nb;
      // The next 16 rows' bytes, fetched while the last token group of this group runs; past the
      // tile they are usually the next tile of this thread (a prefetch never faults).
      const bool last_tokens = t0 + kChainTokens >= nt;
      const uint8_t* pf = last_tokens ? w + (r0 + kChainRows) * static_cast<int64_t>(w_stride) : nullptr;
      const int64_t pf_lines = (kChainRows * static_cast<int64_t>(w_stride) + 63) / 64;
      switch (n_tok) {
        case 8: q4_0_chain_tokens<8>(rows, a, l, off, nb, pf, pf_lines, acc); break;
        case 7: q4_0_chain_tokens<7>(rows, a, l, off, nb, pf, pf_lines, acc); break;
        case 6: q4_0_chain_tokens<6>(rows, a, l, off, nb, pf, pf_lines, acc); break;
        case 5: q4_0_chain_tokens<5>(rows, a, l, off, nb, pf, pf_lines, acc); break;
        case 4: q4_0_chain_tokens<4>(rows, a, l, off, nb, pf, pf_lines, acc); break;
        case 3: q4_0_chain_tokens<3>(rows, a, l, off, nb, pf, pf_lines, acc); break;
        case 2: q4_0_chain_tokens<2>(rows, a, l, off, nb, pf, pf_lines, acc); break;
        default: q4_0_chain_tokens<1>(rows, a, l, off, nb, pf, pf_lines, acc); break;
      }
#pragma GCC unroll 8
      for (int t = 0; t < n_tok; ++t)
        _mm512_mask_storeu_ps(y + (t0 + t) * ldy + r0, keep, _mm512_permutexvar_ps(lane_order, acc[t]));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Q8_0 as ggml's vec_dot sums it (8 lanes of 4-product integer sums, lane = fma(d_w d_x, lane sum,
// lane), hsum8 at the end), two tokens per 512-bit register: lanes 0-7 are one token's 8 lanes,
// lanes 8-15 the next one's, each computed exactly as alone. The activations of a token pair are
// packed per block (64 bytes, offset by 128 as vpdpbusd's unsigned operand) and their scales per
// block as [d_t x 8 | d_t+1 x 8], once per tile; every weight row then costs one vpdpbusd per
// block and token pair.

constexpr int kPairsPerPass = 4;

struct alignas(64) Bytes64 {
  uint8_t bytes[64];
};
struct PairScratch {
  std::vector<Bytes64> q;  // per pair and block: both tokens' values + 128
  std::vector<Bytes64> d;  // per pair and block: both tokens' scales (floats)
};
thread_local PairScratch t_pairs;

template <int NP>
void q8_0_pair_rows(const uint8_t* w, size_t w_stride, int64_t nr, const Bytes64* q, const Bytes64* d, int64_t nb,
                    int n_tok, float* y, int64_t ldy) {
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t r = 0; r < nr; ++r) {
    const auto* x = reinterpret_cast<const BlockQ8_0*>(w + r * static_cast<int64_t>(w_stride));
    __m512 acc[NP];
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) acc[p] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const __m512i v = _mm512_broadcast_i64x4(load256(x[b].qs));
      // 128 * (sum of each lane's 4 weights): what the +128 on the activations added.
      const __m512i offset = _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, v), 7);
      const __m512 dw = _mm512_set1_ps(lanes::fp16s(x[b].d));
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) {
        const __m512i sums =
            _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_load_si512(q[p * nb + b].bytes), v), offset);
        acc[p] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_load_ps(d[p * nb + b].bytes)), _mm512_cvtepi32_ps(sums), acc[p]);
      }
    }
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) {
      y[(2 * p) * ldy + r] = lanes::hsum8(_mm512_castps512_ps256(acc[p]));
      if (2 * p + 1 < n_tok) y[(2 * p + 1) * ldy + r] = lanes::hsum8(_mm512_extractf32x8_ps(acc[p], 1));
    }
  }
}

void q8_0_pair_tile(const uint8_t* w, size_t w_stride, int64_t nr, const uint8_t* act, const ActLayout& l, int64_t nt,
                    float* y, int64_t ldy) {
  // A single token (decode) reads each weight once: the 256-bit kernel does no wasted half.
  if (nt == 1) return tile<lanes::LaneBlocks<lanes::ValuesQ8_0>>(w, w_stride, nr, act, l, nt, y, ldy);
  const int64_t nb = l.cols / kQK;
  const int64_t n_pairs = (nt + 1) / 2;
  PairScratch& scratch = t_pairs;
  if (scratch.q.size() < static_cast<size_t>(n_pairs * nb)) {
    scratch.q.resize(static_cast<size_t>(n_pairs * nb));
    scratch.d.resize(static_cast<size_t>(n_pairs * nb));
  }
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t p = 0; p < n_pairs; ++p) {
    const int64_t t0 = 2 * p, t1 = std::min(2 * p + 1, nt - 1);  // an odd last token pairs with itself
    const uint8_t* a0 = act + static_cast<size_t>(t0) * l.stride;
    const uint8_t* a1 = act + static_cast<size_t>(t1) * l.stride;
    const auto* d0 = reinterpret_cast<const float*>(a0 + l.d_offset);
    const auto* d1 = reinterpret_cast<const float*>(a1 + l.d_offset);
    for (int64_t b = 0; b < nb; ++b) {
      const __m256i lo = _mm256_xor_si256(load256(a0 + kQK * b), bias), hi = _mm256_xor_si256(load256(a1 + kQK * b), bias);
      _mm512_store_si512(scratch.q[static_cast<size_t>(p * nb + b)].bytes,
                         _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
      _mm512_store_ps(scratch.d[static_cast<size_t>(p * nb + b)].bytes,
                      _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(d0[b])), _mm256_set1_ps(d1[b]), 1));
    }
  }
  for (int64_t p0 = 0; p0 < n_pairs; p0 += kPairsPerPass) {
    const int np = static_cast<int>(std::min<int64_t>(kPairsPerPass, n_pairs - p0));
    const int n_tok = static_cast<int>(std::min<int64_t>(2 * kPairsPerPass, nt - 2 * p0));
    const Bytes64* q = scratch.q.data() + p0 * nb;
    const Bytes64* d = scratch.d.data() + p0 * nb;
    float* yp = y + 2 * p0 * ldy;
    switch (np) {
      case 4: q8_0_pair_rows<4>(w, w_stride, nr, q, d, nb, n_tok, yp, ldy); break;
      case 3: q8_0_pair_rows<3>(w, w_stride, nr, q, d, nb, n_tok, yp, ldy); break;
      case 2: q8_0_pair_rows<2>(w, w_stride, nr, q, d, nb, n_tok, yp, ldy); break;
      default: q8_0_pair_rows<1>(w, w_stride, nr, q, d, nb, n_tok, yp, ldy); break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// K quants for prompt batches: lanes::KDot's arithmetic (ggml's AVX2 vec_dot: 8 int32 lanes per
// super-block, then fma(d_w d_x, lanes, acc) and the mins as each format adds them), two tokens per
// 512-bit register like q8_0_pair_tile. A weight chunk is unpacked once (256 bits, as KDot does) and
// broadcast to both halves; vpdpwssd applies the sub-block scales (= madd + add, exact).

struct KPairScratch {
  std::vector<Bytes64> q;  // per pair, super-block and 32-value chunk: both tokens' values
  std::vector<Bytes64> d;  // per pair and super-block: both tokens' scales (floats)
};
thread_local KPairScratch t_kpairs;

template <class U, int NP>
void k_pair_rows(const uint8_t* w, size_t w_stride, int64_t nr, const Bytes64* q, const Bytes64* d,
                 const uint8_t* const* act_tokens, const ActLayout& l, int64_t nsb, int n_tok, float* y, int64_t ldy) {
  using lanes::Mins;
  for (int64_t r = 0; r < nr; ++r) {
    const auto* x = reinterpret_cast<const typename U::Block*>(w + r * static_cast<int64_t>(w_stride));
    __m512 acc[NP];
    __m128 acc_m[2 * NP];
    float acc_s[2 * NP];
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) acc[p] = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int t = 0; t < 2 * NP; ++t) {
      acc_m[t] = _mm_setzero_ps();
      acc_s[t] = 0.0f;
    }
    for (int64_t b = 0; b < nsb; ++b) {
      const U u(x[b]);
      __m512i isum[NP];
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) isum[p] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        __m256i sc, off = _mm256_setzero_si256();
        const __m512i v = _mm512_broadcast_i64x4(u.chunk(c, sc, off));
        const __m512i sc2 = _mm512_broadcast_i64x4(sc);
#pragma GCC unroll 8
        for (int p = 0; p < NP; ++p) {
          const __m512i qq = _mm512_load_si512(q[(p * nsb + b) * 8 + c].bytes);
          __m512i prod = _mm512_maddubs_epi16(v, qq);
          if constexpr (U::kOffset) prod = _mm512_sub_epi16(prod, _mm512_maddubs_epi16(_mm512_broadcast_i64x4(off), qq));
          isum[p] = _mm512_dpwssd_epi32(isum[p], prod, sc2);
        }
      }
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) {
        const __m512 dx = _mm512_load_ps(d[p * nsb + b].bytes);
        if constexpr (U::kMins == Mins::kLanes8First) {
          const auto* b0 = reinterpret_cast<const int16_t*>(act_tokens[2 * p] + l.x_offset) + 16 * b;
          const auto* b1 = reinterpret_cast<const int16_t*>(act_tokens[2 * p + 1] + l.x_offset) + 16 * b;
          const __m512i m = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_madd_epi16(u.mins, load256(b0))),
                                               _mm256_madd_epi16(u.mins, load256(b1)), 1);
          const __m512 neg_dx = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(dx), _mm512_set1_epi32(INT32_MIN)));
          acc[p] = _mm512_fmadd_ps(_mm512_mul_ps(neg_dx, _mm512_set1_ps(u.dmin)), _mm512_cvtepi32_ps(m), acc[p]);
        }
        acc[p] = _mm512_fmadd_ps(_mm512_mul_ps(dx, _mm512_set1_ps(u.d)), _mm512_cvtepi32_ps(isum[p]), acc[p]);
      }
      if constexpr (U::kMins == Mins::kLanes4 || U::kMins == Mins::kScalar) {
#pragma GCC unroll 8
        for (int t = 0; t < 2 * NP; ++t) {
          const float da = reinterpret_cast<const float*>(act_tokens[t] + l.d_offset)[b];
          const __m256i bs = load256(reinterpret_cast<const int16_t*>(act_tokens[t] + l.x_offset) + 16 * b);
          const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
          const __m128i prod = _mm_madd_epi16(u.mins, q8s);
          const float dmin = -da * u.dmin;
          if constexpr (U::kMins == Mins::kLanes4) {
            acc_m[t] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m[t]);
          } else {
            __m128i h = _mm_add_epi32(prod, _mm_unpackhi_epi64(prod, prod));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
            acc_s[t] += dmin * static_cast<float>(_mm_cvtsi128_si32(h));
          }
        }
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < 2 * NP; ++t) {
      if (t >= n_tok) break;
      const __m256 half = t % 2 == 0 ? _mm512_castps512_ps256(acc[t / 2]) : _mm512_extractf32x8_ps(acc[t / 2], 1);
      float out = lanes::hsum8(half);
      if constexpr (U::kMins == Mins::kLanes4) out += lanes::hsum4(acc_m[t]);
      if constexpr (U::kMins == Mins::kScalar) out += acc_s[t];
      y[t * ldy + r] = out;
    }
  }
}

template <class U>
void k_pair_tile(const uint8_t* w, size_t w_stride, int64_t nr, const uint8_t* act, const ActLayout& l, int64_t nt,
                 float* y, int64_t ldy) {
  if (nt == 1) return tile<lanes::KDot<U>>(w, w_stride, nr, act, l, nt, y, ldy);
  const int64_t nsb = l.cols / kQKK;
  const int64_t n_pairs = (nt + 1) / 2;
  KPairScratch& scratch = t_kpairs;
  if (scratch.q.size() < static_cast<size_t>(n_pairs * nsb * 8)) {
    scratch.q.resize(static_cast<size_t>(n_pairs * nsb * 8));
    scratch.d.resize(static_cast<size_t>(n_pairs * nsb));
  }
  for (int64_t p = 0; p < n_pairs; ++p) {
    const uint8_t* a0 = act + static_cast<size_t>(2 * p) * l.stride;
    const uint8_t* a1 = act + static_cast<size_t>(std::min(2 * p + 1, nt - 1)) * l.stride;  // odd last: itself
    const auto* d0 = reinterpret_cast<const float*>(a0 + l.d_offset);
    const auto* d1 = reinterpret_cast<const float*>(a1 + l.d_offset);
    for (int64_t b = 0; b < nsb; ++b) {
      for (int c = 0; c < 8; ++c) {
        const int64_t at = b * kQKK + 32 * c;
        _mm512_store_si512(scratch.q[static_cast<size_t>((p * nsb + b) * 8 + c)].bytes,
                           _mm512_inserti64x4(_mm512_castsi256_si512(load256(a0 + at)), load256(a1 + at), 1));
      }
      _mm512_store_ps(scratch.d[static_cast<size_t>(p * nsb + b)].bytes,
                      _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(d0[b])), _mm256_set1_ps(d1[b]), 1));
    }
  }
  for (int64_t p0 = 0; p0 < n_pairs; p0 += kPairsPerPass) {
    const int np = static_cast<int>(std::min<int64_t>(kPairsPerPass, n_pairs - p0));
    const int n_tok = static_cast<int>(std::min<int64_t>(2 * kPairsPerPass, nt - 2 * p0));
    const uint8_t* tokens[2 * kPairsPerPass];
    for (int t = 0; t < 2 * kPairsPerPass; ++t)
      tokens[t] = act + static_cast<size_t>(std::min<int64_t>(2 * p0 + t, nt - 1)) * l.stride;
    const Bytes64* q = scratch.q.data() + p0 * nsb * 8;
    const Bytes64* d = scratch.d.data() + p0 * nsb;
    float* yp = y + 2 * p0 * ldy;
    switch (np) {
      case 4: k_pair_rows<U, 4>(w, w_stride, nr, q, d, tokens, l, nsb, n_tok, yp, ldy); break;
      case 3: k_pair_rows<U, 3>(w, w_stride, nr, q, d, tokens, l, nsb, n_tok, yp, ldy); break;
      case 2: k_pair_rows<U, 2>(w, w_stride, nr, q, d, tokens, l, nsb, n_tok, yp, ldy); break;
      default: k_pair_rows<U, 1>(w, w_stride, nr, q, d, tokens, l, nsb, n_tok, yp, ldy); break;
    }
  }
}

constexpr TypeKernel kernel(ActFormat act, QuantizeFn quantize, TileFn fn) { return {act, quantize, fn}; }

}  // namespace

const KernelTable& avx512_kernels() {
  static const KernelTable table = [] {
    // F16, Q8_0, Q4_0 and the K quants: the shared lane-exact kernels (dot_lanes_x86.h), whose
    // float operations must match the scalar references bit for bit.
    KernelTable t = {{
        kernel(ActFormat::kF32, quantize_floats, tile<lanes::F32Batched>),
        kernel(ActFormat::kF16, quantize_floats, tile<lanes::F16Batched>),
        kernel(ActFormat::kBF16, quantize_floats, tile<lanes::BF16Batched>),
        kernel(ActFormat::kQ8_0, quantize_q8, q8_0_pair_tile),
        kernel(ActFormat::kQ8_0, quantize_q8, tile<lanes::LaneBlocks<lanes::ValuesQ4_0>>),
        kernel(ActFormat::kQ8_1, quantize_q8, tile<lanes::LaneBlocks1<lanes::ValuesQ4_1>>),
        kernel(ActFormat::kQ8_0, quantize_q8, tile<lanes::LaneBlocks<lanes::ValuesQ5_0>>),
        kernel(ActFormat::kQ8_1, quantize_q8, tile<lanes::LaneBlocks1<lanes::ValuesQ5_1>>),
        kernel(ActFormat::kQ8_K, quantize_q8_k, k_pair_tile<lanes::Q2_KUnpack>),
        kernel(ActFormat::kQ8_K, quantize_q8_k, k_pair_tile<lanes::Q3_KUnpack>),
        kernel(ActFormat::kQ8_K, quantize_q8_k, k_pair_tile<lanes::Q4_KUnpack>),
        kernel(ActFormat::kQ8_K, quantize_q8_k, k_pair_tile<lanes::Q5_KUnpack>),
        kernel(ActFormat::kQ8_K, quantize_q8_k, k_pair_tile<lanes::Q6_KUnpack>),
    },
    kernel(ActFormat::kF16, quantize_floats, tile<lanes::F16Single>),
  kernel(ActFormat::kF32, quantize_floats, tile<lanes::F32Single>),
  kernel(ActFormat::kBF16, quantize_floats, tile<lanes::BF16Single>),
    kernel(ActFormat::kQ8_0, quantize_q8, q4_0_chain_tile)};
    return t;
  }();
  return table;
}

}  // namespace omni::kernels
