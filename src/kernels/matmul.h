// Matrix multiplication of a weight matrix stored in a ggml block format by f32 activations.
//
// A weight is `rows` rows of `cols` elements (ggml: ne0 = cols, ne1 = rows), stored row after row in
// its TensorType, viewed in place (e.g. inside a mapped GGUF file). The activations are quantized
// the way ggml does for that weight type (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K
// quants, F16 for F16, BF16 for BF16), so results match ggml's CPU backend up to summation order.
// Each type has a scalar reference and SIMD paths (AVX2, AVX-512) chosen at run time.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gguf/types.h"
#include "kernels/thread_pool.h"

namespace omni::kernels {

struct WeightView {
  gguf::TensorType type = gguf::TensorType::F32;
  int64_t cols = 0;  // elements per row (the input dimension)
  int64_t rows = 0;  // number of rows (the output dimension)
  const void* data = nullptr;
};

// True if matmul supports weights of this type.
bool matmul_supports(gguf::TensorType type);

// y[t * rows + r] = dot(row r of w, x[t * cols .. t * cols + cols)) for t in [0, n_tokens).
// `x` and `y` must not overlap. Preconditions (checked by assert): supported type, cols a multiple
// of the type's block size.
// The last `n_single` rows are each summed as a call with that row alone would sum it, the others as
// one batch would: a batch of several sequences' rows gives each sequence the bits it gets alone
// (ggml sums one token differently from a batch for F16/F32/BF16 weights; for the quantized types
// it is the same kernel and all rows go in one pass over the weights).
void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool, int64_t n_single = 0);

// Writes row `row` of `w`, dequantized, to out[0 .. cols).
void dequantize_row_of(const WeightView& w, int64_t row, float* out);

// Which SIMD path matmul uses on this CPU: "avx512", "avx2" or "scalar". Overridable for tests and
// benchmarks with force_simd_level (nullptr = automatic).
const char* simd_level();
void force_simd_level(const char* level);

}  // namespace omni::kernels
