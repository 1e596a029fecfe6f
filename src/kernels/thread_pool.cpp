#include "kernels/thread_pool.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OMNI_PAUSE() _mm_pause()
#else
#define OMNI_PAUSE() std::this_thread::yield()
#endif

namespace omni::kernels {

// Workers wait for a new generation number. They spin for a while first, because a forward pass
// starts a new parallel region every few microseconds and a sleep/wake costs more than that.
//
// A region's items are cut into up to kChunksPerThread chunks per thread; thread t owns a
// contiguous run of them (good for the row-chunk-major order of matmul) and, once done, takes any
// chunk nobody has started. On a busy machine a descheduled worker then delays a region by at most
// the chunk it is in, not by its whole share. Every chunk is claimed by exactly one thread.
constexpr int kChunksPerThread = 4;
constexpr int kSpinsBeforeYield = 2000;

struct ThreadPool::State {
  int n_threads = 1;
  std::vector<std::thread> workers;
  std::mutex mutex;
  std::condition_variable wake;
  std::atomic<uint64_t> generation{0};
  std::atomic<int> pending{0};  // chunks not finished yet
  std::unique_ptr<std::atomic<bool>[]> claimed;
  bool stop = false;
  int64_t n = 0;
  // Atomic because a worker may still be scanning for free chunks when the next region sets it;
  // the count it then sees may be either region's, which is harmless: chunks past a region's count
  // stay claimed. Once it claims a chunk, the claim's acquire makes the current count visible.
  std::atomic<int> n_chunks{0};
  const std::function<void(int, int64_t, int64_t)>* fn = nullptr;

  void run_chunk_if_free(int thread, int chunk) {
    if (claimed[chunk].exchange(true, std::memory_order_acq_rel)) return;
    const int chunks = n_chunks.load(std::memory_order_relaxed);
    const int64_t begin = n * chunk / chunks, end = n * (chunk + 1) / chunks;
    if (begin < end) (*fn)(thread, begin, end);
    pending.fetch_sub(1, std::memory_order_acq_rel);
  }

  void run_share(int thread) {
    const int chunks = n_chunks.load(std::memory_order_relaxed);
    const int own_begin = chunks * thread / n_threads, own_end = chunks * (thread + 1) / n_threads;
    for (int c = own_begin; c < own_end; ++c) run_chunk_if_free(thread, c);
    for (int k = 1; k < n_threads; ++k) {  // then the others' unstarted chunks, nearest owner first
      const int other = (thread + k) % n_threads;
      for (int c = chunks * other / n_threads; c < chunks * (other + 1) / n_threads; ++c)
        run_chunk_if_free(thread, c);
    }
  }

  void worker(int thread) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = generation.load(std::memory_order_acquire);
      for (int spin = 0; g == seen && spin < 20000; ++spin) {
        if (spin % kSpinsBeforeYield == kSpinsBeforeYield - 1) std::this_thread::yield();
        OMNI_PAUSE();
        g = generation.load(std::memory_order_acquire);
      }
      if (g == seen) {
        std::unique_lock lock(mutex);
        wake.wait(lock, [&] { return stop || generation.load(std::memory_order_acquire) != seen; });
        if (stop) return;
        g = generation.load(std::memory_order_acquire);
      }
      seen = g;
      run_share(thread);
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : state_(std::make_unique<State>()) {
  state_->n_threads = std::max(1, n_threads);
  // All chunks start claimed: a worker still scanning an old region never takes a chunk the
  // current region does not have.
  const size_t max_chunks = static_cast<size_t>(state_->n_threads) * kChunksPerThread;
  state_->claimed = std::make_unique<std::atomic<bool>[]>(max_chunks);
  for (size_t c = 0; c < max_chunks; ++c) state_->claimed[c].store(true, std::memory_order_relaxed);
  for (int i = 1; i < state_->n_threads; ++i) state_->workers.emplace_back([this, i] { state_->worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(state_->mutex);
    state_->stop = true;
  }
  state_->wake.notify_all();
  for (auto& t : state_->workers) t.join();
}

int ThreadPool::size() const { return state_->n_threads; }

void ThreadPool::parallel_for(int64_t n, const std::function<void(int, int64_t, int64_t)>& fn) {
  State& s = *state_;
  if (s.n_threads == 1 || n <= 1) {
    if (n > 0) fn(0, 0, n);
    return;
  }
  s.n = n;
  s.fn = &fn;
  const int chunks = static_cast<int>(std::min<int64_t>(n, int64_t{s.n_threads} * kChunksPerThread));
  s.n_chunks.store(chunks, std::memory_order_relaxed);
  // The count first: once a chunk is open, a worker still scanning the previous region may take
  // and finish it at once, and its decrement must not be overwritten.
  s.pending.store(chunks, std::memory_order_release);
  // Release: a worker that claims a chunk (even one still finishing the previous region) sees this
  // region's n, fn and count.
  for (int c = 0; c < chunks; ++c) s.claimed[c].store(false, std::memory_order_release);
  {
    // Publishing under the lock pairs with the sleeping workers' predicate check.
    std::lock_guard lock(s.mutex);
    s.generation.fetch_add(1, std::memory_order_acq_rel);
  }
  s.wake.notify_all();
  s.run_share(0);
  // Only chunks other threads are running remain; yield now and then in case one was descheduled.
  for (int spin = 1; s.pending.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin % kSpinsBeforeYield == 0) std::this_thread::yield();
    OMNI_PAUSE();
  }
}

}  // namespace omni::kernels
