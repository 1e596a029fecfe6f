// ComputeWorker: one thread that runs jobs off the kj event loop, and hands each result back to the
// event loop that queued it as a kj::Promise.
//
// The node runs every forward pass here, so passes never overlap (they share one ThreadPool) and
// the event loop never blocks on compute. Jobs wait in a FairQueue (fair_queue.h): each names the
// client it is for and its cost (tokens), and clients with work waiting take turns of `quantum`
// tokens each. A long job runs in steps (run_in_steps: the node computes a big batch a slice at a
// time), each step queued again behind the other clients' turns, so one client's big calls delay
// another's call by at most one step. Destroying the worker finishes the running step, drops
// queued jobs (their promises break) and joins the thread.
#pragma once

#include <kj/async.h>
#include <kj/function.h>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <thread>

#include "net/fair_queue.h"

namespace omni::net {

class ComputeWorker {
 public:
  // quantum: the tokens a client may run per turn of the round (the node: its compute slice).
  explicit ComputeWorker(uint64_t quantum);
  ~ComputeWorker();
  ComputeWorker(const ComputeWorker&) = delete;
  ComputeWorker& operator=(const ComputeWorker&) = delete;

  // Runs fn() on the worker thread in `client`'s turn; the promise (on the caller's event loop)
  // resolves to its value. fn must not throw (return errors as values).
  template <class T>
  kj::Promise<T> run(const std::string& client, uint64_t cost, kj::Function<T()> fn) {
    auto value = std::make_shared<std::optional<T>>();
    return run_in_steps<T>(
        client, cost, cost,
        [fn = kj::mv(fn), value]() mutable -> uint64_t {
          *value = fn();
          return 0;
        },
        [value]() { return std::move(**value); });
  }

  // A job of `total` cost run in steps: each step() runs one step (the first costs `first`) and
  // returns the cost of the next, or 0 when the job is done (early, on an error); then finish()
  // gives the value. The steps' costs add up to at most `total`. Neither may throw.
  template <class T>
  kj::Promise<T> run_in_steps(const std::string& client, uint64_t total, uint64_t first, kj::Function<uint64_t()> step,
                              kj::Function<T()> finish) {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<T>();
    push(client, total, first, kj::mv(step),
         [finish = kj::mv(finish), fulfiller = kj::mv(paf.fulfiller)]() mutable { fulfiller->fulfill(finish()); });
    return kj::mv(paf.promise);
  }

  // Work accepted and not yet done (the running job included): jobs, and their cost not yet run,
  // in all and for one client.
  size_t outstanding() const;
  uint64_t outstanding_cost() const;
  uint64_t outstanding_cost(const std::string& client) const;

 private:
  struct Job {
    std::string client;
    uint64_t cost;                    // of this step
    uint64_t remaining;               // of this step and the ones after it
    kj::Function<uint64_t()> step;    // returns the next step's cost, 0 when done
    kj::Function<void()> finish;      // hands the value over, once the job is no longer counted
  };
  void push(const std::string& client, uint64_t total, uint64_t first, kj::Function<uint64_t()> step,
            kj::Function<void()> finish);
  void loop();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  FairQueue<Job> jobs_;
  size_t outstanding_ = 0;
  uint64_t outstanding_cost_ = 0;
  std::map<std::string, uint64_t> outstanding_by_client_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace omni::net
