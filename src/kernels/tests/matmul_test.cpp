// Tests of matmul and its kernels. References are computed here independently: activations are
// quantized with this file's own transcription of ggml's formulas (std::nearbyint, not the
// kernels' rounding trick), weights are dequantized with quantize.h's reference dequantize_row,
// and dots are summed in double.
#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "base/testing/allocation_counter.h"
#include "gguf/reader.h"
#include "kernels/activation_quant.h"
#include "kernels/dot_kernels.h"
#include "kernels/fp16.h"
#include "kernels/quantize.h"

using omni::test_support::g_allocations;
using omni::test_support::g_counting;

namespace omni::gguf {
// Test parameters print as their names.
void PrintTo(TensorType type, std::ostream* os) { *os << tensor_type_name(type); }
}  // namespace omni::gguf

namespace omni::kernels {
namespace {

using gguf::TensorType;

constexpr TensorType kTypes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q8_0,
                                 TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                                 TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K,
                                 TensorType::Q6_K};
// Every level of every architecture: a test skips those this CPU lacks.
constexpr const char* kLevels[] = {"scalar", "avx2", "avx512", "neon", "dotprod", "i8mm"};

class ForcedLevel {
 public:
  explicit ForcedLevel(const char* level) { force_simd_level(level); }
  ~ForcedLevel() { force_simd_level(nullptr); }
  ForcedLevel(const ForcedLevel&) = delete;
  ForcedLevel& operator=(const ForcedLevel&) = delete;
};

bool level_available(const char* level) {
  ForcedLevel forced(level);
  return std::strcmp(simd_level(), level) == 0;
}

int64_t block_size(TensorType type) { return gguf::tensor_type_traits(type)->block_size; }
size_t row_bytes(TensorType type, int64_t cols) { return *gguf::row_bytes(type, static_cast<uint64_t>(cols)); }

// Activation-like values: mostly N(0, 1), a few outliers, some exact zeros.
std::vector<float> random_activations(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 99);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) {
    const int p = pick(rng);
    v = p == 0 ? 0.0f : p == 1 ? 20.0f * normal(rng) : normal(rng);
  }
  return x;
}

// Offsets of the fp16 scale fields of the K super-blocks (d, then dmin where there is one).
std::vector<size_t> k_scale_offsets(TensorType type) {
  switch (type) {
    case TensorType::Q2_K:
      return {80, 82};
    case TensorType::Q3_K:
      return {108};
    case TensorType::Q4_K:
      return {0, 2};
    case TensorType::Q5_K:
      return {0, 2};
    case TensorType::Q6_K:
      return {208};
    default:
      return {};
  }
}

// rows x cols weights of `type`: quantized random floats where quantize.h can quantize the type,
// otherwise (K quants) random bytes with finite positive fp16 scales.
std::vector<uint8_t> random_weights(TensorType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  const size_t rb = row_bytes(type, cols);
  std::vector<uint8_t> w(rb * static_cast<size_t>(rows));
  if (can_quantize(type)) {
    std::normal_distribution<float> normal(0.0f, 0.05f);
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      const float bias = std::uniform_real_distribution<float>(-0.02f, 0.02f)(rng);  // exercises the _1 mins
      for (auto& v : row) v = normal(rng) + bias;
      quantize_row(type, row.data(), w.data() + r * rb, cols);
    }
    return w;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> scale(1e-4f, 2e-3f);
  const size_t bytes = gguf::tensor_type_traits(type)->type_size;
  for (size_t off = 0; off < w.size(); off += bytes) {
    for (size_t field : k_scale_offsets(type)) {
      const uint16_t h = fp32_to_fp16(scale(rng));
      std::memcpy(&w[off + field], &h, 2);
    }
  }
  return w;
}

// ---------------------------------------------------------------------------------------------
// Independent activation quantization: ggml's formulas (x86 build) written out again.

struct IndependentAct {
  int block = 0;               // elements per scale
  std::vector<int> q;          // quantized values (empty for the float formats)
  std::vector<float> scale;    // per block
  std::vector<float> s;        // Q8_1: fp16(d * sum q) per block
  std::vector<int> bsums;      // Q8_K: sums per 16
  std::vector<double> values;  // what the dot products see
};

float fp16_round(float v) { return fp16_to_fp32(fp32_to_fp16(v)); }

// Round half to even; a non-finite product (a block whose 127 / amax overflows, so its scale is
// zero anyway) gives 0.
int round_even(float v) { return std::isfinite(v) ? static_cast<int>(std::nearbyint(v)) : 0; }

IndependentAct independent_activation(TensorType type, const float* x, int64_t n) {
  IndependentAct a;
  a.values.resize(static_cast<size_t>(n));
  switch (type) {
    case TensorType::F32:
      for (int64_t i = 0; i < n; ++i) a.values[i] = x[i];
      return a;
    case TensorType::F16:
      for (int64_t i = 0; i < n; ++i) a.values[i] = fp16_round(x[i]);
      return a;
    case TensorType::BF16:
      for (int64_t i = 0; i < n; ++i) a.values[i] = bf16_to_fp32(fp32_to_bf16(x[i]));
      return a;
    case TensorType::Q2_K:
    case TensorType::Q3_K:
    case TensorType::Q4_K:
    case TensorType::Q5_K:
    case TensorType::Q6_K:
      a.block = 256;
      a.q.resize(static_cast<size_t>(n));
      for (int64_t b = 0; b < n / 256; ++b) {
        const float* xb = x + 256 * b;
        int first = -1;
        float amax = 0.0f;
        for (int j = 0; j < 256; ++j) {
          if (std::fabs(xb[j]) > amax) {
            amax = std::fabs(xb[j]);
            first = j;
          }
        }
        if (first < 0) {
          a.scale.push_back(0.0f);
          for (int g = 0; g < 16; ++g) a.bsums.push_back(0);
          continue;
        }
        const float iscale = -127.0f / xb[first];
        for (int j = 0; j < 256; ++j) a.q[256 * b + j] = std::min(127, round_even(iscale * xb[j]));
        const float d = 1.0f / iscale;
        a.scale.push_back(d);
        for (int g = 0; g < 16; ++g) {
          int sum = 0;
          for (int j = 0; j < 16; ++j) sum += a.q[256 * b + 16 * g + j];
          a.bsums.push_back(sum);
        }
        for (int j = 0; j < 256; ++j) a.values[256 * b + j] = static_cast<double>(a.q[256 * b + j]) * d;
      }
      return a;
    default:  // Q8_0 for Q4_0 / Q5_0 / Q8_0, Q8_1 for Q4_1 / Q5_1
      a.block = 32;
      a.q.resize(static_cast<size_t>(n));
      for (int64_t b = 0; b < n / 32; ++b) {
        const float* xb = x + 32 * b;
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
          a.q[32 * b + j] = round_even(xb[j] * id);
          sum += a.q[32 * b + j];
        }
        a.scale.push_back(fp16_round(d));
        a.s.push_back(fp16_round(d * static_cast<float>(sum)));
        for (int j = 0; j < 32; ++j) a.values[32 * b + j] = static_cast<double>(a.q[32 * b + j]) * a.scale.back();
      }
      return a;
  }
}

// The dot ggml computes, in double: sum of dequantized weight times activation value; for Q4_1 /
// Q5_1, ggml takes the activation block sum from the fp16 s instead, so the min term uses it.
struct RefDot {
  double value = 0.0;
  double magnitude = 0.0;  // sum of |terms|, the scale of rounding errors
};

RefDot reference_dot(TensorType type, const uint8_t* row, int64_t cols, const IndependentAct& a) {
  std::vector<float> w(static_cast<size_t>(cols));
  dequantize_row(type, row, w.data(), cols);
  RefDot r;
  for (int64_t i = 0; i < cols; ++i) {
    r.value += static_cast<double>(w[i]) * a.values[i];
    r.magnitude += std::fabs(static_cast<double>(w[i]) * a.values[i]);
  }
  if (type == TensorType::Q4_1 || type == TensorType::Q5_1) {
    const size_t bytes = gguf::tensor_type_traits(type)->type_size;
    for (int64_t b = 0; b < cols / 32; ++b) {
      uint16_t mh;
      std::memcpy(&mh, row + b * bytes + 2, 2);
      double block_sum = 0.0;
      for (int j = 0; j < 32; ++j) block_sum += a.values[32 * b + j];
      const double m = fp16_to_fp32(mh);
      r.value += m * (a.s[b] - block_sum);
      r.magnitude += std::fabs(m * a.s[b]);
    }
  }
  return r;
}

// matmul with a pool of n_threads at `level`.
std::vector<float> run_matmul(TensorType type, const std::vector<uint8_t>& w, int64_t rows, int64_t cols,
                              const std::vector<float>& x, int64_t n_tokens, const char* level, int n_threads = 1,
                              int64_t n_single = 0) {
  ForcedLevel forced(level);
  ThreadPool pool(n_threads);
  std::vector<float> y(static_cast<size_t>(rows * n_tokens), std::nanf(""));
  matmul(WeightView{type, cols, rows, w.data()}, x.data(), n_tokens, y.data(), pool, n_single);
  return y;
}

std::vector<int64_t> test_cols(TensorType type) {
  if (block_size(type) == 256) return {256, 512, 4096};
  if (block_size(type) == 32) return {96, 416, 512, 4096};  // odd block count; a partial group of 8
  return {37, 256, 1000, 4096};                             // tails of every length
}

std::string type_name(const testing::TestParamInfo<TensorType>& info) { return gguf::tensor_type_name(info.param); }

class MatmulTypes : public testing::TestWithParam<TensorType> {};

// (a) Every SIMD level this CPU has gives the scalar reference's bits: both follow ggml's lane
// structure (docs/design.md, "Numerical parity with llama.cpp"). Rows 64 take Q4_0's repacked
// chain (in 16-row groups, 40 leaving a partial one), rows 1 and 7 its 8-lane rule; one token takes the single-row F16/F32/BF16 kernels, 3 and
// 17 the batched ones (where cols % 16 == 0).
TEST_P(MatmulTypes, SimdLevelsMatchScalar) {
  const TensorType type = GetParam();
  std::mt19937 rng(1234 + static_cast<int>(type));
  int checked = 0;
  for (int64_t cols : test_cols(type)) {
    for (int64_t rows : {1, 7, 40, 64}) {
      for (int64_t n_tokens : {1, 3, 17}) {
        const auto w = random_weights(type, rows, cols, rng);
        const auto x = random_activations(cols * n_tokens, rng);
        const auto expected = run_matmul(type, w, rows, cols, x, n_tokens, "scalar");
        for (const char* level : kLevels) {
          if (std::strcmp(level, "scalar") == 0 || !level_available(level)) continue;
          const auto got = run_matmul(type, w, rows, cols, x, n_tokens, level);
          for (int64_t t = 0; t < n_tokens; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              const size_t i = static_cast<size_t>(t * rows + r);
              ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(expected[i]))
                  << level << " cols " << cols << " rows " << rows << " tokens " << n_tokens << " at t " << t
                  << " r " << r << ": " << got[i] << " vs " << expected[i];
              ++checked;
            }
          }
        }
      }
    }
  }
  if (checked == 0) GTEST_SKIP() << "no SIMD level on this CPU";
}

// (b) The scalar reference against the independent double-precision computation.
TEST_P(MatmulTypes, ScalarMatchesIndependentReference) {
  const TensorType type = GetParam();
  std::mt19937 rng(99 + static_cast<int>(type));
  for (int64_t cols : test_cols(type)) {
    for (int64_t rows : {7, 8}) {
      for (int64_t n_tokens : {1, 3}) {
        const auto w = random_weights(type, rows, cols, rng);
        const auto x = random_activations(cols * n_tokens, rng);
        const auto got = run_matmul(type, w, rows, cols, x, n_tokens, "scalar");
        for (int64_t t = 0; t < n_tokens; ++t) {
          const IndependentAct a = independent_activation(type, x.data() + t * cols, cols);
          for (int64_t r = 0; r < rows; ++r) {
            const RefDot ref = reference_dot(type, w.data() + r * row_bytes(type, cols), cols, a);
            ASSERT_NEAR(got[t * rows + r], ref.value, 1e-5 * ref.magnitude + 1e-30)
                << "cols " << cols << " rows " << rows << " tokens " << n_tokens << " t " << t << " r " << r;
          }
        }
      }
    }
  }
}

// (c) The thread count changes the split, never the results.
TEST_P(MatmulTypes, ThreadCountsGiveIdenticalResults) {
  const TensorType type = GetParam();
  std::mt19937 rng(7 + static_cast<int>(type));
  // 70 tokens of 4096 columns span two token blocks; 64 rows give different row chunks per count.
  const int64_t cols = 4096, rows = 64;
  for (int64_t n_tokens : {1, 70}) {
    const auto w = random_weights(type, rows, cols, rng);
    const auto x = random_activations(cols * n_tokens, rng);
    for (const char* level : kLevels) {
      if (!level_available(level)) continue;
      const auto one = run_matmul(type, w, rows, cols, x, n_tokens, level, 1);
      for (int threads : {2, 3}) {
        const auto many = run_matmul(type, w, rows, cols, x, n_tokens, level, threads);
        ASSERT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * sizeof(float)))
            << level << ", " << threads << " threads, " << n_tokens << " tokens";
      }
    }
  }
}

// A token's outputs do not depend on the batch it comes in (tiles of any size compute alike),
// except for the float formats: ggml sums their single rows (vec_dot) and prompt batches
// (tinyBLAS) in different orders, and so do we.
TEST_P(MatmulTypes, BatchingGivesIdenticalResults) {
  const TensorType type = GetParam();
  if (type == TensorType::F16 || type == TensorType::F32 || type == TensorType::BF16)
    GTEST_SKIP() << "single rows and batches follow different ggml kernels";
  std::mt19937 rng(11 + static_cast<int>(type));
  const int64_t cols = 512, rows = 9, n_tokens = 11;
  const auto w = random_weights(type, rows, cols, rng);
  const auto x = random_activations(cols * n_tokens, rng);
  for (const char* level : kLevels) {
    if (!level_available(level)) continue;
    const auto batch = run_matmul(type, w, rows, cols, x, n_tokens, level, 2);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const std::vector<float> xt(x.begin() + t * cols, x.begin() + (t + 1) * cols);
      const auto single = run_matmul(type, w, rows, cols, xt, 1, level, 2);
      ASSERT_EQ(0, std::memcmp(single.data(), batch.data() + t * rows, rows * sizeof(float)))
          << level << " token " << t;
    }
  }
}

// n_single: the trailing rows get a lone row's bits, the others a batch's, for every type (the float
// types' single-row kernel differs from their batch kernel; the test would fail if n_single were
// ignored for them).
TEST_P(MatmulTypes, TrailingSingleRowsGetALoneRowsBits) {
  const TensorType type = GetParam();
  std::mt19937 rng(23 + static_cast<int>(type));
  const int64_t cols = 512, rows = 9, n_batch = 5, n_single = 3, n_tokens = n_batch + n_single;
  const auto w = random_weights(type, rows, cols, rng);
  const auto x = random_activations(cols * n_tokens, rng);
  for (const char* level : kLevels) {
    if (!level_available(level)) continue;
    const auto mixed = run_matmul(type, w, rows, cols, x, n_tokens, level, 2, n_single);
    const std::vector<float> xb(x.begin(), x.begin() + n_batch * cols);
    const auto batch = run_matmul(type, w, rows, cols, xb, n_batch, level, 2);
    ASSERT_EQ(0, std::memcmp(batch.data(), mixed.data(), batch.size() * sizeof(float))) << level;
    for (int64_t t = n_batch; t < n_tokens; ++t) {
      const std::vector<float> xt(x.begin() + t * cols, x.begin() + (t + 1) * cols);
      const auto single = run_matmul(type, w, rows, cols, xt, 1, level, 2);
      ASSERT_EQ(0, std::memcmp(single.data(), mixed.data() + t * rows, rows * sizeof(float))) << level << " row " << t;
    }
    // All rows single: each is a lone row's.
    const auto all_single = run_matmul(type, w, rows, cols, x, n_tokens, level, 2, n_tokens);
    const std::vector<float> x0(x.begin(), x.begin() + cols);
    const auto single0 = run_matmul(type, w, rows, cols, x0, 1, level, 2);
    ASSERT_EQ(0, std::memcmp(single0.data(), all_single.data(), rows * sizeof(float))) << level;
  }
}

// (d) dequantize_row_of is dequantize_row of the right row.
TEST_P(MatmulTypes, DequantizeRowOfMatchesDequantizeRow) {
  const TensorType type = GetParam();
  std::mt19937 rng(5 + static_cast<int>(type));
  const int64_t cols = 512, rows = 5;
  const auto w = random_weights(type, rows, cols, rng);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> got(cols), expected(cols);
    dequantize_row_of(WeightView{type, cols, rows, w.data()}, r, got.data());
    dequantize_row(type, w.data() + r * row_bytes(type, cols), expected.data(), cols);
    ASSERT_EQ(0, std::memcmp(got.data(), expected.data(), cols * sizeof(float))) << "row " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulTypes, testing::ValuesIn(kTypes), type_name);

// ---------------------------------------------------------------------------------------------
// Activation quantization.

const KernelTable& table_for(const char* level) {
#if defined(__x86_64__)
  if (std::strcmp(level, "avx512") == 0) return avx512_kernels();
  if (std::strcmp(level, "avx2") == 0) return avx2_kernels();
#elif defined(__aarch64__)
  if (std::strcmp(level, "i8mm") == 0) return neon_i8mm_kernels();
  if (std::strcmp(level, "dotprod") == 0) return neon_dotprod_kernels();
  if (std::strcmp(level, "neon") == 0) return neon_kernels();
#endif
  return scalar_kernels();
}

// Rows that stress the quantizers: ties of magnitude with opposite signs, all-zero blocks, values
// that scale to exact halves, subnormals, huge and tiny blocks.
std::vector<std::vector<float>> tricky_rows(int64_t n, std::mt19937& rng) {
  std::vector<std::vector<float>> rows;
  rows.push_back(random_activations(n, rng));
  std::vector<float> v(static_cast<size_t>(n), 0.0f);
  rows.push_back(v);  // all zero
  for (int64_t i = 0; i < n; ++i)
    v[i] = static_cast<float>((i * 37) % 255 - 127);  // integers: exact halves after scaling
  rows.push_back(v);
  for (int64_t i = 0; i < n; ++i) v[i] = (i % 2 ? -1.0f : 1.0f) * static_cast<float>(1 + i % 7);  // +-max ties
  rows.push_back(v);
  for (int64_t i = 0; i < n; ++i) v[i] = (i % 3 - 1) * 1e-40f;  // subnormal
  rows.push_back(v);
  auto big = random_activations(n, rng);
  for (auto& f : big) f *= 3e4f;
  rows.push_back(big);
  return rows;
}

TEST(MatmulActivations, EveryLevelWritesTheReferenceBytes) {
  std::mt19937 rng(42);
  for (const char* level : kLevels) {
    if (!level_available(level)) continue;
    const KernelTable& table = table_for(level);
    for (int ti = 0; ti < kWTypeCount; ++ti) {
      const TypeKernel& k = table.types[ti];
      for (int64_t cols : {int64_t{256}, int64_t{768}}) {
        const ActLayout layout = act_layout(k.act, cols);
        for (const auto& x : tricky_rows(cols, rng)) {
          std::vector<uint8_t> got(layout.stride + 64), expected(layout.stride + 64);
          uint8_t* g = got.data() + (64 - reinterpret_cast<uintptr_t>(got.data()) % 64) % 64;
          uint8_t* e = expected.data() + (64 - reinterpret_cast<uintptr_t>(expected.data()) % 64) % 64;
          k.quantize(x.data(), layout, g);
          quantize_activation_ref(x.data(), layout, e);
          ASSERT_EQ(0, std::memcmp(g, e, layout.stride)) << level << " type index " << ti << " cols " << cols;
        }
      }
    }
  }
}

// Every level's activation records hold the values of ggml's formulas, in whatever order and with
// whatever extra arrays the level's format has.
TEST(MatmulActivations, RecordsFollowGgmlFormulas) {
  std::mt19937 rng(43);
  const int64_t cols = 512 + 256;  // 24 blocks: 6 runs of 4 in nibble order
  for (const char* level : kLevels) {
    if (!level_available(level)) continue;
    for (TensorType type : kTypes) {
      const TypeKernel& k = table_for(level).types[wtype_index(type)];
      const ActLayout layout = act_layout(k.act, cols);
      for (const auto& x : tricky_rows(cols, rng)) {
        std::vector<uint8_t> rec(layout.stride + 64);
        uint8_t* p = rec.data() + (64 - reinterpret_cast<uintptr_t>(rec.data()) % 64) % 64;
        k.quantize(x.data(), layout, p);
        std::vector<float> values(cols);
        dequantize_activation(p, layout, values.data());
        const IndependentAct a = independent_activation(type, x.data(), cols);
        const std::string where = std::string(level) + " " + gguf::tensor_type_name(type);
        for (int64_t i = 0; i < cols; ++i) {
          // The kernels see value * scale as a float product; compare with the same product here.
          const float expected =
              a.q.empty() ? static_cast<float>(a.values[i]) : static_cast<float>(a.q[i]) * a.scale[i / a.block];
          ASSERT_EQ(values[i], expected) << where << " element " << i;
        }
        if (layout.format == ActFormat::kQ8_1 || layout.format == ActFormat::kQ8_1N) {
          const auto* s = reinterpret_cast<const float*>(p + layout.x_offset);
          for (size_t b = 0; b < a.s.size(); ++b) ASSERT_EQ(s[b], a.s[b]) << where << " s of block " << b;
        }
        if (layout.format == ActFormat::kQ8_K) {
          const auto* bsums = reinterpret_cast<const int16_t*>(p + layout.x_offset);
          for (size_t g = 0; g < a.bsums.size(); ++g) ASSERT_EQ(bsums[g], a.bsums[g]) << where << " bsum " << g;
        }
        if (layout.format == ActFormat::kQ8_0N) {
          // Lane i of run g: minus values 4i..4i+3 of the run's first halves plus those of its
          // second halves, i.e. of block 4g + i / 4, elements 4 (i % 4) + {0..3} and 16 + the same.
          const auto* lanes = reinterpret_cast<const int32_t*>(p + layout.x_offset);
          for (int64_t g = 0; g < cols / 128; ++g) {
            for (int i = 0; i < 16; ++i) {
              const int64_t first = 32 * (4 * g + i / 4) + 4 * (i % 4);
              int sum = 0;
              for (int j = 0; j < 4; ++j) sum += a.q[first + j] + a.q[first + 16 + j];
              ASSERT_EQ(lanes[16 * g + i], -sum) << where << " lane " << i << " of run " << g;
            }
          }
        }
      }
    }
  }
}

// After a first call of the same shape, matmul allocates nothing (activation buffer, work split and
// parallel regions included).
TEST(MatmulAllocations, NoneOnceWarm) {
  if (!omni::test_support::kCountsAllocations) GTEST_SKIP() << "under a sanitizer, whose runtime owns operator new, allocations are not counted";
  std::mt19937 rng(8);
  for (TensorType type : {TensorType::Q4_0, TensorType::Q4_K, TensorType::F16}) {
    const int64_t cols = 512, rows = 33;
    const auto w = random_weights(type, rows, cols, rng);
    for (int64_t n_tokens : {1, 17}) {
      const auto x = random_activations(cols * n_tokens, rng);
      std::vector<float> y(static_cast<size_t>(rows * n_tokens));
      for (const char* level : kLevels) {
        if (!level_available(level)) continue;
        ForcedLevel forced(level);
        ThreadPool pool(2);
        const WeightView view{type, cols, rows, w.data()};
        // Kernels keep per-thread scratch that grows on first use, and the pool lets either thread
        // run any tile: warm up until both threads have run every kind of tile.
        for (int warm = 0; warm < 32; ++warm) matmul(view, x.data(), n_tokens, y.data(), pool);
        g_allocations = 0;
        g_counting = true;
        matmul(view, x.data(), n_tokens, y.data(), pool);
        g_counting = false;
        EXPECT_EQ(g_allocations.load(), 0u) << level << " " << gguf::tensor_type_name(type) << " " << n_tokens;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Level selection.

TEST(MatmulSimdLevel, ForcingAndRestoring) {
  const std::string automatic = simd_level();
  {
    ForcedLevel forced("scalar");
    EXPECT_STREQ(simd_level(), "scalar");
  }
  EXPECT_EQ(automatic, simd_level());
  {
    // Asking for more than the CPU has gives the best it has; so does another architecture's level.
    ForcedLevel forced("avx512");
    EXPECT_EQ(automatic, simd_level());
  }
  {
    ForcedLevel forced("i8mm");
    EXPECT_EQ(automatic, simd_level());
  }
  for (TensorType type : kTypes) EXPECT_TRUE(matmul_supports(type));
  EXPECT_FALSE(matmul_supports(TensorType::IQ2_XXS));
  EXPECT_FALSE(matmul_supports(TensorType::Q8_K));
}

// OMNI_KERNELS caps the level at start: CI runs this test binary once per level (under qemu for
// AArch64) and this proves each run used the level it names, every one the CPU has.
TEST(MatmulSimdLevel, EnvironmentCapsTheLevel) {
  const char* env = std::getenv("OMNI_KERNELS");
  if (env == nullptr || *env == '\0') GTEST_SKIP() << "OMNI_KERNELS is not set";
  EXPECT_STREQ(simd_level(), env);
}

// ---------------------------------------------------------------------------------------------
// Real weights from the shared synthetic models.

struct ModelTensor {
  const char* file;
  const char* tensor;
  TensorType type;
};
void PrintTo(const ModelTensor& m, std::ostream* os) { *os << m.file << ":" << m.tensor; }

class MatmulSharedModels : public testing::TestWithParam<ModelTensor> {};

TEST_P(MatmulSharedModels, MatchesReference) {
  const ModelTensor& mt = GetParam();
  auto file = gguf::File::open(std::string(OMNI_SHARED_DIR) + "/models/" + mt.file);
  ASSERT_TRUE(file.ok()) << file.error().message;
  const gguf::TensorInfo* info = file->find_tensor(mt.tensor);
  ASSERT_NE(info, nullptr);
  ASSERT_EQ(info->type, mt.type);
  const int64_t cols = static_cast<int64_t>(info->shape[0]), rows = static_cast<int64_t>(info->rows());
  const WeightView w{info->type, cols, rows, file->tensor_data(*info).data()};
  std::mt19937 rng(3);
  const int64_t n_tokens = 5;
  const auto x = random_activations(cols * n_tokens, rng);
  std::vector<RefDot> refs;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const IndependentAct a = independent_activation(info->type, x.data() + t * cols, cols);
    for (int64_t r = 0; r < rows; ++r)
      refs.push_back(
          reference_dot(info->type, static_cast<const uint8_t*>(w.data) + r * row_bytes(info->type, cols), cols, a));
  }
  ThreadPool pool(2);
  for (const char* level : kLevels) {
    if (!level_available(level)) continue;
    ForcedLevel forced(level);
    std::vector<float> y(static_cast<size_t>(rows * n_tokens));
    matmul(w, x.data(), n_tokens, y.data(), pool);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        const RefDot& ref = refs[static_cast<size_t>(t * rows + r)];
        ASSERT_NEAR(y[t * rows + r], ref.value, 1e-5 * ref.magnitude) << level << " t " << t << " r " << r;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Synth, MatmulSharedModels,
    testing::Values(ModelTensor{"synth-llama-q4_k_m.gguf", "blk.0.ffn_down.weight", TensorType::Q4_K},
                    ModelTensor{"synth-llama-q6_k.gguf", "blk.0.ffn_down.weight", TensorType::Q6_K},
                    ModelTensor{"synth-llama-q4_k_m.gguf", "output.weight", TensorType::Q6_K},
                    ModelTensor{"synth-llama-q4_0.gguf", "blk.0.ffn_down.weight", TensorType::Q4_0},
                    ModelTensor{"synth-llama-q8_0.gguf", "blk.0.ffn_down.weight", TensorType::Q8_0},
                    ModelTensor{"synth-llama-f16.gguf", "blk.0.ffn_down.weight", TensorType::F16}),
    [](const testing::TestParamInfo<ModelTensor>& info) {
      std::string name = std::string(info.param.file) + "_" + info.param.tensor;
      for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

}  // namespace
}  // namespace omni::kernels
