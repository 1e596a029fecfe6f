// machine_limits: the two ceilings of CPU inference on this machine, measured.
//   - memory read bandwidth (GB/s) with 1..T threads: decode reads every weight once per token, so
//     tokens/s <= bandwidth / bytes of weights;
//   - peak int8 multiply-accumulate rate and f32 FMA rate of the kernel level omni would use here:
//     AVX-512 (vpdpbusd, 512-bit FMA) where the CPU has AVX-512 VNNI, else AVX2 (vpmaddubsw, which
//     AVX2-only CPUs' quantized kernels use, and 256-bit FMA); OMNI_KERNELS=avx2 caps it at AVX2 as
//     it caps omni, so an AVX2-only CPU's limits can be compared on an AVX-512 one. Prefill
//     tokens/s <= peak MAC/s / MACs per token.
// With --model FILE it also prints those two limits for the model (weights bytes and MACs per
// token from the GGUF's matrices). Median of --reps runs.
//
//   machine_limits [--threads T] [--reps N] [--model FILE.gguf]
// GCC 12's AVX-512 headers trip its own uninitialized-value warnings (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gguf/reader.h"

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs fn(thread) on `threads` threads at once; returns the wall time in seconds.
template <class Fn>
double timed_parallel(int threads, Fn fn) {
  std::vector<std::thread> pool;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      fn(t);
    });
  while (ready.load() != threads) std::this_thread::yield();
  const auto t0 = Clock::now();
  go.store(true);
  for (auto& th : pool) th.join();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::atomic<uint64_t> g_sink{0};

// Sums 64-byte lines [begin, end) of a buffer far larger than the caches.
__attribute__((target("avx2"))) void read_range(const uint8_t* buf, size_t begin, size_t end) {
  __m256i acc = _mm256_setzero_si256();
  for (size_t i = begin; i < end; i += 64) {
    acc = _mm256_add_epi64(acc, _mm256_load_si256(reinterpret_cast<const __m256i*>(buf + i)));
    acc = _mm256_add_epi64(acc, _mm256_load_si256(reinterpret_cast<const __m256i*>(buf + i + 32)));
  }
  g_sink.fetch_add(static_cast<uint64_t>(_mm256_extract_epi64(acc, 0)));
}

// 8 independent vpdpbusd chains of 64 int8 MACs each per iteration.
__attribute__((target("avx512f,avx512vnni"))) void int8_loop(int64_t iters) {
  __m512i acc[8];
  for (auto& a : acc) a = _mm512_setzero_si512();
  const __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(5);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) acc[k] = _mm512_dpbusd_epi32(acc[k], x, y);
    __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]));
  }
  __m512i sum = acc[0];
  for (int k = 1; k < 8; ++k) sum = _mm512_add_epi32(sum, acc[k]);
  g_sink.fetch_add(static_cast<uint64_t>(_mm512_reduce_add_epi32(sum)));
}

// 8 independent f32 FMA chains of 16 lanes each per iteration.
__attribute__((target("avx512f"))) void f32_loop(int64_t iters) {
  __m512 acc[8];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const __m512 x = _mm512_set1_ps(1.0001f), y = _mm512_set1_ps(0.9999f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) acc[k] = _mm512_fmadd_ps(acc[k], x, y);
    __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]));
  }
  __m512 sum = acc[0];
  for (int k = 1; k < 8; ++k) sum = _mm512_add_ps(sum, acc[k]);
  g_sink.fetch_add(static_cast<uint64_t>(_mm512_reduce_add_ps(sum)));
}

// 8 independent chains of vpmaddubsw (32 int8 MACs) plus the int16 add that keeps a sum, as the
// AVX2 kernels pair them.
__attribute__((target("avx2"))) void int8_loop_avx2(int64_t iters) {
  __m256i acc[8];
  for (auto& a : acc) a = _mm256_setzero_si256();
  const __m256i x = _mm256_set1_epi8(3), y = _mm256_set1_epi8(5);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) acc[k] = _mm256_add_epi16(acc[k], _mm256_maddubs_epi16(x, y));
    __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]));
  }
  __m256i sum = acc[0];
  for (int k = 1; k < 8; ++k) sum = _mm256_add_epi16(sum, acc[k]);
  g_sink.fetch_add(static_cast<uint64_t>(_mm256_extract_epi16(sum, 0)));
}

// 8 independent f32 FMA chains of 8 lanes each per iteration.
__attribute__((target("avx2,fma"))) void f32_loop_avx2(int64_t iters) {
  __m256 acc[8];
  for (auto& a : acc) a = _mm256_setzero_ps();
  const __m256 x = _mm256_set1_ps(1.0001f), y = _mm256_set1_ps(0.9999f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) acc[k] = _mm256_fmadd_ps(acc[k], x, y);
    __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]));
  }
  __m256 sum = acc[0];
  for (int k = 1; k < 8; ++k) sum = _mm256_add_ps(sum, acc[k]);
  g_sink.fetch_add(static_cast<uint64_t>(_mm256_cvtss_f32(sum)));
}

enum class Level { kNone, kAvx2, kAvx512 };

// The level omni's kernels would use: the CPU's best, capped by OMNI_KERNELS as matmul caps it.
Level kernel_level() {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
  const char* cap = std::getenv("OMNI_KERNELS");
  const std::string c = cap ? cap : "";
  if (c == "scalar") return Level::kNone;
  if (c == "avx2") return avx2 ? Level::kAvx2 : Level::kNone;
  return avx512 ? Level::kAvx512 : avx2 ? Level::kAvx2 : Level::kNone;
}

double read_bandwidth(const uint8_t* buf, size_t bytes, int threads) {
  const double s = timed_parallel(threads, [&](int t) { read_range(buf, bytes / threads * t, bytes / threads * (t + 1)); });
  return static_cast<double>(bytes) / s / 1e9;
}

double int8_macs(Level level, int threads, int64_t iters) {
  const bool wide = level == Level::kAvx512;
  const double s = timed_parallel(threads, [&](int) { wide ? int8_loop(iters) : int8_loop_avx2(iters); });
  return static_cast<double>(threads) * static_cast<double>(iters) * 8 * (wide ? 64 : 32) / s;
}

double f32_fmas(Level level, int threads, int64_t iters) {
  const bool wide = level == Level::kAvx512;
  const double s = timed_parallel(threads, [&](int) { wide ? f32_loop(iters) : f32_loop_avx2(iters); });
  return static_cast<double>(threads) * static_cast<double>(iters) * 8 * (wide ? 16 : 8) / s;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 5;
  std::string model;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--model" && i + 1 < argc) model = argv[++i];
    else {
      std::fprintf(stderr, "usage: machine_limits [--threads T] [--reps N] [--model FILE.gguf]\n");
      return 2;
    }
  }
  if (threads < 1 || reps < 1) return 2;
  const Level level = kernel_level();
  const bool peaks = level != Level::kNone;
  const char* int8_insn = level == Level::kAvx512 ? "vpdpbusd" : "vpmaddubsw";

  constexpr size_t kBytes = size_t{1} << 30;
  auto* buf = static_cast<uint8_t*>(std::aligned_alloc(64, kBytes));
  std::memset(buf, 1, kBytes);
  std::printf("kernel level: %s\n\n", level == Level::kAvx512 ? "avx512" : level == Level::kAvx2 ? "avx2" : "none (no SIMD peaks)");
  std::printf("| threads | read GB/s | int8 GMAC/s (%s) | f32 GFMA/s (%d-bit) |\n|---:|---:|---:|---:|\n", int8_insn,
              level == Level::kAvx512 ? 512 : 256);
  double bw_t = 0, mac_t = 0;
  for (int t = 1; t <= threads; ++t) {
    std::vector<double> bw, mac, fma;
    for (int r = 0; r < reps; ++r) {
      bw.push_back(read_bandwidth(buf, kBytes, t));
      if (peaks) {
        mac.push_back(int8_macs(level, t, 20'000'000) / 1e9);
        fma.push_back(f32_fmas(level, t, 20'000'000) / 1e9);
      }
    }
    bw_t = median(bw);
    mac_t = peaks ? median(mac) : 0;
    std::printf("| %d | %.1f | %.0f | %.0f |\n", t, bw_t, mac_t, peaks ? median(fma) : 0.0);
  }
  std::free(buf);

  if (!model.empty()) {
    auto file = omni::gguf::File::open(model);
    if (!file) {
      std::fprintf(stderr, "machine_limits: %s\n", file.error().message.c_str());
      return 1;
    }
    // Per token: every 2-D weight is read once (decode) and costs rows x cols MACs; the token
    // embedding table is only looked up (one row), unless it is also the output head.
    double bytes = 0, macs = 0;
    bool has_output = false;
    for (const auto& t : file->tensors()) has_output |= t.name == "output.weight";
    for (const auto& t : file->tensors()) {
      if (t.shape.size() != 2) continue;
      if (t.name == "token_embd.weight" && has_output) continue;
      bytes += static_cast<double>(t.n_bytes);
      macs += static_cast<double>(t.n_elements);
    }
    std::printf("\nmodel %s: %.0f MiB of matrices per token, %.2f GMAC per token\n", model.c_str(), bytes / 1048576,
                macs / 1e9);
    std::printf("decode limit (%d threads): %.1f tokens/s = %.1f GB/s / %.0f MB\n", threads, bw_t * 1e9 / bytes, bw_t,
                bytes / 1e6);
    if (peaks)
      std::printf("prefill limit (%d threads, %s peak): %.0f tokens/s = %.0f GMAC/s / %.2f GMAC\n", threads, int8_insn,
                  mac_t * 1e9 / macs, mac_t, macs / 1e9);
  }
  return 0;
}
