#include "kernels/ops.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/dot_kernels.h"
#include "kernels/fp16.h"

#if defined(__x86_64__)
// GCC 12's AVX-512 headers trip its own uninitialized-value warnings (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#endif

namespace omni::kernels {

namespace {

// Inlined into the FMA clones of softmax and silu_mul below.
inline float exp_approx_inline(float x) {
  // exp(x) = 2^n * exp(b), n = round(x / ln 2), b = x - n ln 2 (in two parts for accuracy).
  const float shift = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, shift);
  const float n = z - shift;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  if (std::fabs(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                           std::fma(0x1.ffffecp-1f, b, 1.0f));
  return std::ldexp(j, static_cast<int>(n));
}

}  // namespace

float exp_approx(float x) { return exp_approx_inline(x); }

float reduce_16_lanes(const float* a) {
  float t[8];
  for (int i = 0; i < 8; ++i) t[i] = a[i + 8] + a[i];
  return reduce_8_lanes(t);
}

float reduce_8_lanes(const float* a) {
  float u[4];
  for (int i = 0; i < 4; ++i) u[i] = a[i + 4] + a[i];
  return (u[0] + u[2]) + (u[1] + u[3]);
}

// Functions cloned per CPU (target_clones) are picked by an ifunc resolver while the program loads,
// before ThreadSanitizer is initialized: instrumented, the resolver crashes. Under TSan only the
// default clone is built (results are the same bit for bit). AArch64 always has FMA: no clones.
#if defined(__SANITIZE_THREAD__)  // GCC
#define OMNI_THREAD_SANITIZER
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)  // Clang
#define OMNI_THREAD_SANITIZER
#endif
#endif
#if defined(OMNI_THREAD_SANITIZER) || !defined(__x86_64__)
#define OMNI_FMA_CLONES
#else
#define OMNI_FMA_CLONES __attribute__((target_clones("fma", "default")))
#endif

// The dots run inside attention for every (token, head, position): cloned for FMA hardware, where
// std::fma is one instruction instead of a library call. The result is the same bit for bit.
OMNI_FMA_CLONES float dot_f16_batched(const float* a, const float* b, int64_t n) {
  float lanes[16] = {};
  for (int64_t l = 0; l < n; l += 16)
    for (int i = 0; i < 16; ++i) lanes[i] = std::fma(a[l + i], b[l + i], lanes[i]);
  return reduce_16_lanes(lanes);
}

OMNI_FMA_CLONES float dot_f16_single(const float* a, const float* b, int64_t n) {
  const int64_t steps_end = n & ~int64_t{63};
  float acc[4][16] = {};
  for (int64_t i = 0; i < steps_end; i += 64)
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 16; ++l) acc[j][l] = std::fma(a[i + 16 * j + l], b[i + 16 * j + l], acc[j][l]);
  for (int l = 0; l < 16; ++l) {
    acc[0][l] += acc[2][l];
    acc[1][l] += acc[3][l];
  }
  for (int l = 0; l < 16; ++l) acc[0][l] += acc[1][l];
  double sum = reduce_16_lanes(acc[0]);
  for (int64_t i = steps_end; i < n; ++i) sum += static_cast<double>(a[i] * b[i]);
  return static_cast<float>(sum);
}

void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float s = 1.0f / std::sqrt(static_cast<float>(sum / static_cast<double>(n)) + eps);
  if (weight) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s * weight[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
  }
}

namespace {

OMNI_FMA_CLONES void softmax_scalar(float* x, int64_t n) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max = std::max(max, x[i]);
  // Chunks of 16 use the approximate exp and are summed as one vector; the tail uses libm's.
  double sum = 0.0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int l = 0; l < 16; ++l) x[i + l] = exp_approx_inline(x[i + l] - max);
    sum += reduce_16_lanes(x + i);
  }
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t k = 0; k < n; ++k) x[k] *= inv;
}

// silu(x) = x / (1 + exp(-x)): chunks of 16 with the approximate exp (as ggml's vectorized silu),
// the tail with libm's.
OMNI_FMA_CLONES void silu_mul_scalar(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) gate[i + l] = gate[i + l] / (1.0f + exp_approx_inline(-gate[i + l]));
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i]));
  for (int64_t k = 0; k < n; ++k) gate[k] *= up[k];
}

#if defined(__x86_64__)
#define OMNI_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))

// exp_approx_inline on 16 lanes: the same operations; vscalefps is ldexp (exact scaling, one
// rounding for subnormal results, 0 or infinity beyond the range, as the scalar's |n| > 192 test).
OMNI_AVX512 inline __m512 exp_approx_16(__m512 x) {
  const __m512 shift = _mm512_set1_ps(0x1.8p23f);
  const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), shift);
  const __m512 n = _mm512_sub_ps(z, shift);
  const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                    _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
  const __m512 u = _mm512_mul_ps(b, b);
  const __m512 j = _mm512_fmadd_ps(
      _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                      _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
      u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(j, n);
}

// ggml's 16-lane reduction tree (reduce_16_lanes): ((l_i + l_i+8) then + 4 apart, then (u0+u2)+(u1+u3)).
OMNI_AVX512 inline float reduce_16(__m512 a) {
  const __m256 hi = _mm512_castps512_ps256(_mm512_shuffle_f32x4(a, a, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 t = _mm256_add_ps(hi, _mm512_castps512_ps256(a));
  const __m128 u = _mm_add_ps(_mm256_extractf128_ps(t, 1), _mm256_castps256_ps128(t));
  const __m128 v = _mm_add_ps(_mm_movehl_ps(u, u), u);
  return _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)));
}

OMNI_AVX512 void softmax_avx512(float* x, int64_t n) {
  // max is exact in any order; max_ps(value, acc) keeps acc when value is NaN, as std::max does.
  __m512 vmax16 = _mm512_set1_ps(-INFINITY);
  int64_t m = 0;
  for (; m + 16 <= n; m += 16) vmax16 = _mm512_max_ps(_mm512_loadu_ps(x + m), vmax16);
  float lanes[16];
  _mm512_storeu_ps(lanes, vmax16);
  float max = -INFINITY;
  for (float v : lanes) max = std::max(max, v);
  for (; m < n; ++m) max = std::max(max, x[m]);
  const __m512 vmax = _mm512_set1_ps(max);
  double sum = 0.0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp_approx_16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmax));
    _mm512_storeu_ps(x + i, e);
    sum += reduce_16(e);
  }
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / sum));
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) _mm512_storeu_ps(x + k, _mm512_mul_ps(_mm512_loadu_ps(x + k), inv));
  for (; k < n; ++k) x[k] *= static_cast<float>(1.0 / sum);
}

OMNI_AVX512 void silu_mul_avx512(float* gate, const float* up, int64_t n) {
  const __m512i sign = _mm512_set1_epi32(static_cast<int32_t>(0x80000000u));
  const __m512 one = _mm512_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 g = _mm512_loadu_ps(gate + i);
    const __m512 e = exp_approx_16(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(g), sign)));
    _mm512_storeu_ps(gate + i, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_loadu_ps(up + i)));
  }
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// The same operations 8 lanes at a time, for CPUs with AVX2 but not AVX-512. ldexp(j, n) is two
// exact power-of-two multiplications, 2^(n >> 1) then 2^(n - (n >> 1)): for |n| <= 192 both factors
// are normal floats and the first product is exact (j is near 1), so only the second rounds, once,
// as ldexp does (subnormal results, infinity beyond the range).
#define OMNI_AVX2 __attribute__((target("avx2,fma")))

OMNI_AVX2 inline __m256 pow2i_8(__m256i k) {  // 2^k for k in [-126, 127]
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}

OMNI_AVX2 inline __m256 exp_approx_8(__m256 x) {
  const __m256 shift = _mm256_set1_ps(0x1.8p23f);
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift);
  const __m256 n = _mm256_sub_ps(z, shift);
  const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                    _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 j = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                      _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
      u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
  // n is a whole number here (NaN gives INT_MIN, clamped: j is NaN then and stays so).
  const __m256i k = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(192)),
                                     _mm256_set1_epi32(-192));
  const __m256i k1 = _mm256_srai_epi32(k, 1);
  const __m256 scaled = _mm256_mul_ps(_mm256_mul_ps(j, pow2i_8(k1)), pow2i_8(_mm256_sub_epi32(k, k1)));
  // |n| > 192: 0 for n <= 0, infinity above (NaN compares false and keeps the NaN).
  const __m256 far = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), n), _mm256_set1_ps(192.0f), _CMP_GT_OQ);
  const __m256 limit = _mm256_and_ps(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_GT_OQ), _mm256_set1_ps(INFINITY));
  return _mm256_blendv_ps(scaled, limit, far);
}

// reduce_16_lanes of lo (lanes 0-7) and hi (lanes 8-15).
OMNI_AVX2 inline float reduce_16(__m256 lo, __m256 hi) {
  const __m256 t = _mm256_add_ps(hi, lo);
  const __m128 u = _mm_add_ps(_mm256_extractf128_ps(t, 1), _mm256_castps256_ps128(t));
  const __m128 v = _mm_add_ps(_mm_movehl_ps(u, u), u);
  return _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)));
}

OMNI_AVX2 void softmax_avx2(float* x, int64_t n) {
  // As softmax_avx512: max is exact in any order, max_ps(value, acc) keeps acc for a NaN value.
  __m256 vmax8 = _mm256_set1_ps(-INFINITY);
  int64_t m = 0;
  for (; m + 8 <= n; m += 8) vmax8 = _mm256_max_ps(_mm256_loadu_ps(x + m), vmax8);
  float lanes[8];
  _mm256_storeu_ps(lanes, vmax8);
  float max = -INFINITY;
  for (float v : lanes) max = std::max(max, v);
  for (; m < n; ++m) max = std::max(max, x[m]);
  const __m256 vmax = _mm256_set1_ps(max);
  double sum = 0.0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 lo = exp_approx_8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
    const __m256 hi = exp_approx_8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vmax));
    _mm256_storeu_ps(x + i, lo);
    _mm256_storeu_ps(x + i + 8, hi);
    sum += reduce_16(lo, hi);
  }
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv_s = static_cast<float>(1.0 / sum);
  const __m256 inv = _mm256_set1_ps(inv_s);
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) _mm256_storeu_ps(x + k, _mm256_mul_ps(_mm256_loadu_ps(x + k), inv));
  for (; k < n; ++k) x[k] *= inv_s;
}

OMNI_AVX2 void silu_mul_avx2(float* gate, const float* up, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  // The whole chunks of 16 take the approximate exp, the tail libm's.
  int64_t i = 0;
  for (; i < n / 16 * 16; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp_approx_8(_mm256_xor_ps(g, sign));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}
#endif

}  // namespace

void softmax(float* x, int64_t n) {
#if defined(__x86_64__)
  if (active_simd_level() == SimdLevel::kAvx512) return softmax_avx512(x, n);
  if (active_simd_level() == SimdLevel::kAvx2) return softmax_avx2(x, n);
#endif
  softmax_scalar(x, n);
}

void softmax_reference(float* x, int64_t n) { softmax_scalar(x, n); }

void silu_mul(float* gate, const float* up, int64_t n) {
#if defined(__x86_64__)
  if (active_simd_level() == SimdLevel::kAvx512) return silu_mul_avx512(gate, up, n);
  if (active_simd_level() == SimdLevel::kAvx2) return silu_mul_avx2(gate, up, n);
#endif
  silu_mul_scalar(gate, up, n);
}

void silu_mul_reference(float* gate, const float* up, int64_t n) { silu_mul_scalar(gate, up, n); }

namespace {
// ggml evaluates GELU through a table indexed by the F16 value of x, holding F16 results, built by
// code compiled with FMA contraction (which fuses 1 + a*x*x: one entry, x = -1.999, comes out one
// F16 step apart without the fused form). The same table, built once.
const std::vector<uint16_t>& gelu_f16_table() {
  static const std::vector<uint16_t> table = [] {
    constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
    constexpr float kCoefA = 0.044715f;
    std::vector<uint16_t> t(1 << 16);
    for (uint32_t bits = 0; bits < t.size(); ++bits) {
      const float h = fp16_to_fp32(static_cast<uint16_t>(bits));
      const float inner = std::fma(kCoefA * h, h, 1.0f);
      t[bits] = fp32_to_fp16(0.5f * h * (1.0f + std::tanh(kSqrt2OverPi * h * inner)));
    }
    return t;
  }();
  return table;
}
}  // namespace

void gelu_mul(float* gate, const float* up, int64_t n) {
  const std::vector<uint16_t>& table = gelu_f16_table();
  for (int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    float g;
    if (x <= -10.0f) {
      g = 0.0f;
    } else if (x >= 10.0f) {
      g = x;
    } else {
      g = fp16_to_fp32(table[fp32_to_fp16(x)]);
    }
    gate[i] = g * up[i];
  }
}

void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void scale(float* y, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= s;
}

// Each rotated value is one fused multiply-add over one rounded product: ggml's CPU backend is built
// with FMA contraction, which fuses the first product of a*cos - b*sin and a*sin + b*cos, and the
// query is rounded to F16 after RoPE, where a one-ulp difference sometimes crosses a rounding point.
// The bodies are inlined into an FMA-target copy so that std::fma is one instruction, not a call.
namespace {
__attribute__((always_inline)) inline void rope_adjacent_body(float* x, const float* cos, const float* sin,
                                                              int64_t n_rot) {
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    float a = x[2 * i], b = x[2 * i + 1];
    x[2 * i] = std::fma(a, cos[i], -(b * sin[i]));
    x[2 * i + 1] = std::fma(a, sin[i], b * cos[i]);
  }
}

__attribute__((always_inline)) inline void rope_halves_body(float* x, const float* cos, const float* sin,
                                                            int64_t n_rot) {
  const int64_t half = n_rot / 2;
  for (int64_t i = 0; i < half; ++i) {
    float a = x[i], b = x[i + half];
    x[i] = std::fma(a, cos[i], -(b * sin[i]));
    x[i + half] = std::fma(a, sin[i], b * cos[i]);
  }
}

#if defined(__x86_64__)
__attribute__((target("fma"))) void rope_adjacent_fma(float* x, const float* cos, const float* sin, int64_t n_rot) {
  rope_adjacent_body(x, cos, sin, n_rot);
}
__attribute__((target("fma"))) void rope_halves_fma(float* x, const float* cos, const float* sin, int64_t n_rot) {
  rope_halves_body(x, cos, sin, n_rot);
}
#endif
}  // namespace

void rope_adjacent(float* x, const float* cos, const float* sin, int64_t n_rot) {
#if defined(__x86_64__)
  if (active_simd_level() != SimdLevel::kScalar) return rope_adjacent_fma(x, cos, sin, n_rot);
#endif
  rope_adjacent_body(x, cos, sin, n_rot);
}

void rope_halves(float* x, const float* cos, const float* sin, int64_t n_rot) {
#if defined(__x86_64__)
  if (active_simd_level() != SimdLevel::kScalar) return rope_halves_fma(x, cos, sin, n_rot);
#endif
  rope_halves_body(x, cos, sin, n_rot);
}

void rope_angles(float pos, float base, float freq_scale, const float* freq_factors, int64_t n_rot, float* cos,
                 float* sin) {
  const float theta_scale = std::pow(base, -2.0f / static_cast<float>(n_rot));
  float theta = pos;
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    float t = freq_scale * (freq_factors ? theta / freq_factors[i] : theta);
    cos[i] = std::cos(t);
    sin[i] = std::sin(t);
    theta *= theta_scale;
  }
}

}  // namespace omni::kernels
