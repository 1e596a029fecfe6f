// matmul: picks the kernel table for the CPU, quantizes the activations once per call into a
// per-thread buffer, and splits (row chunk x token block) tiles over the pool.
//
// Tiling: a work item is a chunk of rows (at most ~128 KiB of weights, so it stays in L2 while the
// tokens pass over it) times a block of tokens (~256 KiB of activations). Items are ordered row
// chunk major, so each thread streams its weights from memory once. Results do not depend on the
// split: the tile kernels compute every output the same way wherever it falls (dot_kernels.h).
#include "kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <new>

#include "kernels/dot_kernels.h"
#include "kernels/quantize.h"

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace omni::kernels {

int wtype_index(gguf::TensorType type) {
  using T = gguf::TensorType;
  switch (type) {
    case T::F32:
      return static_cast<int>(WType::F32);
    case T::F16:
      return static_cast<int>(WType::F16);
    case T::BF16:
      return static_cast<int>(WType::BF16);
    case T::Q8_0:
      return static_cast<int>(WType::Q8_0);
    case T::Q4_0:
      return static_cast<int>(WType::Q4_0);
    case T::Q4_1:
      return static_cast<int>(WType::Q4_1);
    case T::Q5_0:
      return static_cast<int>(WType::Q5_0);
    case T::Q5_1:
      return static_cast<int>(WType::Q5_1);
    case T::Q2_K:
      return static_cast<int>(WType::Q2_K);
    case T::Q3_K:
      return static_cast<int>(WType::Q3_K);
    case T::Q4_K:
      return static_cast<int>(WType::Q4_K);
    case T::Q5_K:
      return static_cast<int>(WType::Q5_K);
    case T::Q6_K:
      return static_cast<int>(WType::Q6_K);
    default:
      return -1;
  }
}

namespace {

#if defined(__aarch64__) && defined(__linux__)
// The Linux AArch64 HWCAP bits (ABI constants; older headers lack HWCAP2_I8MM).
constexpr unsigned long kHwcapAsimdDp = 1ul << 20;
constexpr unsigned long kHwcap2I8mm = 1ul << 13;
#endif

// This architecture's levels, lowest first: a level's rank is its index here.
#if defined(__x86_64__)
constexpr SimdLevel kLadder[] = {SimdLevel::kScalar, SimdLevel::kAvx2, SimdLevel::kAvx512};
#elif defined(__aarch64__)
constexpr SimdLevel kLadder[] = {SimdLevel::kScalar, SimdLevel::kNeon, SimdLevel::kNeonDotprod, SimdLevel::kNeonI8mm};
#else
constexpr SimdLevel kLadder[] = {SimdLevel::kScalar};
#endif
constexpr int kRanks = static_cast<int>(std::size(kLadder));
// By SimdLevel.
constexpr const char* kLevelNames[] = {"scalar", "avx2", "avx512", "neon", "dotprod", "i8mm"};

// The rank of the named level; a level of another architecture ranks above all of this one's (so,
// forced, it gives the best this CPU has); -1 for a name that is no level.
int rank_of(const char* name) {
  for (int i = 0; i < static_cast<int>(std::size(kLevelNames)); ++i) {
    if (std::strcmp(name, kLevelNames[i]) != 0) continue;
    for (int r = 0; r < kRanks; ++r) {
      if (static_cast<int>(kLadder[r]) == i) return r;
    }
    return kRanks - 1;
  }
  return -1;
}

int detect_rank() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  unsigned eax, ebx, ecx, edx;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c)) return 0;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni"))
    return 2;
  return 1;
#elif defined(__aarch64__) && defined(__APPLE__)
  const auto has = [](const char* feature) {
    int value = 0;
    size_t size = sizeof value;
    return sysctlbyname(feature, &value, &size, nullptr, 0) == 0 && value != 0;
  };
  if (!has("hw.optional.arm.FEAT_DotProd")) return 1;
  return has("hw.optional.arm.FEAT_I8MM") ? 3 : 2;
#elif defined(__aarch64__) && defined(__linux__)
  // Advanced SIMD is part of every AArch64 Linux system.
  if (!(getauxval(AT_HWCAP) & kHwcapAsimdDp)) return 1;
  return (getauxval(AT_HWCAP2) & kHwcap2I8mm) ? 3 : 2;
#elif defined(__aarch64__)
  return 1;
#else
  return 0;
#endif
}

// The detected rank, capped by OMNI_KERNELS (a level name) where that is set: tests and CI run each
// level this way, and a user can rule out a level. A value that names no level is reported and
// ignored.
int initial_rank() {
  const int detected = detect_rank();
  const char* env = std::getenv("OMNI_KERNELS");
  if (env == nullptr || *env == '\0') return detected;
  const int cap = rank_of(env);
  if (cap < 0) {
    std::fprintf(stderr,
                 "omni::kernels: OMNI_KERNELS=\"%s\" names no kernel level (scalar, avx2, avx512, neon, dotprod, "
                 "i8mm); ignored\n",
                 env);
    return detected;
  }
  return std::min(cap, detected);
}

std::atomic<int> g_forced{-1};

// A forced level the CPU lacks falls back to the best one it has.
int active_rank() {
  static const int available = initial_rank();
  const int forced = g_forced.load(std::memory_order_relaxed);
  return forced < 0 ? available : std::min(forced, available);
}

const KernelTable& kernels_for(SimdLevel level) {
  switch (level) {
#if defined(__x86_64__)
    case SimdLevel::kAvx512:
      return avx512_kernels();
    case SimdLevel::kAvx2:
      return avx2_kernels();
#elif defined(__aarch64__)
    case SimdLevel::kNeonI8mm:
      return neon_i8mm_kernels();
    case SimdLevel::kNeonDotprod:
      return neon_dotprod_kernels();
    case SimdLevel::kNeon:
      return neon_kernels();
#endif
    default:
      return scalar_kernels();
  }
}

[[noreturn]] void contract_violation(const char* what, const WeightView& w) {
  std::fprintf(stderr, "omni::kernels::matmul: %s (type %s, cols %lld)\n", what, gguf::tensor_type_name(w.type).c_str(),
               static_cast<long long>(w.cols));
  std::abort();
}

// The calling thread's activation buffer: grown on demand, never shrunk, so steady-state calls
// do not allocate. Workers read the caller's buffer while parallel_for blocks the caller.
struct AlignedFree {
  void operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t{64}); }
};
thread_local std::unique_ptr<uint8_t[], AlignedFree> t_act;
thread_local size_t t_act_size = 0;

uint8_t* act_buffer(size_t bytes) {
  if (bytes > t_act_size) {
    t_act.reset(static_cast<uint8_t*>(::operator new[](bytes, std::align_val_t{64})));
    t_act_size = bytes;
  }
  return t_act.get();
}

constexpr size_t kChunkWeightBytes = 128 * 1024;
constexpr size_t kBlockActBytes = 256 * 1024;
constexpr int64_t kParallelQuantizeValues = 32 * 1024;

struct Job {
  const TypeKernel* kernel;
  const ActLayout* layout;
  const uint8_t* w;
  size_t row_bytes;
  uint8_t* act;
  const float* x;
  float* y;
  int64_t rows, n_tokens, rows_per_item, tokens_per_item, n_token_blocks;
  int64_t n_row_chunks = 0;
  int threads = 1;
};

void run_item(const Job& job, int64_t row_chunk, int64_t token_block) {
  const int64_t r0 = row_chunk * job.rows_per_item;
  const int64_t t0 = token_block * job.tokens_per_item;
  const int64_t nr = std::min(job.rows_per_item, job.rows - r0);
  const int64_t nt = std::min(job.tokens_per_item, job.n_tokens - t0);
  job.kernel->tile(job.w + r0 * job.row_bytes, job.row_bytes, nr, job.act + t0 * job.layout->stride, *job.layout, nt,
                   job.y + t0 * job.rows + r0, job.rows);
}

}  // namespace

bool matmul_supports(gguf::TensorType type) { return wtype_index(type) >= 0; }

SimdLevel active_simd_level() { return kLadder[active_rank()]; }

namespace {

// ggml's kernel choice changes the summation structure (docs/design.md, "Numerical parity"):
// F16 / F32 / BF16 prompt batches go through tinyBLAS (cols % 16 == 0), single rows through vec_dot; Q4_0
// matrices with rows % 8 == 0 through its repacked kernels.
const TypeKernel& choose_kernel(const KernelTable& table, int ti, const WeightView& w, bool single_token) {
  const TypeKernel* chosen = &table.types[ti];
  const bool single = single_token || w.cols % 16 != 0;
  if (w.type == gguf::TensorType::F16 && single) chosen = &table.f16_single;
  if (w.type == gguf::TensorType::F32 && single) chosen = &table.f32_single;
  if (w.type == gguf::TensorType::BF16 && single && chosen->act == ActFormat::kBF16) chosen = &table.bf16_single;
  if (w.type == gguf::TensorType::Q4_0 && w.rows % 8 == 0) chosen = &table.q4_0_chain;
  return *chosen;
}

void run_matmul(const TypeKernel& kernel, const WeightView& w, size_t row_bytes, const float* x, int64_t n_tokens,
                float* y, ThreadPool& pool);

}  // namespace

void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool, int64_t n_single) {
  const int ti = wtype_index(w.type);
  if (ti < 0) contract_violation("unsupported weight type", w);
  const auto row_bytes = gguf::row_bytes(w.type, static_cast<uint64_t>(w.cols));
  if (w.cols <= 0 || !row_bytes) contract_violation("cols is not a whole number of blocks", w);
  if (n_tokens <= 0 || w.rows <= 0) return;
  n_single = std::clamp<int64_t>(n_single, 0, n_tokens);

  const KernelTable& table = kernels_for(active_simd_level());
  const int64_t n_batch = n_tokens - n_single;
  const TypeKernel& batch_kernel = choose_kernel(table, ti, w, n_batch == 1);
  const TypeKernel& single_kernel = choose_kernel(table, ti, w, true);
  // Where a lone token's kernel is the batch's (every quantized type), the rows go in one pass, so
  // the weights are read once for all of them.
  if (n_single == 0 || n_batch == 0 || &batch_kernel == &single_kernel) {
    run_matmul(n_batch == 0 ? single_kernel : batch_kernel, w, *row_bytes, x, n_tokens, y, pool);
    return;
  }
  run_matmul(batch_kernel, w, *row_bytes, x, n_batch, y, pool);
  run_matmul(single_kernel, w, *row_bytes, x + n_batch * w.cols, n_single, y + n_batch * w.rows, pool);
}

namespace {

void run_matmul(const TypeKernel& kernel, const WeightView& w, size_t row_bytes, const float* x, int64_t n_tokens,
                float* y, ThreadPool& pool) {
  const ActLayout layout = act_layout(kernel.act, w.cols);
  uint8_t* act = act_buffer(layout.stride * static_cast<size_t>(n_tokens));

  Job job{&kernel,
          &layout,
          static_cast<const uint8_t*>(w.data),
          row_bytes,
          act,
          x,
          y,
          w.rows,
          n_tokens,
          0,
          0,
          0};

  // Quantizing costs about a nanosecond per value: small batches are not worth a parallel region.
  if (pool.size() == 1 || n_tokens * w.cols < kParallelQuantizeValues) {
    for (int64_t t = 0; t < n_tokens; ++t) kernel.quantize(x + t * w.cols, layout, act + t * layout.stride);
  } else {
    pool.parallel_for(n_tokens, [&job](int, int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t)
        job.kernel->quantize(job.x + t * job.layout->cols, *job.layout, job.act + t * job.layout->stride);
    });
  }

  // Enough row chunks for every thread to get several (load balance), none over the L2 budget,
  // in multiples of 16 or 4 rows where possible (the Q4_0 chain takes 16 rows at a time, the float
  // kernels 4).
  const int64_t by_cache = std::max<int64_t>(1, static_cast<int64_t>(kChunkWeightBytes / job.row_bytes));
  const int64_t by_threads = (w.rows + 8 * pool.size() - 1) / (8 * pool.size());
  const int64_t chunk = std::min(by_cache, by_threads);
  job.rows_per_item = std::clamp<int64_t>(chunk >= 32 ? chunk / 16 * 16 : chunk >= 8 ? chunk / 4 * 4 : chunk, 1, w.rows);
  // Token blocks in multiples of 8: the prompt kernels take 8 tokens per pass (4 pairs, or the Q4_0
  // chain's 8), so a block of 8k + 1 would end in a pass that does one token's work at a pass's cost.
  const auto by_act = static_cast<int64_t>(kBlockActBytes / layout.stride);
  job.tokens_per_item = by_act >= 8 ? by_act / 8 * 8 : std::max<int64_t>(1, by_act);
  job.n_token_blocks = (n_tokens + job.tokens_per_item - 1) / job.tokens_per_item;
  const int64_t n_row_chunks = (w.rows + job.rows_per_item - 1) / job.rows_per_item;

  job.n_row_chunks = n_row_chunks;
  // (The lambdas capture one pointer, so std::function does not allocate.)
  if (job.n_token_blocks == 1 && pool.size() > 1) {
    // One pass over the weights (decode, small batches): each thread takes an equal share of whole
    // row chunks, so none waits for another at the end.
    job.threads = pool.size();
    pool.parallel_for(job.threads, [&job](int, int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t c = job.n_row_chunks * i / job.threads; c < job.n_row_chunks * (i + 1) / job.threads; ++c)
          run_item(job, c, 0);
      }
    });
    return;
  }
  pool.parallel_for(n_row_chunks * job.n_token_blocks, [&job](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) run_item(job, i / job.n_token_blocks, i % job.n_token_blocks);
  });
}

}  // namespace

void dequantize_row_of(const WeightView& w, int64_t row, float* out) {
  const auto row_bytes = gguf::row_bytes(w.type, static_cast<uint64_t>(w.cols));
  if (!row_bytes || !can_dequantize(w.type)) contract_violation("dequantize_row_of: unsupported type or cols", w);
  dequantize_row(w.type, static_cast<const uint8_t*>(w.data) + row * static_cast<int64_t>(*row_bytes), out, w.cols);
}

const char* simd_level() { return kLevelNames[static_cast<int>(active_simd_level())]; }

void force_simd_level(const char* level) {
  if (level == nullptr) {
    g_forced.store(-1, std::memory_order_relaxed);
    return;
  }
  const int rank = rank_of(level);
  if (rank < 0) {
    std::fprintf(stderr, "omni::kernels::force_simd_level: unknown level \"%s\"\n", level);
    std::abort();
  }
  g_forced.store(rank, std::memory_order_relaxed);
}

}  // namespace omni::kernels
