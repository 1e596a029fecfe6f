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
//
// Batching: a forward step (run_batched) shares its pass with the steps queued behind it. The
// worker takes the next step in the round, then, in the round's order, the following batched
// steps of the same block range while the pass's tokens stay within `max_pass_tokens`, and runs
// them as one Session::forward_batch (each step's output bit for bit its output alone). It never
// waits for companions: a step that finds the worker idle runs at once, alone. Fairness is the
// round's: a pass holds what the round would have run next anyway, one step per job, and no more
// of one client's steps than its quantum (a client's many sessions cannot make the pass long).
#pragma once

#include <kj/async.h>
#include <kj/function.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kernels/thread_pool.h"
#include "model/model.h"
#include "net/fair_queue.h"

namespace omni::net {

// One job's steps that can share a pass (ComputeWorker::run_batched). Called on the worker thread
// only, never at once; must not throw.
class BatchStep {
 public:
  virtual ~BatchStep() = default;
  // The session the steps run on: a pass holds steps of one block range.
  virtual const model::Session& session() const = 0;
  // Fills `step` (its session, input and output) for the next step; false when there is nothing
  // to run (the job failed before computing; complete() still follows).
  virtual bool prepare(model::SequenceStep& step) = 0;
  // After the pass: `step.result` holds the step's outcome when prepare() returned true. Returns
  // the next step's cost, 0 when the job is done.
  virtual uint64_t complete(model::SequenceStep& step, bool prepared) = 0;
};

class ComputeWorker {
 public:
  // quantum: the tokens a client may run per turn of the round (the node: its compute slice).
  // max_pass_tokens: the tokens of one batched pass (the first step always runs, whatever its cost;
  // 1: no step has company). pool: what batched passes compute on; it must outlive the worker.
  ComputeWorker(uint64_t quantum, uint64_t max_pass_tokens, kernels::ThreadPool& pool);
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
    return hand_over<T>(kj::mv(finish), [&](kj::Function<void()> done) {
      push(client, total, first, kj::mv(step), nullptr, kj::mv(done));
    });
  }

  // A job of `total` cost whose steps (the first costs `first`) may share passes with other jobs'
  // steps; finish() gives the value once step->complete() returned 0.
  template <class T>
  kj::Promise<T> run_batched(const std::string& client, uint64_t total, uint64_t first, std::shared_ptr<BatchStep> step,
                             kj::Function<T()> finish) {
    return hand_over<T>(kj::mv(finish), [&](kj::Function<void()> done) {
      push(client, total, first, kj::Function<uint64_t()>(), kj::mv(step), kj::mv(done));
    });
  }

  // Work accepted and not yet done (the running job included): jobs, and their cost not yet run,
  // in all and for one client.
  size_t outstanding() const;
  uint64_t outstanding_cost() const;
  uint64_t outstanding_cost(const std::string& client) const;

 private:
  // The promise of finish()'s value, fulfilled on the worker thread by the function `queue` is given.
  // kj's cross-thread fulfiller orders the worker's writes before the caller's reads with a futex
  // ThreadSanitizer cannot see; the release/acquire pair on `handed` states that order in a form
  // it can (the job's state, written on the worker thread, is read on the caller's after this).
  template <class T, class Queue>
  kj::Promise<T> hand_over(kj::Function<T()> finish, Queue&& queue) {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<T>();
    auto handed = std::make_shared<std::atomic<bool>>(false);
    queue([finish = kj::mv(finish), fulfiller = kj::mv(paf.fulfiller), handed]() mutable {
      T value = finish();
      handed->store(true, std::memory_order_release);
      fulfiller->fulfill(kj::mv(value));
    });
    return paf.promise.then([handed](T value) {
      (void)handed->load(std::memory_order_acquire);
      return value;
    });
  }

  struct Job {
    std::string client;
    uint64_t cost;                    // of this step
    uint64_t remaining;               // of this step and the ones after it
    kj::Function<uint64_t()> step;    // returns the next step's cost, 0 when done (unless batched)
    std::shared_ptr<BatchStep> batch;  // set: the steps are this, and may share a pass
    kj::Function<void()> finish;      // hands the value over, once the job is no longer counted
  };
  void push(const std::string& client, uint64_t total, uint64_t first, kj::Function<uint64_t()> step,
            std::shared_ptr<BatchStep> batch, kj::Function<void()> finish);
  void loop();
  // Takes the jobs of the next pass into pass_ (lock held).
  void take_pass();
  // Runs pass_ (lock not held); next_[i]: the cost of job i's next step, 0 when done.
  void run_pass();

  const uint64_t max_pass_tokens_;
  const uint64_t quantum_;  // the most tokens of one client in a pass (beyond its first step)
  kernels::ThreadPool& pool_;
  // The worker thread's pass, reused so that a steady-state pass does not allocate.
  std::vector<Job> pass_;
  std::vector<model::SequenceStep> steps_;
  std::vector<uint64_t> next_;
  std::vector<uint8_t> prepared_;
  model::StepScratch scratch_;

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
