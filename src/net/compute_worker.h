// ComputeWorker: one thread that runs jobs off the kj event loop, and hands each result back to the
// event loop that queued it as a kj::Promise.
//
// The node runs every forward pass here, so passes never overlap (they share one ThreadPool) and
// the event loop never blocks on compute. Jobs wait in a FairQueue (fair_queue.h): each names the
// client it is for and its cost (tokens), and clients with work waiting share the thread equally
// by cost, so one client flooding the node delays another's job by at most one round. Destroying
// the worker finishes the running job, drops queued ones (their promises break) and joins the thread.
#pragma once

#include <kj/async.h>
#include <kj/function.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "net/fair_queue.h"

namespace omni::net {

class ComputeWorker {
 public:
  // quantum: the cost a client may run per turn of the round (the node: its maxBatchTokens).
  explicit ComputeWorker(uint64_t quantum);
  ~ComputeWorker();
  ComputeWorker(const ComputeWorker&) = delete;
  ComputeWorker& operator=(const ComputeWorker&) = delete;

  // Runs fn() on the worker thread in `client`'s turn; the promise (on the caller's event loop)
  // resolves to its value. fn must not throw (return errors as values).
  template <class T>
  kj::Promise<T> run(const std::string& client, uint64_t cost, kj::Function<T()> fn) {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<T>();
    push(client, cost, [fn = kj::mv(fn), fulfiller = kj::mv(paf.fulfiller)]() mutable { fulfiller->fulfill(fn()); });
    return kj::mv(paf.promise);
  }

  // What waits (not the job running now): jobs, their cost, and one client's cost.
  size_t queued() const;
  uint64_t queued_cost() const;
  uint64_t queued_cost(const std::string& client) const;

 private:
  void push(const std::string& client, uint64_t cost, kj::Function<void()> job);
  void loop();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  FairQueue<kj::Function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace omni::net
