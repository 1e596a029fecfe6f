// BF16 weights with AVX512-BF16: vdpbf16ps multiplies 32 bf16 pairs and adds them into 16 float
// lanes, as ggml_vec_dot_bf16 does on such CPUs. A file of its own because it needs -mavx512bf16,
// which CPUs with the rest of AVX-512 may lack; avx512_kernels() checks before using it.
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

#include "kernels/dot_kernels.h"
#include "kernels/dot_tile.h"

namespace omni::kernels {
namespace {

inline __m512bh as_bf16(__m512i v) { return reinterpret_cast<__m512bh&>(v); }

// kNR rows x kNT tokens of accumulators, one per output, as FloatDot in dot_avx512.cpp.
struct BF16Dot {
  static constexpr int kNR = 4, kNT = 4;
  template <int NR, int NT>
  static void dot_rows(const uint8_t* w, size_t w_stride, const uint8_t* act, const ActLayout& l, float* out) {
    const int64_t n = l.cols;
    const uint8_t* a[NT];
    __m512 acc[NR * NT];
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) a[t] = act + t * l.stride;
#pragma GCC unroll 16
    for (int k = 0; k < NR * NT; ++k) acc[k] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 32) {
      // 32 bf16 pairs a step; the tail through masked loads (no over-read).
      const __mmask32 m = n - i >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << (n - i)) - 1);
      __m512bh wv[NR];
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) wv[r] = as_bf16(_mm512_maskz_loadu_epi16(m, w + r * w_stride + 2 * i));
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const __m512bh av = as_bf16(_mm512_maskz_loadu_epi16(m, a[t] + 2 * i));
#pragma GCC unroll 8
        for (int r = 0; r < NR; ++r) acc[r * NT + t] = _mm512_dpbf16_ps(acc[r * NT + t], wv[r], av);
      }
    }
#pragma GCC unroll 16
    for (int k = 0; k < NR * NT; ++k) out[k] = _mm512_reduce_add_ps(acc[k]);
  }
};

}  // namespace

TileFn avx512bf16_bf16_tile() { return tile<BF16Dot>; }

}  // namespace omni::kernels
