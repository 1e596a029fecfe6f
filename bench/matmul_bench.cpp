// matmul throughput per weight type: decode (one token, weights streamed from memory: reported as
// GB/s of weights) and prompt batches (512 tokens, compute-bound: reported as GFLOP/s), at the
// automatic SIMD level and at the scalar level in the same run, with 1 and 2 threads.
//
// Decode cycles through enough copies of the matrix to exceed the last-level cache, so every call
// reads its weights from DRAM, as in a real forward pass. Each figure is the median of single
// calls. The scalar prompt figure is measured on fewer tokens (its per-token cost does not depend
// on the batch) to keep the run short.
//
// Usage: matmul_bench [--types=q4_0,q8_0,...] [--shapes=4096x4096,...] (cols x rows)
//                     [--prompt-tokens=512] [--no-prompt] [--threads=1,2]
//                     [--hot] (decode from one cache-resident copy: kernel speed, not memory)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/types.h"
#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "kernels/quantize.h"

namespace {

using omni::gguf::TensorType;
namespace k = omni::kernels;

constexpr TensorType kAllTypes[] = {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K,
                                    TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q2_K,
                                    TensorType::Q3_K, TensorType::Q5_K, TensorType::F16,  TensorType::BF16,
                                    TensorType::F32};
constexpr size_t kStreamBytes = size_t{256} << 20;  // decode working set: well past a 32 MiB L3
constexpr int64_t kScalarPromptTokens = 8;

struct Options {
  std::vector<TensorType> types;
  std::vector<std::pair<int64_t, int64_t>> shapes;  // cols, rows
  std::vector<int> threads = {1, 2};
  int64_t prompt_tokens = 512;
  bool prompt = true;
  bool hot = false;  // decode from one cache-resident copy: the kernels' compute speed
};

std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = std::min(s.find(',', start), s.size());
    if (comma > start) out.emplace_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto value = [&](std::string_view flag) { return arg.substr(flag.size()); };
    if (arg.starts_with("--types=")) {
      for (const auto& name : split(value("--types="))) {
        const auto type = omni::gguf::tensor_type_from_name(name);
        if (!type || !k::matmul_supports(*type)) {
          std::fprintf(stderr, "unsupported type %s\n", name.c_str());
          return false;
        }
        o.types.push_back(*type);
      }
    } else if (arg.starts_with("--shapes=")) {
      for (const auto& shape : split(value("--shapes="))) {
        long long cols = 0, rows = 0;
        if (std::sscanf(shape.c_str(), "%lldx%lld", &cols, &rows) != 2 || cols <= 0 || rows <= 0) return false;
        o.shapes.emplace_back(cols, rows);
      }
    } else if (arg.starts_with("--threads=")) {
      o.threads.clear();
      for (const auto& t : split(value("--threads="))) o.threads.push_back(std::max(1, std::atoi(t.c_str())));
    } else if (arg.starts_with("--prompt-tokens=")) {
      o.prompt_tokens = std::max(1LL, std::atoll(std::string(value("--prompt-tokens=")).c_str()));
    } else if (arg == "--no-prompt") {
      o.prompt = false;
    } else if (arg == "--hot") {
      o.hot = true;
    } else {
      return false;
    }
  }
  if (o.types.empty()) o.types.assign(std::begin(kAllTypes), std::end(kAllTypes));
  if (o.shapes.empty()) o.shapes = {{4096, 4096}, {2048, 5632}, {5632, 2048}};
  return true;
}

// One matrix of random weights: quantized normal floats, or (K quants, which quantize.h cannot
// produce) random bytes with realistic fp16 scales.
std::vector<uint8_t> make_weights(TensorType type, int64_t cols, int64_t rows) {
  const size_t row_bytes = *omni::gguf::row_bytes(type, static_cast<uint64_t>(cols));
  std::vector<uint8_t> w(row_bytes * static_cast<size_t>(rows));
  std::mt19937 rng(17);
  if (k::can_quantize(type)) {
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      for (auto& v : row) v = normal(rng);
      k::quantize_row(type, row.data(), w.data() + r * row_bytes, cols);
    }
    return w;
  }
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  std::vector<size_t> scale_fields;
  switch (type) {
    case TensorType::Q2_K:
      scale_fields = {80, 82};
      break;
    case TensorType::Q3_K:
      scale_fields = {108};
      break;
    case TensorType::Q4_K:
    case TensorType::Q5_K:
      scale_fields = {0, 2};
      break;
    default:
      scale_fields = {208};
      break;  // Q6_K
  }
  const size_t block_bytes = omni::gguf::tensor_type_traits(type)->type_size;
  const uint16_t h = omni::kernels::fp32_to_fp16(1e-3f);
  for (size_t off = 0; off < w.size(); off += block_bytes)
    for (size_t f : scale_fields) std::memcpy(&w[off + f], &h, 2);
  return w;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Median seconds of one matmul call; call i uses copy i % copies. At least min_calls calls and
// about min_seconds of work.
double median_call(const std::vector<uint8_t>& weights, size_t copy_bytes, int64_t copies, TensorType type,
                   int64_t cols, int64_t rows, const std::vector<float>& x, int64_t n_tokens, std::vector<float>& y,
                   k::ThreadPool& pool, int min_calls, double min_seconds) {
  std::vector<double> times;
  const auto start = std::chrono::steady_clock::now();
  k::matmul(k::WeightView{type, cols, rows, weights.data()}, x.data(), n_tokens, y.data(), pool);  // warm-up
  for (int64_t i = 0; static_cast<int>(times.size()) < min_calls || seconds_since(start) < min_seconds; ++i) {
    const k::WeightView w{type, cols, rows, weights.data() + (i % copies) * copy_bytes};
    const auto t0 = std::chrono::steady_clock::now();
    k::matmul(w, x.data(), n_tokens, y.data(), pool);
    times.push_back(seconds_since(t0));
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!parse(argc, argv, opt)) {
    std::fprintf(stderr,
                 "usage: matmul_bench [--types=q4_0,...] [--shapes=COLSxROWS,...] [--threads=1,2] "
                 "[--prompt-tokens=N] [--no-prompt] [--hot]\n");
    return 2;
  }
  const std::string best = k::simd_level();
  std::printf("SIMD level: %s (compared with scalar in the same run)\n", best.c_str());

  std::vector<std::unique_ptr<k::ThreadPool>> pools;
  for (int t : opt.threads) pools.push_back(std::make_unique<k::ThreadPool>(t));

  for (const auto& [cols, rows] : opt.shapes) {
    std::printf("\n== %lld cols x %lld rows ==\n", static_cast<long long>(cols), static_cast<long long>(rows));
    std::printf("decode (1 token), weights from %s: GB/s of weights [x scalar]\n", opt.hot ? "cache" : "DRAM");
    std::printf("%-6s %8s", "type", "MiB");
    for (int t : opt.threads) std::printf("   %d thr: GB/s  x scalar", t);
    std::printf("\n");
    std::vector<std::string> prompt_lines;
    for (TensorType type : opt.types) {
      const auto one = make_weights(type, cols, rows);
      if (one.empty()) continue;
      const int64_t copies =
          opt.hot ? 1 : std::max<int64_t>(2, static_cast<int64_t>((kStreamBytes + one.size() - 1) / one.size()));
      std::vector<uint8_t> weights(one.size() * static_cast<size_t>(copies));
      for (int64_t c = 0; c < copies; ++c) std::memcpy(weights.data() + c * one.size(), one.data(), one.size());

      std::mt19937 rng(5);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      const int64_t max_tokens = opt.prompt ? opt.prompt_tokens : 1;
      std::vector<float> x(static_cast<size_t>(cols * max_tokens));
      for (auto& v : x) v = normal(rng);
      std::vector<float> y(static_cast<size_t>(rows * max_tokens));

      std::printf("%-6s %8.1f", omni::gguf::tensor_type_name(type).c_str(), one.size() / 1048576.0);
      for (const auto& pool : pools) {
        k::force_simd_level(nullptr);
        const double simd = median_call(weights, one.size(), copies, type, cols, rows, x, 1, y, *pool, 20, 0.5);
        k::force_simd_level("scalar");
        const double scalar = median_call(weights, one.size(), copies, type, cols, rows, x, 1, y, *pool, 5, 0.2);
        k::force_simd_level(nullptr);
        std::printf("   %14.1f %9.1fx", one.size() / simd / 1e9, scalar / simd);
      }
      std::printf("\n");
      std::fflush(stdout);

      if (opt.prompt) {
        char line[256];
        int n = std::snprintf(line, sizeof line, "%-6s", omni::gguf::tensor_type_name(type).c_str());
        const double flop = 2.0 * static_cast<double>(cols) * static_cast<double>(rows);
        for (const auto& pool : pools) {
          const double simd =
              median_call(weights, one.size(), 1, type, cols, rows, x, opt.prompt_tokens, y, *pool, 3, 0.5);
          k::force_simd_level("scalar");
          const double scalar =
              median_call(weights, one.size(), 1, type, cols, rows, x, kScalarPromptTokens, y, *pool, 2, 0.2);
          k::force_simd_level(nullptr);
          const double simd_rate = flop * static_cast<double>(opt.prompt_tokens) / simd;
          const double scalar_rate = flop * static_cast<double>(kScalarPromptTokens) / scalar;
          n += std::snprintf(line + n, sizeof line - n, "   %14.1f %9.1fx", simd_rate / 1e9, simd_rate / scalar_rate);
        }
        prompt_lines.emplace_back(line);
      }
    }
    if (opt.prompt) {
      std::printf("prompt (%lld tokens): GFLOP/s [x scalar]\n%-6s", static_cast<long long>(opt.prompt_tokens), "type");
      for (int t : opt.threads) std::printf("   %d thr: GFLOP/s x scalar", t);
      std::printf("\n");
      for (const auto& l : prompt_lines) std::printf("%s\n", l.c_str());
    }
  }
  return 0;
}
