// The per-ISA dot-product kernels behind matmul (internal to the kernels library).
//
// dot_scalar.cpp, dot_avx2.cpp, dot_avx512.cpp and the three dot_neon*.cpp files each fill a
// KernelTable: per weight type, the activation format it consumes, a quantizer producing that
// format (bytes identical to quantize_activation_ref's, up to the kQ8_0 / kQ8_0U offset) and a tile
// function. The SIMD files are compiled with their -m / -march flags, so their tables may only be
// fetched on CPUs that have those features (matmul.cpp checks). Every tile function computes each output with the same operations
// in the same order whatever the tile's size and position, so results do not depend on how rows
// and tokens are split into tiles or threads.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gguf/types.h"
#include "kernels/activation_quant.h"

namespace omni::kernels {

// The weight types matmul supports, as dense table indices.
enum class WType : int { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, kCount };
constexpr int kWTypeCount = static_cast<int>(WType::kCount);

// The SIMD level of this CPU (or the lower one forced by force_simd_level or OMNI_KERNELS),
// detected once for every kernel file. x86-64: kAvx2 means AVX2 + FMA + F16C, kAvx512 adds AVX-512
// F, BW, VL, DQ and VNNI. AArch64: kNeon is the base Advanced SIMD, kNeonDotprod adds the dot
// product instructions, kNeonI8mm the int8 matrix multiplies as well. Each architecture's levels
// are ordered; the other architecture's never occur.
enum class SimdLevel : int { kScalar, kAvx2, kAvx512, kNeon, kNeonDotprod, kNeonI8mm };
SimdLevel active_simd_level();

// Index of `type`, or -1 when matmul does not support it.
int wtype_index(gguf::TensorType type);

// x[0 .. cols) -> one activation record at dst (64-byte aligned).
using QuantizeFn = void (*)(const float* x, const ActLayout& layout, uint8_t* dst);

// y[t * ldy + r] = dot(weight row r, activation t) for r < nr, t < nt. Row r starts at
// w + r * w_stride; activation t at act + t * layout.stride.
using TileFn = void (*)(const uint8_t* w, size_t w_stride, int64_t nr, const uint8_t* act, const ActLayout& layout,
                        int64_t nt, float* y, int64_t ldy);

struct TypeKernel {
  ActFormat act;
  QuantizeFn quantize;
  TileFn tile;
};

struct KernelTable {
  TypeKernel types[kWTypeCount];  // F16 / F32 / BF16: prompt batches (tinyBLAS); Q4_0: rows % 8 != 0
  TypeKernel f16_single;          // F16 with one token, or cols % 16 != 0 (ggml_vec_dot_f16)
  TypeKernel f32_single;          // F32 with one token, or cols % 16 != 0 (ggml_vec_dot_f32)
  TypeKernel bf16_single;         // BF16 likewise (ggml_vec_dot_bf16, AVX512F without AVX512-BF16)
  TypeKernel q4_0_chain;          // Q4_0 with rows % 8 == 0 (ggml's repacked Q4_0 kernels)
};

const KernelTable& scalar_kernels();
const KernelTable& avx2_kernels();    // needs AVX2, FMA, F16C
const KernelTable& avx512_kernels();  // needs AVX-512 F, BW, VL, DQ, VNNI (and uses BF16 when present)
const KernelTable& neon_kernels();          // AArch64
const KernelTable& neon_dotprod_kernels();  // needs the dot product extension (ARMv8.2-A +dotprod)
const KernelTable& neon_i8mm_kernels();     // needs dotprod and i8mm (ARMv8.6-A +i8mm)


}  // namespace omni::kernels
