// Reference activation quantizers. The Q8_0 / Q8_1 formulas are those of ggml's x86 build
// (quantize_row_q8_0 / _q8_1 with AVX: id = 127 / amax, round half to even), because that is what
// llama.cpp runs on the machines we target; Q8_K is quantize_row_q8_K_ref, which every build uses.
#include "kernels/activation_quant.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "kernels/fp16.h"

namespace omni::kernels {
namespace {

constexpr size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

// Round half to even for |v| < 2^22, as ggml's nearest_int (and _mm256_round_ps) do. v is not
// finite only when the block's largest magnitude is so small that 127 / amax overflows; the block
// scale is then 0 and the values do not matter, so they are stored as 0 (ggml's Q8_K reference
// does the same; its x86 Q8_0 stores -128).
inline int nearest_int(float v) {
  if (!std::isfinite(v)) return 0;
  const float shifted = v + 12582912.0f;  // 1.5 * 2^23: the sum's last mantissa bit is the unit
  return static_cast<int>(std::bit_cast<uint32_t>(shifted) & 0x007fffffu) - 0x00400000;
}

inline float round_fp16(float v) { return fp16_to_fp32(fp32_to_fp16(v)); }

// One 32-value block: values, d (an fp16 value) and fp16(d * sum of values) as floats.
struct Q8Block {
  int q[32];
  float d, s;
};

Q8Block quantize_block(const float* x) {
  Q8Block b;
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float scale = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    b.q[j] = nearest_int(x[j] * id);
    sum += b.q[j];
  }
  b.d = round_fp16(scale);
  b.s = round_fp16(scale * static_cast<float>(sum));
  return b;
}

void quantize_q8(const float* x, const ActLayout& layout, uint8_t* dst) {
  auto* q = reinterpret_cast<int8_t*>(dst);
  auto* d = reinterpret_cast<float*>(dst + layout.d_offset);
  auto* s = reinterpret_cast<float*>(dst + layout.x_offset);
  const bool nibble = layout.format == ActFormat::kQ8_0N || layout.format == ActFormat::kQ8_1N;
  const int offset = layout.format == ActFormat::kQ8_0U ? 128 : 0;
  const int64_t nb = layout.cols / 32;
  for (int64_t b = 0; b < nb; ++b) {
    const Q8Block blk = quantize_block(x + 32 * b);
    for (int j = 0; j < 32; ++j)
      q[nibble ? nibble_order_pos(b, j) : 32 * b + j] = static_cast<int8_t>(blk.q[j] + offset);
    d[b] = blk.d;
    if (layout.format == ActFormat::kQ8_1 || layout.format == ActFormat::kQ8_1N) s[b] = blk.s;
  }
  if (layout.format == ActFormat::kQ8_0N) {
    auto* lanes = reinterpret_cast<int32_t*>(dst + layout.x_offset);
    for (int64_t g = 0; g < (nb + 3) / 4; ++g) {
      for (int i = 0; i < 16; ++i) {
        int sum = 0;
        for (int k = 0; k < 4; ++k) sum += q[128 * g + 4 * i + k] + q[128 * g + 64 + 4 * i + k];
        lanes[16 * g + i] = -sum;
      }
    }
  }
}

void quantize_q8_k(const float* x, const ActLayout& layout, uint8_t* dst) {
  auto* q = reinterpret_cast<int8_t*>(dst);
  auto* d = reinterpret_cast<float*>(dst + layout.d_offset);
  auto* bsums = reinterpret_cast<int16_t*>(dst + layout.x_offset);
  const int64_t nb = layout.cols / 256;
  for (int64_t b = 0; b < nb; ++b, x += 256, q += 256, bsums += 16) {
    // The value of largest magnitude, with its sign; the first one wins ties.
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 256; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      d[b] = 0.0f;
      std::memset(q, 0, 256);
      std::memset(bsums, 0, 16 * sizeof(int16_t));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < 256; ++j) {
      const int v = nearest_int(iscale * x[j]);
      q[j] = static_cast<int8_t>(v < 127 ? v : 127);
    }
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += q[16 * g + j];
      bsums[g] = static_cast<int16_t>(sum);
    }
    d[b] = 1.0f / iscale;
  }
}

}  // namespace

ActLayout act_layout(ActFormat format, int64_t cols) {
  ActLayout l;
  l.format = format;
  l.cols = cols;
  const size_t n = static_cast<size_t>(cols);
  switch (format) {
    case ActFormat::kF32:
    case ActFormat::kF16:
    case ActFormat::kBF16:
      l.stride = round_up(4 * n, 64);
      break;
    case ActFormat::kQ8_0:
    case ActFormat::kQ8_0U:
    case ActFormat::kQ8_1:
      l.d_offset = round_up(n, 64);
      l.x_offset = l.d_offset + round_up(n / 32, 16) * sizeof(float);
      l.stride = format == ActFormat::kQ8_1 ? l.x_offset + round_up(n / 32, 16) * sizeof(float) : l.x_offset;
      break;
    case ActFormat::kQ8_0N:
    case ActFormat::kQ8_1N:
      l.d_offset = round_up(n, 128);
      l.x_offset = l.d_offset + round_up(n / 32, 16) * sizeof(float);
      l.stride = l.x_offset + (format == ActFormat::kQ8_1N ? round_up(n / 32, 16) * sizeof(float)
                                                           : round_up(n, 128) / 128 * 16 * sizeof(int32_t));
      break;
    case ActFormat::kQ8_K:
      l.d_offset = round_up(n, 64);
      l.x_offset = l.d_offset + round_up(n / 256, 16) * sizeof(float);
      l.stride = round_up(l.x_offset + round_up(n / 16, 32) * sizeof(int16_t), 64);
      break;
  }
  return l;
}

void quantize_activation_ref(const float* x, const ActLayout& layout, uint8_t* dst) {
  std::memset(dst, 0, layout.stride);
  const int64_t n = layout.cols;
  switch (layout.format) {
    case ActFormat::kF32:
      std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
      break;
    case ActFormat::kF16: {
      auto* out = reinterpret_cast<float*>(dst);
      for (int64_t i = 0; i < n; ++i) out[i] = round_fp16(x[i]);
      break;
    }
    case ActFormat::kBF16: {
      auto* out = reinterpret_cast<float*>(dst);
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_fp32(fp32_to_bf16(x[i]));
      break;
    }
    case ActFormat::kQ8_0:
    case ActFormat::kQ8_0U:
    case ActFormat::kQ8_1:
    case ActFormat::kQ8_0N:
    case ActFormat::kQ8_1N:
      quantize_q8(x, layout, dst);
      break;
    case ActFormat::kQ8_K:
      quantize_q8_k(x, layout, dst);
      break;
  }
}

void dequantize_activation(const uint8_t* src, const ActLayout& layout, float* out) {
  const int64_t n = layout.cols;
  const auto* d = reinterpret_cast<const float*>(src + layout.d_offset);
  switch (layout.format) {
    case ActFormat::kF32:
    case ActFormat::kF16:
    case ActFormat::kBF16:
      std::memcpy(out, src, static_cast<size_t>(n) * sizeof(float));
      break;
    case ActFormat::kQ8_0:
    case ActFormat::kQ8_1:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int8_t>(src[i])) * d[i / 32];
      break;
    case ActFormat::kQ8_0U:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(src[i] - 128) * d[i / 32];
      break;
    case ActFormat::kQ8_K:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int8_t>(src[i])) * d[i / 256];
      break;
    case ActFormat::kQ8_0N:
    case ActFormat::kQ8_1N:
      for (int64_t i = 0; i < n; ++i)
        out[i] = static_cast<float>(static_cast<int8_t>(src[nibble_order_pos(i / 32, static_cast<int>(i % 32))])) *
                 d[i / 32];
      break;
  }
}

}  // namespace omni::kernels
