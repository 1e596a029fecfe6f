// Reference (scalar) quantization and dequantization of one row of a tensor, in ggml's exact block
// layouts.
//
// quantize_row writes what ggml's quantize_row_*_ref reference quantizers write for the same floats
// (same formulas, same float operations, same rounding), so files we make are byte-identical to
// files llama.cpp makes without an importance matrix. dequantize_row computes what ggml's
// dequantize_row_* computes. These are the correctness oracle for faster kernels, and the writer
// path of `omni synth`; they are not tuned for speed.
//
// Supported (quantize and dequantize): F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K
// Q6_K. The K-quants follow ggml's quantize_row_q*_K_ref (the path llama-quantize takes without an
// importance matrix), including their scale searches (make_qkx2_quants, make_q3_quants,
// make_qx_quants) and round-half-even nearest_int.
//
// Preconditions (programming errors, not input errors: the process aborts with a message if they
// do not hold, rather than corrupting memory): the type is supported (can_quantize/can_dequantize),
// n >= 0 is a multiple of the type's block size (gguf::tensor_type_traits), `dst`/`src` hold
// gguf::row_bytes(type, n) bytes and n floats. Callers validating untrusted files check these first.
// Quantizing NaN or infinity gives unspecified bytes (as in ggml); the values must be finite.
#pragma once

#include <cstdint>
#include <string>

#include "gguf/types.h"

namespace omni::kernels {

using gguf::TensorType;

bool can_quantize(TensorType type);
bool can_dequantize(TensorType type);

// src: n floats -> dst: row_bytes(type, n) bytes.
void quantize_row(TensorType type, const float* src, void* dst, int64_t n);
// src: row_bytes(type, n) bytes -> dst: n floats.
void dequantize_row(TensorType type, const void* src, float* dst, int64_t n);

}  // namespace omni::kernels
