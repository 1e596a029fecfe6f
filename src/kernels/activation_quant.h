// Activation rows in the form the dot-product kernels consume (internal to the matmul kernels).
//
// ggml quantizes or converts the f32 activations to its weight type's `vec_dot_type` before the
// dot products; we compute the same values (the x86 build's: round-half-even Q8_0/Q8_1 with
// id = 127 / amax, the reference Q8_K, fp16/bf16 rounding), but store them in a layout of our own:
// per token one record of `stride` bytes (a multiple of 64), values first, then per-block arrays.
// Arrays are padded with zeros to whole groups of 16 so SIMD loads past the last block read zeros.
// quantize_activation_ref is the reference; SIMD levels have their own quantizers, which must
// produce the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace omni::kernels {

enum class ActFormat : uint8_t {
  kF32,      // float values as given (F32 weights)
  kF16,      // float values rounded through fp16 (F16 weights)
  kBF16,     // float values rounded through bf16 (BF16 weights)
  kQ8_0,     // int8 per element, float block scale d (an fp16 value) per 32
  kQ8_0U,    // kQ8_0 with 128 added to every value, stored as uint8: the unsigned operand of vpdpbusd
  kQ8_1,     // kQ8_0 plus, per block, s = fp16(d * sum of the block's values), as a float
  kQ8_K,     // int8 per element, float scale per 256, int16 sum per 16 elements
  // Nibble order, for AVX-512 kernels of the 4-bit block formats: each run of 4 blocks (128 values)
  // holds the blocks' first 16 values one after another, then their last 16, matching 4 blocks'
  // nibbles loaded side by side (low nibbles, then high nibbles).
  kQ8_0N,  // kQ8_0 values in nibble order, plus per 128 values 16 int32 lane sums: lane i is minus
           // the sum of values 4i..4i+3 of both halves (the -8 / -16 offset correction's base)
  kQ8_1N,  // kQ8_1 values in nibble order, with s per block
};

struct ActLayout {
  ActFormat format = ActFormat::kF32;
  int64_t cols = 0;
  size_t d_offset = 0;  // float block scales (quantized formats)
  size_t x_offset = 0;  // kQ8_1: float s per block; kQ8_K: int16 sums per 16 elements
  size_t stride = 0;    // bytes per token, a multiple of 64
};

// cols must be a multiple of the format's block size (32, or 256 for kQ8_K).
ActLayout act_layout(ActFormat format, int64_t cols);

// x[0 .. cols) -> one token record at dst (64-byte aligned, layout.stride bytes).
void quantize_activation_ref(const float* x, const ActLayout& layout, uint8_t* dst);

// Position of element j (0..31) of block b in the values of a nibble-order record.
constexpr int64_t nibble_order_pos(int64_t b, int j) {
  return 128 * (b / 4) + (j < 16 ? 0 : 64) + 16 * (b % 4) + (j % 16);
}

// The activation values a record stands for (value * scale, as the dot products use them), in
// element order.
void dequantize_activation(const uint8_t* src, const ActLayout& layout, float* out);

}  // namespace omni::kernels
