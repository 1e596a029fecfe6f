#include "kernels/f16_rows.h"

#include <algorithm>
#include <cmath>

#include "kernels/dot_kernels.h"
#include "kernels/fp16.h"
#include "kernels/ops.h"

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace omni::kernels {

// ---- scalar reference: ops.cpp's dots with each row element converted as it is read ----------

namespace {

float dot_row_batched_ref(const uint16_t* a, const float* b, int64_t n) {
  float lanes[16] = {};
  for (int64_t l = 0; l < n; l += 16)
    for (int i = 0; i < 16; ++i) lanes[i] = std::fma(fp16_to_fp32(a[l + i]), b[l + i], lanes[i]);
  return reduce_16_lanes(lanes);
}

float dot_row_single_ref(const uint16_t* a, const float* b, int64_t n) {
  const int64_t steps_end = n & ~int64_t{63};
  float acc[4][16] = {};
  for (int64_t i = 0; i < steps_end; i += 64)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 16; ++l) acc[j][l] = std::fma(fp16_to_fp32(a[i + 16 * j + l]), b[i + 16 * j + l], acc[j][l]);
  for (int l = 0; l < 16; ++l) {
    acc[0][l] += acc[2][l];
    acc[1][l] += acc[3][l];
  }
  for (int l = 0; l < 16; ++l) acc[0][l] += acc[1][l];
  double sum = reduce_16_lanes(acc[0]);
  for (int64_t i = steps_end; i < n; ++i) sum += static_cast<double>(fp16_to_fp32(a[i]) * b[i]);
  return static_cast<float>(sum);
}

}  // namespace

void dot_f16_rows_ref(const uint16_t* rows, size_t stride, int64_t n_rows, const float* x, int64_t len,
                      F16DotOrder order, float scale, float* out) {
  for (int64_t j = 0; j < n_rows; ++j) {
    const uint16_t* a = rows + static_cast<size_t>(j) * stride;
    out[j] = (order == F16DotOrder::kBatched ? dot_row_batched_ref(a, x, len) : dot_row_single_ref(a, x, len)) * scale;
  }
}

void round_through_f16_ref(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
}

// ---- x86 paths: the same operations, 16 lanes at a time --------------------------------------

#if defined(__x86_64__)
// GCC 12 warns about the deliberately undefined upper lanes inside its own AVX-512 intrinsics.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
namespace {

#define OMNI_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma,f16c")))
#define OMNI_AVX2 __attribute__((target("avx2,fma,f16c")))

// ggml's 16-lane reduction tree (ops.cpp reduce_16_lanes) on lanes lo = 0..7, hi = 8..15.
OMNI_AVX2 inline float reduce_16(__m256 lo, __m256 hi) {
  const __m256 t = _mm256_add_ps(hi, lo);
  const __m128 u = _mm_add_ps(_mm256_extractf128_ps(t, 1), _mm256_castps256_ps128(t));
  const __m128 v = _mm_add_ps(_mm_movehl_ps(u, u), u);  // v0 = u0 + u2, v1 = u1 + u3
  return _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)));
}

OMNI_AVX512 inline float reduce_16(__m512 a) {
  return reduce_16(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

OMNI_AVX512 inline __m512 load_f16x16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
OMNI_AVX2 inline __m256 load_f16x8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

OMNI_AVX512 float dot_row_batched_avx512(const uint16_t* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t l = 0; l < n; l += 16) acc = _mm512_fmadd_ps(load_f16x16(a + l), _mm512_loadu_ps(b + l), acc);
  return reduce_16(acc);
}

OMNI_AVX512 float dot_row_single_avx512(const uint16_t* a, const float* b, int64_t n) {
  const int64_t steps_end = n & ~int64_t{63};
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int64_t i = 0; i < steps_end; i += 64)
    for (int j = 0; j < 4; ++j)
      acc[j] = _mm512_fmadd_ps(load_f16x16(a + i + 16 * j), _mm512_loadu_ps(b + i + 16 * j), acc[j]);
  acc[0] = _mm512_add_ps(acc[0], acc[2]);
  acc[1] = _mm512_add_ps(acc[1], acc[3]);
  double sum = reduce_16(_mm512_add_ps(acc[0], acc[1]));
  for (int64_t i = steps_end; i < n; ++i) sum += static_cast<double>(_cvtsh_ss(a[i]) * b[i]);
  return static_cast<float>(sum);
}

OMNI_AVX2 float dot_row_batched_avx2(const uint16_t* a, const float* b, int64_t n) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  for (int64_t l = 0; l < n; l += 16) {
    lo = _mm256_fmadd_ps(load_f16x8(a + l), _mm256_loadu_ps(b + l), lo);
    hi = _mm256_fmadd_ps(load_f16x8(a + l + 8), _mm256_loadu_ps(b + l + 8), hi);
  }
  return reduce_16(lo, hi);
}

OMNI_AVX2 float dot_row_single_avx2(const uint16_t* a, const float* b, int64_t n) {
  const int64_t steps_end = n & ~int64_t{63};
  __m256 acc[8];
  for (auto& v : acc) v = _mm256_setzero_ps();
  for (int64_t i = 0; i < steps_end; i += 64)
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(load_f16x8(a + i + 8 * j), _mm256_loadu_ps(b + i + 8 * j), acc[j]);
  // acc[2j], acc[2j + 1] are lanes 0-7 and 8-15 of ggml's accumulator j.
  const __m256 lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
  const __m256 hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
  double sum = reduce_16(lo, hi);
  for (int64_t i = steps_end; i < n; ++i) sum += static_cast<double>(_cvtsh_ss(a[i]) * b[i]);
  return static_cast<float>(sum);
}

OMNI_AVX512 void dot_rows_avx512(const uint16_t* rows, size_t stride, int64_t n_rows, const float* x, int64_t len,
                                 F16DotOrder order, float scale, float* out) {
  for (int64_t j = 0; j < n_rows; ++j) {
    const uint16_t* a = rows + static_cast<size_t>(j) * stride;
    out[j] = (order == F16DotOrder::kBatched ? dot_row_batched_avx512(a, x, len) : dot_row_single_avx512(a, x, len)) *
             scale;
  }
}

OMNI_AVX2 void dot_rows_avx2(const uint16_t* rows, size_t stride, int64_t n_rows, const float* x, int64_t len,
                             F16DotOrder order, float scale, float* out) {
  for (int64_t j = 0; j < n_rows; ++j) {
    const uint16_t* a = rows + static_cast<size_t>(j) * stride;
    out[j] = (order == F16DotOrder::kBatched ? dot_row_batched_avx2(a, x, len) : dot_row_single_avx2(a, x, len)) * scale;
  }
}

// Transposed reduce16 of 16 accumulators at once: the same additions as reduce_16 on each (lanes
// i and i+8, then 4 apart, then (u0+u2)+(u1+u3)), done by shuffling accumulators together rather
// than within one register. Lane a of the result is accumulator a's sum.
OMNI_AVX512 inline __m512 reduce_16_x16(const __m512* acc) {
  __m512 t[8], u[4], v[2];
#pragma GCC unroll 16
  for (int k = 0; k < 8; ++k)
    t[k] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[2 * k], acc[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)),
                         _mm512_shuffle_f32x4(acc[2 * k], acc[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)));
#pragma GCC unroll 16
  for (int m = 0; m < 4; ++m)  // quarter j of u[m]: accumulator 4m + j
    u[m] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * m], t[2 * m + 1], _MM_SHUFFLE(3, 1, 3, 1)),
                         _mm512_shuffle_f32x4(t[2 * m], t[2 * m + 1], _MM_SHUFFLE(2, 0, 2, 0)));
#pragma GCC unroll 16
  for (int n = 0; n < 2; ++n)  // quarter j of v[n]: (u0+u2, u1+u3) of accumulators 8n + j and 8n + 4 + j
    v[n] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * n], u[2 * n + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(u[2 * n], u[2 * n + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  // Lane 4j + i of w: accumulator j + 4i.
  const __m512 w = _mm512_add_ps(_mm512_shuffle_ps(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), w);
}

// dot_row_batched_avx512 for Q vectors against R = 16 / Q rows at a time: each row chunk is
// converted once for all vectors, and the 16 (or fewer) sums are reduced together.
template <int Q>
OMNI_AVX512 void dot_rows_batched_multi_avx512(const uint16_t* rows, size_t stride, int64_t n_rows,
                                               const float* const* xs, int64_t len, float scale, float* const* outs) {
  constexpr int R = 16 / Q;
  const __m512 vscale = _mm512_set1_ps(scale);
  for (int64_t j0 = 0; j0 < n_rows; j0 += R) {
    const int nr = static_cast<int>(std::min<int64_t>(R, n_rows - j0));
    const uint16_t* row[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) row[r] = rows + static_cast<size_t>(j0 + std::min(r, nr - 1)) * stride;
    __m512 acc[16];
#pragma GCC unroll 16
    for (auto& a : acc) a = _mm512_setzero_ps();
    for (int64_t l = 0; l < len; l += 16) {
      __m512 x[Q];
#pragma GCC unroll 16
      for (int q = 0; q < Q; ++q) x[q] = _mm512_loadu_ps(xs[q] + l);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512 a = load_f16x16(row[r] + l);
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) acc[q * R + r] = _mm512_fmadd_ps(a, x[q], acc[q * R + r]);
      }
    }
    alignas(64) float sums[16];
    _mm512_store_ps(sums, _mm512_mul_ps(reduce_16_x16(acc), vscale));
#pragma GCC unroll 16
    for (int q = 0; q < Q; ++q)
#pragma GCC unroll 16
      for (int r = 0; r < nr; ++r) outs[q][j0 + r] = sums[q * R + r];
  }
}

OMNI_AVX2 void round_avx2(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
  round_through_f16_ref(x + i, n - i);
}


}  // namespace

void dot_f16_rows(const uint16_t* rows, size_t stride, int64_t n_rows, const float* x, int64_t len, F16DotOrder order,
                  float scale, float* out) {
  switch (active_simd_level()) {
    case SimdLevel::kAvx512:
      return dot_rows_avx512(rows, stride, n_rows, x, len, order, scale, out);
    case SimdLevel::kAvx2:
      return dot_rows_avx2(rows, stride, n_rows, x, len, order, scale, out);
    default:
      break;
  }
  dot_f16_rows_ref(rows, stride, n_rows, x, len, order, scale, out);
}

void dot_f16_rows_multi(const uint16_t* rows, size_t stride, int64_t n_rows, const float* const* xs, int n_x,
                        int64_t len, F16DotOrder order, float scale, float* const* outs) {
  if (order == F16DotOrder::kBatched && active_simd_level() == SimdLevel::kAvx512) {
    for (int i = 0; i < n_x; i += 4) {
      switch (std::min(4, n_x - i)) {
        case 4: dot_rows_batched_multi_avx512<4>(rows, stride, n_rows, xs + i, len, scale, outs + i); break;
        case 3: dot_rows_batched_multi_avx512<3>(rows, stride, n_rows, xs + i, len, scale, outs + i); break;
        case 2: dot_rows_batched_multi_avx512<2>(rows, stride, n_rows, xs + i, len, scale, outs + i); break;
        default: dot_rows_batched_multi_avx512<1>(rows, stride, n_rows, xs + i, len, scale, outs + i); break;
      }
    }
    return;
  }
  for (int i = 0; i < n_x; ++i) dot_f16_rows(rows, stride, n_rows, xs[i], len, order, scale, outs[i]);
}

void round_through_f16(float* x, int64_t n) {
  if (active_simd_level() != SimdLevel::kScalar) return round_avx2(x, n);
  round_through_f16_ref(x, n);
}

#elif defined(__aarch64__)
// ---- AArch64: the same operations, 4 lanes per register (Advanced SIMD, on every such CPU) -------

namespace {

inline float32x4_t load_f16x4(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

// reduce_16_lanes on lanes a0 = 0..3, a1 = 4..7, a2 = 8..11, a3 = 12..15: t = hi 8 + lo 8, u = hi 4 +
// lo 4 of t, then (u0 + u2) + (u1 + u3).
inline float reduce_16(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3) {
  const float32x4_t u = vaddq_f32(vaddq_f32(a3, a1), vaddq_f32(a2, a0));
  const float32x2_t v = vadd_f32(vget_low_f32(u), vget_high_f32(u));
  return vget_lane_f32(v, 0) + vget_lane_f32(v, 1);
}

float dot_row_batched_neon(const uint16_t* a, const float* b, int64_t n) {
  float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
  for (int64_t l = 0; l < n; l += 16)
    for (int k = 0; k < 4; ++k) acc[k] = vfmaq_f32(acc[k], load_f16x4(a + l + 4 * k), vld1q_f32(b + l + 4 * k));
  return reduce_16(acc[0], acc[1], acc[2], acc[3]);
}

float dot_row_single_neon(const uint16_t* a, const float* b, int64_t n) {
  const int64_t steps_end = n & ~int64_t{63};
  float32x4_t acc[16];  // acc[4j + k]: lanes 4k .. 4k + 3 of ggml's accumulator j
  for (auto& v : acc) v = vdupq_n_f32(0.0f);
  for (int64_t i = 0; i < steps_end; i += 64)
    for (int k = 0; k < 16; ++k) acc[k] = vfmaq_f32(acc[k], load_f16x4(a + i + 4 * k), vld1q_f32(b + i + 4 * k));
  float32x4_t s[4];
  for (int k = 0; k < 4; ++k) s[k] = vaddq_f32(vaddq_f32(acc[k], acc[8 + k]), vaddq_f32(acc[4 + k], acc[12 + k]));
  double sum = reduce_16(s[0], s[1], s[2], s[3]);
  for (int64_t i = steps_end; i < n; ++i) sum += static_cast<double>(fp16_to_fp32(a[i]) * b[i]);
  return static_cast<float>(sum);
}

void round_neon(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vcvt_f32_f16(vcvt_f16_f32(vld1q_f32(x + i))));
  round_through_f16_ref(x + i, n - i);
}

}  // namespace

void dot_f16_rows(const uint16_t* rows, size_t stride, int64_t n_rows, const float* x, int64_t len, F16DotOrder order,
                  float scale, float* out) {
  if (active_simd_level() == SimdLevel::kScalar) return dot_f16_rows_ref(rows, stride, n_rows, x, len, order, scale, out);
  for (int64_t j = 0; j < n_rows; ++j) {
    const uint16_t* a = rows + static_cast<size_t>(j) * stride;
    out[j] = (order == F16DotOrder::kBatched ? dot_row_batched_neon(a, x, len) : dot_row_single_neon(a, x, len)) * scale;
  }
}
void dot_f16_rows_multi(const uint16_t* rows, size_t stride, int64_t n_rows, const float* const* xs, int n_x,
                        int64_t len, F16DotOrder order, float scale, float* const* outs) {
  for (int i = 0; i < n_x; ++i) dot_f16_rows(rows, stride, n_rows, xs[i], len, order, scale, outs[i]);
}
void round_through_f16(float* x, int64_t n) {
  if (active_simd_level() != SimdLevel::kScalar) return round_neon(x, n);
  round_through_f16_ref(x, n);
}

#else

void dot_f16_rows(const uint16_t* rows, size_t stride, int64_t n_rows, const float* x, int64_t len, F16DotOrder order,
                  float scale, float* out) {
  dot_f16_rows_ref(rows, stride, n_rows, x, len, order, scale, out);
}
void dot_f16_rows_multi(const uint16_t* rows, size_t stride, int64_t n_rows, const float* const* xs, int n_x,
                        int64_t len, F16DotOrder order, float scale, float* const* outs) {
  for (int i = 0; i < n_x; ++i) dot_f16_rows_ref(rows, stride, n_rows, xs[i], len, order, scale, outs[i]);
}
void round_through_f16(float* x, int64_t n) { round_through_f16_ref(x, n); }

#endif

}  // namespace omni::kernels
