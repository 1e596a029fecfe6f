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
struct ThreadPool::State {
  int n_threads = 1;
  std::vector<std::thread> workers;
  std::mutex mutex;
  std::condition_variable wake;
  std::atomic<uint64_t> generation{0};
  std::atomic<int> pending{0};
  bool stop = false;
  int64_t n = 0;
  const std::function<void(int, int64_t, int64_t)>* fn = nullptr;

  void run_chunk(int thread) const {
    const int64_t per = n / n_threads, extra = n % n_threads;
    const int64_t begin = thread * per + std::min<int64_t>(thread, extra);
    const int64_t end = begin + per + (thread < extra ? 1 : 0);
    if (begin < end) (*fn)(thread, begin, end);
  }

  void worker(int thread) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = generation.load(std::memory_order_acquire);
      for (int spin = 0; g == seen && spin < 20000; ++spin) {
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
      run_chunk(thread);
      pending.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : state_(std::make_unique<State>()) {
  state_->n_threads = std::max(1, n_threads);
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
  s.pending.store(s.n_threads - 1, std::memory_order_release);
  {
    // Publishing under the lock pairs with the sleeping workers' predicate check.
    std::lock_guard lock(s.mutex);
    s.generation.fetch_add(1, std::memory_order_acq_rel);
  }
  s.wake.notify_all();
  s.run_chunk(0);
  while (s.pending.load(std::memory_order_acquire) != 0) OMNI_PAUSE();
}

}  // namespace omni::kernels
