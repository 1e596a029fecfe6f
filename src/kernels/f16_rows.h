// Attention's inner loops over an F16 KV cache: dot products of many F16 rows with one f32 vector
// that holds F16 values, and rounding f32 vectors through F16.
//
// The sums are those of ops.h's dot_f16_batched / dot_f16_single (ggml's structure, see there);
// the rows are converted from F16 on the fly. An AVX-512, AVX2 or NEON path is chosen at run time
// when the CPU has it; every path gives the same bits as the scalar one (f16_rows_test).
#pragma once

#include <cstddef>
#include <cstdint>

namespace omni::kernels {

enum class F16DotOrder : uint8_t {
  kBatched,  // dot_f16_batched (len a multiple of 16)
  kSingle,   // dot_f16_single
};

// out[j] = dot(row j, x) * scale for j in [0, n_rows), where row j is rows[j * stride .. + len).
void dot_f16_rows(const uint16_t* rows, size_t stride, int64_t n_rows, const float* x, int64_t len, F16DotOrder order,
                  float scale, float* out);

// Several vectors against the same rows: outs[i][j] = dot(row j, xs[i]) * scale for i < n_x, the
// bits dot_f16_rows gives for each vector alone. Faster: each row is converted once for all of them.
void dot_f16_rows_multi(const uint16_t* rows, size_t stride, int64_t n_rows, const float* const* xs, int n_x,
                        int64_t len, F16DotOrder order, float scale, float* const* outs);

// x[i] = the F16 value nearest x[i] (ties to even), as f32.
void round_through_f16(float* x, int64_t n);

// The scalar reference paths, for tests.
void dot_f16_rows_ref(const uint16_t* rows, size_t stride, int64_t n_rows, const float* x, int64_t len,
                      F16DotOrder order, float scale, float* out);
void round_through_f16_ref(float* x, int64_t n);

}  // namespace omni::kernels
