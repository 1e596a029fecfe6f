// ThreadPool: every item runs exactly once per region, a thread index is never used by two threads
// at the same time (callers index per-thread scratch with it), and regions follow one another
// safely even when workers are descheduled (more threads than cores).
#include "kernels/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

namespace omni::kernels {
namespace {

void check_regions(int n_threads, int n_regions) {
  ThreadPool pool(n_threads);
  std::mt19937 rng(static_cast<unsigned>(n_threads));
  std::vector<std::atomic<int>> in_use(static_cast<size_t>(n_threads));
  for (int region = 0; region < n_regions; ++region) {
    const int64_t n = std::uniform_int_distribution<int64_t>(0, 200)(rng);
    std::vector<std::atomic<int>> runs(static_cast<size_t>(n));
    std::atomic<int> overlaps{0};
    pool.parallel_for(n, [&](int thread, int64_t begin, int64_t end) {
      if (in_use[static_cast<size_t>(thread)].fetch_add(1) != 0) overlaps.fetch_add(1);
      for (int64_t i = begin; i < end; ++i) runs[static_cast<size_t>(i)].fetch_add(1);
      if (region % 7 == 0) std::this_thread::yield();
      in_use[static_cast<size_t>(thread)].fetch_sub(1);
    });
    ASSERT_EQ(overlaps.load(), 0) << "region " << region;
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(runs[static_cast<size_t>(i)].load(), 1) << "region " << region << " item " << i;
  }
}

TEST(ThreadPool, EveryItemOnceOneThreadIndexAtATime) { check_regions(2, 3000); }
TEST(ThreadPool, OversubscribedWorkersStillFinishEveryRegion) { check_regions(8, 2000); }
TEST(ThreadPool, SingleThreadRunsInline) { check_regions(1, 100); }

// Many tiny regions back to back: workers still scanning one region while the next opens. A lost
// completion count would hang parallel_for, so the regions run under a watchdog.
TEST(ThreadPool, BackToBackTinyRegionsNeverHang) {
  std::atomic<bool> done{false};
  std::thread runner([&] {
    ThreadPool pool(4);
    std::atomic<int64_t> total{0};
    for (int region = 0; region < 200000; ++region)
      pool.parallel_for(2 + region % 5, [&](int, int64_t begin, int64_t end) { total.fetch_add(end - begin); });
    done.store(true);
  });
  for (int i = 0; i < 600 && !done.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (!done.load()) {
    ADD_FAILURE() << "parallel_for did not return within 60 s";
    std::_Exit(1);  // the pool's threads are stuck; leave without joining them
  }
  runner.join();
}

}  // namespace
}  // namespace omni::kernels
