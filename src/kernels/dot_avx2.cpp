// AVX2 kernels (with FMA and F16C), for x86-64 CPUs without the AVX-512 subset we use. Compiled
// with those -m flags; only reached through avx2_kernels() after matmul.cpp's CPU check. All code
// here has internal linkage (see dot_tile.h for why that matters).
//
// Same structure as the AVX-512 kernels, 32 bytes at a time: ggml's sign trick (|w| times the
// activation with w's sign, vpmaddubsw) for the signed 32-element block formats, unsigned weights
// against signed activations for the others and the K quants, int16 sub-block scales via vpmaddwd.
#include <immintrin.h>

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

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// bf16 rounding as fp32_to_bf16 (nearest even, NaN kept quiet), as the float it stands for.
inline float round_bf16(float v) {
  uint32_t x;
  std::memcpy(&x, &v, 4);
  x = (x & 0x7fffffffu) > 0x7f800000u ? (x | 0x400000u) : x + 0x7fffu + ((x >> 16) & 1u);
  x &= 0xffff0000u;
  float r;
  std::memcpy(&r, &x, 4);
  return r;
}

inline __m256 round_bf16(__m256 v) {
  const __m256i x = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(x, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
  const __m256i nan = _mm256_or_si256(x, _mm256_set1_epi32(0x400000));
  const __m256i is_nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  return _mm256_castsi256_ps(
      _mm256_and_si256(_mm256_blendv_epi8(rounded, nan, is_nan), _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers: the bytes quantize_activation_ref writes.

// Round half to even; a non-finite product (the conversion gives INT_MIN) becomes 0, as in the
// reference.
inline __m256i round_to_int(__m256 v) {
  const __m256i i = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  return _mm256_andnot_si256(_mm256_cmpeq_epi32(i, _mm256_set1_epi32(INT32_MIN)), i);
}

// 32 int32 in [-128, 127] (four vectors, in order) -> 32 int8.
inline __m256i pack_bytes(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
  const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  // The packs work within 128-bit lanes: put the 4-byte groups back in order.
  return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

void quantize_floats(const float* x, const ActLayout& l, uint8_t* dst) {
  std::memset(dst, 0, l.stride);
  auto* out = reinterpret_cast<float*>(dst);
  const int64_t n = l.cols;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    switch (l.format) {
      case ActFormat::kF16:
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
        break;
      case ActFormat::kBF16:
        _mm256_storeu_ps(out + i, round_bf16(v));
        break;
      default:
        _mm256_storeu_ps(out + i, v);
        break;
    }
  }
  for (; i < n; ++i) {
    out[i] = l.format == ActFormat::kF16 ? round_fp16(x[i]) : l.format == ActFormat::kBF16 ? round_bf16(x[i]) : x[i];
  }
}

void quantize_q8(const float* x, const ActLayout& l, uint8_t* dst) {
  std::memset(dst, 0, l.stride);
  auto* d = reinterpret_cast<float*>(dst + l.d_offset);
  auto* s = reinterpret_cast<float*>(dst + l.x_offset);
  const bool nibble = l.format == ActFormat::kQ8_0N || l.format == ActFormat::kQ8_1N;
  const bool with_s = l.format == ActFormat::kQ8_1 || l.format == ActFormat::kQ8_1N;
  const int64_t nb = l.cols / kQK;
  for (int64_t b = 0; b < nb; ++b, x += kQK) {
    __m256 v[4];
    __m256 vmax = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(x + 8 * k);
      vmax = _mm256_max_ps(vmax, abs_ps(v[k]));
    }
    const float amax = hmax(vmax);
    const float scale = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) q[k] = round_to_int(_mm256_mul_ps(v[k], id));
    __m256i bytes = pack_bytes(q[0], q[1], q[2], q[3]);
    if (l.format == ActFormat::kQ8_0U) bytes = _mm256_xor_si256(bytes, _mm256_set1_epi8(static_cast<char>(0x80)));
    if (nibble) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + nibble_order_pos(b, 0)), _mm256_castsi256_si128(bytes));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + nibble_order_pos(b, 16)), _mm256_extracti128_si256(bytes, 1));
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + b * kQK), bytes);
    }
    d[b] = round_fp16(scale);
    if (with_s) {
      const int sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
      s[b] = round_fp16(scale * static_cast<float>(sum));
    }
  }
  if (l.format == ActFormat::kQ8_0N) {
    // Lane sums: minus the 4 + 4 values each 32-bit lane of a dot over low and high halves takes.
    auto* lanes = reinterpret_cast<int32_t*>(dst + l.x_offset);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < (nb + 3) / 4 * 2; ++i) {
      const uint8_t* q = dst + 128 * (i / 2) + 32 * (i % 2);
      const __m256i pairs =
          _mm256_add_epi16(_mm256_maddubs_epi16(ones8, load256(q)), _mm256_maddubs_epi16(ones8, load256(q + 64)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes + 8 * i),
                          _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(pairs, ones16)));
    }
  }
}

void quantize_q8_k(const float* x, const ActLayout& l, uint8_t* dst) {
  std::memset(dst, 0, l.stride);
  auto* d = reinterpret_cast<float*>(dst + l.d_offset);
  auto* bsums = reinterpret_cast<int16_t*>(dst + l.x_offset);
  for (int64_t b = 0; b < l.cols / kQKK; ++b, x += kQKK) {
    __m256 vmax = _mm256_setzero_ps();
    for (int k = 0; k < 32; ++k) vmax = _mm256_max_ps(vmax, abs_ps(_mm256_loadu_ps(x + 8 * k)));
    const float amax = hmax(vmax);
    if (amax == 0.0f) continue;  // d, values and sums stay zero
    // The first element of largest magnitude gives the sign, as in the reference.
    float max = 0.0f;
    for (int k = 0; k < 32; ++k) {
      const __m256 hit = _mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * k)), _mm256_set1_ps(amax), _CMP_EQ_OQ);
      const int mask = _mm256_movemask_ps(hit);
      if (mask) {
        max = x[8 * k + __builtin_ctz(static_cast<unsigned>(mask))];
        break;
      }
    }
    const __m256 iscale = _mm256_set1_ps(-127.0f / max);
    const __m256i top = _mm256_set1_epi32(127);
    for (int k = 0; k < 8; ++k) {
      __m256i q[4];
      for (int j = 0; j < 4; ++j)
        q[j] = _mm256_min_epi32(round_to_int(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * k + 8 * j), iscale)), top);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + b * kQKK + 32 * k), pack_bytes(q[0], q[1], q[2], q[3]));
      bsums[16 * b + 2 * k] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[0], q[1])));
      bsums[16 * b + 2 * k + 1] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[2], q[3])));
    }
    d[b] = 1.0f / (-127.0f / max);
  }
}

// ---------------------------------------------------------------------------------------------
// Q4_0 as ggml's repacked kernels compute it (rows % 8 == 0): per output one FMA chain over the
// blocks, acc = fma(whole-block integer sum, d_w * d_x, acc), as dot_scalar.cpp's dot_q4_0_chain. The
// integer sums are exact however they are formed; here lane r of a register is weight row r of 8,
// so vpmaddubsw (unsigned nibbles against a broadcast dword of signed activations) and one
// vpmaddwd sum a row's block with no horizontal reduction. The 8 rows' nibbles are transposed into
// that layout once per block and used for kChainTokens tokens. The nibbles are value + 8: the
// per-token offsets take 8 * (block sum of the activations) back off.
//
// vpmaddubsw cannot saturate: a pair is at most 2 * 15 * 127 = 3810, and the 8 pairs a lane adds
// as int16 before vpmaddwd at most 30480 < 32767.

constexpr int kChainRows = 8, kChainTokens = 4;

// Per token and block of a tile: 8 * the sum of the block's activation values.
thread_local std::vector<int32_t> t_chain_offsets;

template <int TN>
void q4_0_chain_tokens(const uint8_t* const* rows, const uint8_t* act, const ActLayout& l, const int32_t* offsets,
                       int64_t nb, const uint8_t* prefetch, int64_t prefetch_lines, __m256* acc) {
  const __m256i low = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
#pragma GCC unroll 8
  for (int t = 0; t < TN; ++t) acc[t] = _mm256_setzero_ps();
  int64_t pf_line = 0, pf_due = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t d_at = b * static_cast<int64_t>(sizeof(BlockQ4_0)), at = d_at + 2;
    // 8 rows read side by side are more streams than the hardware prefetchers follow: the next
    // group's bytes (contiguous) are fetched by hand, spread over this group's blocks
    // (lines [b * L / nb, (b + 1) * L / nb) at block b, counted without a division).
    if (prefetch) {
      for (pf_due += prefetch_lines; pf_due >= nb; pf_due -= nb, ++pf_line)
        _mm_prefetch(reinterpret_cast<const char*>(prefetch + 64 * pf_line), _MM_HINT_T0);
    }
    __m256i z[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g)
      z[g] = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(rows[g] + at)), load128(rows[g + 4] + at), 1);
    // Per 128-bit lane j: dword i of p[k] = dword k of z[i], so lane 4j + i holds row 4j + i.
    const __m256i t0 = _mm256_unpacklo_epi32(z[0], z[1]), t1 = _mm256_unpackhi_epi32(z[0], z[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(z[2], z[3]), t3 = _mm256_unpackhi_epi32(z[2], z[3]);
    const __m256i p[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2), _mm256_unpacklo_epi64(t1, t3),
                          _mm256_unpackhi_epi64(t1, t3)};
    // Elements 4k .. 4k + 3 of every row: low nibbles of dword k for k < 4, high nibbles after.
    __m256i v[8];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_and_si256(p[k], low);
      v[k + 4] = _mm256_and_si256(_mm256_srli_epi32(p[k], 4), low);
    }
    uint64_t d_bits[2];
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      d_bits[h] = load_u16(rows[4 * h] + d_at) | static_cast<uint64_t>(load_u16(rows[4 * h + 1] + d_at)) << 16 |
                  static_cast<uint64_t>(load_u16(rows[4 * h + 2] + d_at)) << 32 |
                  static_cast<uint64_t>(load_u16(rows[4 * h + 3] + d_at)) << 48;
    }
    const __m256 d = _mm256_cvtph_ps(_mm_set_epi64x(static_cast<int64_t>(d_bits[1]), static_cast<int64_t>(d_bits[0])));
#pragma GCC unroll 8
    for (int t = 0; t < TN; ++t) {
      const uint8_t* q = act + static_cast<size_t>(t) * l.stride + kQK * b;
      __m256i s = _mm256_maddubs_epi16(v[0], _mm256_set1_epi32(static_cast<int>(load_u32(q))));
#pragma GCC unroll 8
      for (int k = 1; k < 8; ++k)
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(v[k], _mm256_set1_epi32(static_cast<int>(load_u32(q + 4 * k)))));
      const __m256i sum = _mm256_sub_epi32(_mm256_madd_epi16(s, ones), _mm256_set1_epi32(offsets[t * nb + b]));
      const float dx = reinterpret_cast<const float*>(act + static_cast<size_t>(t) * l.stride + l.d_offset)[b];
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(d, _mm256_set1_ps(dx)), acc[t]);
    }
  }
}

void q4_0_chain_tile(const uint8_t* w, size_t w_stride, int64_t nr, const uint8_t* act, const ActLayout& l, int64_t nt,
                     float* y, int64_t ldy) {
  const int64_t nb = l.cols / kQK;
  std::vector<int32_t>& offsets = t_chain_offsets;
  if (offsets.size() < static_cast<size_t>(nt * nb)) offsets.resize(static_cast<size_t>(nt * nb));
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (int64_t t = 0; t < nt; ++t) {
    const uint8_t* q = act + static_cast<size_t>(t) * l.stride;
    for (int64_t b = 0; b < nb; ++b) {
      const __m256i pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, load256(q + kQK * b)), ones16);
      offsets[static_cast<size_t>(t * nb + b)] = 8 * hsum_i32(pairs);
    }
  }
  const int64_t pf_lines = (kChainRows * static_cast<int64_t>(w_stride) + 63) / 64;
  for (int64_t line = 0; line < (std::min<int64_t>(kChainRows, nr) * static_cast<int64_t>(w_stride) + 63) / 64; ++line)
    _mm_prefetch(reinterpret_cast<const char*>(w + 64 * line), _MM_HINT_T0);
  for (int64_t r0 = 0; r0 < nr; r0 += kChainRows) {
    const int n_rows = static_cast<int>(std::min<int64_t>(kChainRows, nr - r0));
    const uint8_t* rows[kChainRows];
    for (int i = 0; i < kChainRows; ++i) rows[i] = w + (r0 + std::min(i, n_rows - 1)) * static_cast<int64_t>(w_stride);
    for (int64_t t0 = 0; t0 < nt; t0 += kChainTokens) {
      const int n_tok = static_cast<int>(std::min<int64_t>(kChainTokens, nt - t0));
      __m256 acc[kChainTokens];
      const uint8_t* a = act + static_cast<size_t>(t0) * l.stride;
      const int32_t* off = offsets.data() + t0 * nb;
      // The next 8 rows' bytes, fetched while the last token group of this group runs; past the
      // tile they are usually the next tile of this thread (a prefetch never faults).
      const uint8_t* pf = t0 + kChainTokens >= nt ? w + (r0 + kChainRows) * static_cast<int64_t>(w_stride) : nullptr;
      switch (n_tok) {
        case 4: q4_0_chain_tokens<4>(rows, a, l, off, nb, pf, pf_lines, acc); break;
        case 3: q4_0_chain_tokens<3>(rows, a, l, off, nb, pf, pf_lines, acc); break;
        case 2: q4_0_chain_tokens<2>(rows, a, l, off, nb, pf, pf_lines, acc); break;
        default: q4_0_chain_tokens<1>(rows, a, l, off, nb, pf, pf_lines, acc); break;
      }
      for (int t = 0; t < n_tok; ++t) {
        alignas(32) float lanes[kChainRows];
        _mm256_store_ps(lanes, acc[t]);
        std::memcpy(y + (t0 + t) * ldy + r0, lanes, sizeof(float) * static_cast<size_t>(n_rows));
      }
    }
  }
}

constexpr TypeKernel kernel(ActFormat act, QuantizeFn quantize, TileFn fn) { return {act, quantize, fn}; }

}  // namespace

const KernelTable& avx2_kernels() {
  static const KernelTable table = {{
      kernel(ActFormat::kF32, quantize_floats, tile<lanes::F32Batched>),
      kernel(ActFormat::kF16, quantize_floats, tile<lanes::F16Batched>),
      kernel(ActFormat::kBF16, quantize_floats, tile<lanes::BF16Batched>),
      kernel(ActFormat::kQ8_0, quantize_q8, tile<lanes::LaneBlocks<lanes::ValuesQ8_0>>),
      kernel(ActFormat::kQ8_0, quantize_q8, tile<lanes::LaneBlocks<lanes::ValuesQ4_0>>),
      kernel(ActFormat::kQ8_1, quantize_q8, tile<lanes::LaneBlocks1<lanes::ValuesQ4_1>>),
      kernel(ActFormat::kQ8_0, quantize_q8, tile<lanes::LaneBlocks<lanes::ValuesQ5_0>>),
      kernel(ActFormat::kQ8_1, quantize_q8, tile<lanes::LaneBlocks1<lanes::ValuesQ5_1>>),
      kernel(ActFormat::kQ8_K, quantize_q8_k, tile<lanes::KDot<lanes::Q2_KUnpack>>),
      kernel(ActFormat::kQ8_K, quantize_q8_k, tile<lanes::KDot<lanes::Q3_KUnpack>>),
      kernel(ActFormat::kQ8_K, quantize_q8_k, tile<lanes::KDot<lanes::Q4_KUnpack>>),
      kernel(ActFormat::kQ8_K, quantize_q8_k, tile<lanes::KDot<lanes::Q5_KUnpack>>),
      kernel(ActFormat::kQ8_K, quantize_q8_k, tile<lanes::KDot<lanes::Q6_KUnpack>>),
  },
  kernel(ActFormat::kF16, quantize_floats, tile<lanes::F16Single>),
  kernel(ActFormat::kF32, quantize_floats, tile<lanes::F32Single>),
  kernel(ActFormat::kBF16, quantize_floats, tile<lanes::BF16Single>),
  kernel(ActFormat::kQ8_0, quantize_q8, q4_0_chain_tile)
  };
  return table;
}

}  // namespace omni::kernels
