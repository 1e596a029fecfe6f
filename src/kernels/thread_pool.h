// ThreadPool: a fixed set of worker threads that split loops of independent work items.
//
// parallel_for blocks until every item is done; the calling thread works too, so a pool of n
// threads uses n - 1 workers. Made for many short parallel regions per token (one per matmul):
// workers spin briefly before sleeping, and no allocation happens per call. Not reentrant: call
// parallel_for from one thread at a time, and not from inside a work item.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace omni::kernels {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads >= 1
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;

  // Calls fn(thread_index, begin, end) over [0, n) split into contiguous chunks, one per thread
  // (thread_index in [0, size())), and waits for all of them.
  void parallel_for(int64_t n, const std::function<void(int thread_index, int64_t begin, int64_t end)>& fn);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace omni::kernels
