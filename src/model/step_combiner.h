// StepCombiner: runs the SequenceSteps that several threads hand it at about the same time as one
// Session::forward_batch, so their matrix multiplies read the weights once. Made for the swarm
// gateway's heads: every session's pipeline thread gets its last hidden row from the nodes at
// about the same moment, and their heads (the vocabulary-sized output matrix) would otherwise read
// that matrix once per session.
//
// A step that finds the combiner idle runs at once, alone, on its caller's thread (no waiting for
// companions); steps handed in while a batch runs go together in the next batch, which one of
// their callers runs. Results are forward_batch's: each step's bits are the ones it gets alone.
//
// Thread-safe. The pool and the scratch are used by one batch at a time. Steps must be of one
// model and block range (forward_batch's rule: others fail), so use one combiner per such range.
// The pool must outlive the combiner. Steady state allocates nothing (buffers grow to the most
// concurrent steps seen, then are reused).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "kernels/thread_pool.h"
#include "model/model.h"

namespace omni::model {

class StepCombiner {
 public:
  explicit StepCombiner(kernels::ThreadPool& pool) : pool_(pool) {}
  StepCombiner(const StepCombiner&) = delete;
  StepCombiner& operator=(const StepCombiner&) = delete;

  // Runs `step` (alone or with the steps of other threads) and returns once its result is set.
  void run(SequenceStep& step);

  // Runs `fn` on the pool when no batch runs (a step the combiner cannot batch, such as a head
  // that wants every row's logits), so that the pool is never used by two threads at once.
  void exclusive(const std::function<void(kernels::ThreadPool&)>& fn);

  // Batches run and steps they held, for tests and summaries.
  uint64_t batches() const;
  uint64_t steps() const;

 private:
  struct Waiting {
    SequenceStep* step;
    bool done;
  };

  kernels::ThreadPool& pool_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Waiting*> queued_;   // handed in, not yet taken into a batch
  bool running_ = false;           // a batch runs (its caller holds taken_, batch_ and scratch_)
  std::vector<Waiting*> taken_;
  std::vector<SequenceStep> batch_;
  StepScratch scratch_;
  uint64_t batches_ = 0, steps_ = 0;
};

}  // namespace omni::model
