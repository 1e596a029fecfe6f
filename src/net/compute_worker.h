// ComputeWorker: one thread that runs jobs in order, off the kj event loop, and hands each
// result back to the event loop that queued it as a kj::Promise.
//
// The node runs every forward pass here, so passes never overlap (they share one ThreadPool) and
// the event loop never blocks on compute. Destroying the worker finishes the running job, drops
// queued ones (their promises break) and joins the thread.
#pragma once

#include <kj/async.h>
#include <kj/function.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace omni::net {

class ComputeWorker {
 public:
  ComputeWorker();
  ~ComputeWorker();
  ComputeWorker(const ComputeWorker&) = delete;
  ComputeWorker& operator=(const ComputeWorker&) = delete;

  // Runs fn() on the worker thread; the promise (on the caller's event loop) resolves to its value.
  // fn must not throw (return errors as values).
  template <class T>
  kj::Promise<T> run(kj::Function<T()> fn) {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<T>();
    push([fn = kj::mv(fn), fulfiller = kj::mv(paf.fulfiller)]() mutable { fulfiller->fulfill(fn()); });
    return kj::mv(paf.promise);
  }

  size_t queued() const;

 private:
  void push(kj::Function<void()> job);
  void loop();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<kj::Function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace omni::net
