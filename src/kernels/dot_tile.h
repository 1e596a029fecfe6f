// The tile loops shared by the SIMD kernel files (internal to the kernels library).
//
// Everything here sits in an anonymous namespace on purpose: each translation unit that includes
// this header is compiled for a different instruction set and must get its own private copy, never
// one the linker could pick from another unit (an AVX-512 copy of a shared inline function would
// crash older CPUs).
//
// Two kinds of kernel K, both with `kNT`, the tokens of a register tile:
//  - Float kernels (F32 / F16 / BF16 weights) provide `kNR` and
//      template <int NR, int NT> static void dot_rows(const uint8_t* w, size_t w_stride,
//                                                     const uint8_t* act, const ActLayout&, float* out)
//    the dots of NR consecutive rows with NT consecutive tokens (out[r * NT + t]).
//  - Quantized kernels provide an accumulator type `Acc` with `static Acc zero()` and
//    `static float reduce(const Acc&)`, and
//      template <int NT> static void run(const uint8_t* w, size_t w_stride, const uint8_t* act,
//                                        const ActLayout&, int64_t u0, int64_t u1, Acc* acc)
//    which adds units [u0, u1) of 256 weights of the row at w (the last unit may be shorter; rows
//    are w_stride bytes apart, for prefetching) against NT tokens into acc[0 .. NT).
// tile() takes tokens in groups of kNT, then one smaller group. Each output must be computed the
// same way for every NR and NT.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/activation_quant.h"

namespace omni::kernels {
namespace {

// The parts of activation record t.
struct ActRef {
  const uint8_t* q;  // values
  const float* d;    // block scales
  const uint8_t* x;  // per-format extra array
};

inline ActRef act_ref(const uint8_t* act, const ActLayout& l, int t) {
  const uint8_t* rec = act + static_cast<size_t>(t) * l.stride;
  return {rec, reinterpret_cast<const float*>(rec + l.d_offset), rec + l.x_offset};
}

constexpr int64_t kUnit = 256;  // weights per unit of run()

template <class K, int NR, int NT>
void tile_call(const uint8_t* w, size_t w_stride, const uint8_t* act, const ActLayout& l, float* y, int64_t ldy) {
  float out[NR * NT];
  K::template dot_rows<NR, NT>(w, w_stride, act, l, out);
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = out[r * NT + t];
  }
}

// The last n < NR rows, NR - 1 at a time downwards.
template <class K, int NR, int NT>
void tile_rows_rest(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, const ActLayout& l, float* y,
                    int64_t ldy) {
  if constexpr (NR > 0) {
    if (n == NR) {
      tile_call<K, NR, NT>(w, w_stride, act, l, y, ldy);
    } else {
      tile_rows_rest<K, NR - 1, NT>(n, w, w_stride, act, l, y, ldy);
    }
  }
}

template <class K, int NT>
void tile_rows(const uint8_t* w, size_t w_stride, int64_t nr, const uint8_t* act, const ActLayout& l, float* y,
               int64_t ldy) {
  if constexpr (requires { K::kNR; }) {
    int64_t r = 0;
    for (; r + K::kNR <= nr; r += K::kNR) tile_call<K, K::kNR, NT>(w + r * w_stride, w_stride, act, l, y + r, ldy);
    tile_rows_rest<K, K::kNR - 1, NT>(nr - r, w + r * w_stride, w_stride, act, l, y + r, ldy);
  } else {
    const int64_t units = (l.cols + kUnit - 1) / kUnit;
    for (int64_t r = 0; r < nr; ++r) {
      typename K::Acc acc[NT];
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) acc[t] = K::zero();
      K::template run<NT>(w + r * w_stride, w_stride, act, l, 0, units, acc);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = K::reduce(acc[t]);
    }
  }
}

// The last n < NT tokens.
template <class K, int NT>
void tile_rest(int64_t n, const uint8_t* w, size_t w_stride, int64_t nr, const uint8_t* act, const ActLayout& l,
               float* y, int64_t ldy) {
  if constexpr (NT > 0) {
    if (n == NT) {
      tile_rows<K, NT>(w, w_stride, nr, act, l, y, ldy);
    } else {
      tile_rest<K, NT - 1>(n, w, w_stride, nr, act, l, y, ldy);
    }
  }
}

template <class K>
void tile(const uint8_t* w, size_t w_stride, int64_t nr, const uint8_t* act, const ActLayout& l, int64_t nt, float* y,
          int64_t ldy) {
  int64_t t = 0;
  for (; t + K::kNT <= nt; t += K::kNT) tile_rows<K, K::kNT>(w, w_stride, nr, act + t * l.stride, l, y + t * ldy, ldy);
  tile_rest<K, K::kNT - 1>(nt - t, w, w_stride, nr, act + t * l.stride, l, y + t * ldy, ldy);
}

}  // namespace
}  // namespace omni::kernels
