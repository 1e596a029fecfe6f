// Element-wise and row operations of the transformer on f32 data.
//
// They compute what ggml's CPU backend computes, operation for operation: the same formulas, the
// same exp approximation and the same summation structure (chunks of 16, double accumulators).
// On random-weight test models small rounding differences are amplified layer after layer, so
// agreeing with llama.cpp's outputs to 1e-5 needs this; see docs/design.md, "Numerical parity".
#pragma once

#include <cstdint>

namespace omni::kernels {

// ggml's vectorized expf (range reduction to 2^n * p(b) with a degree-5 polynomial, max error
// about 1.5 ulp): used wherever ggml uses it, so that results match bit for bit.
float exp_approx(float x);

// y = x / sqrt(mean(x^2) + eps) * weight   (weight may be null: no scaling). y may alias x.
void rms_norm(const float* x, const float* weight, float* y, int64_t n, float eps);

// x = softmax(x), in place, over n values (-INFINITY entries are masked out). AVX-512 and AVX2 paths
// are used when the CPU has them; softmax_reference is the scalar path they must match bit for bit.
void softmax(float* x, int64_t n);
void softmax_reference(float* x, int64_t n);

// gate[i] = act(gate[i]) * up[i]. silu_mul has AVX-512 and AVX2 paths; silu_mul_reference is the
// scalar path they must match bit for bit.
void silu_mul(float* gate, const float* up, int64_t n);
void silu_mul_reference(float* gate, const float* up, int64_t n);
void gelu_mul(float* gate, const float* up, int64_t n);

// y += x
void add(float* y, const float* x, int64_t n);

// y *= s
void scale(float* y, float s, int64_t n);

// Rotates `n_rot` leading dimensions of `x` (head_dim values) by the angles whose cos/sin are given
// (n_rot / 2 each): adjacent pairs (x[2i], x[2i+1]) or halves (x[i], x[i + n_rot/2]).
void rope_adjacent(float* x, const float* cos, const float* sin, int64_t n_rot);
void rope_halves(float* x, const float* cos, const float* sin, int64_t n_rot);

// cos/sin of the RoPE angles of position `pos`: theta_i = pos * freq_scale * base^(-2i/n_rot) /
// freq_factors[i], with the angle advanced by repeated multiplication as ggml does.
void rope_angles(float pos, float base, float freq_scale, const float* freq_factors, int64_t n_rot, float* cos,
                 float* sin);

// Dot products of F16-valued vectors (given as f32 holding F16 values), summed the way ggml sums
// them: `dot_f16_batched` as its prompt-batch GEMM does (16 lanes, one FMA chain each, then a
// fixed reduction tree; n a multiple of 16), `dot_f16_single` as its single-row dot does (4 x 16
// lanes over 64-element steps, the rest added exactly in double).
float dot_f16_batched(const float* a, const float* b, int64_t n);
float dot_f16_single(const float* a, const float* b, int64_t n);

// The reduction trees of ggml's horizontal sums of 16 and 8 lanes.
float reduce_16_lanes(const float* lanes);
float reduce_8_lanes(const float* lanes);

}  // namespace omni::kernels
