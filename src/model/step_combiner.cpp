#include "model/step_combiner.h"

#include <utility>

namespace omni::model {

void StepCombiner::run(SequenceStep& step) {
  Waiting me{&step, false};
  std::unique_lock lock(mutex_);
  queued_.push_back(&me);
  changed_.wait(lock, [&] { return me.done || !running_; });
  if (me.done) return;
  // Nobody runs a batch: this caller runs every step queued so far, its own among them.
  running_ = true;
  taken_.swap(queued_);  // taken_ was empty: queued_ is now
  lock.unlock();

  batch_.clear();
  for (const Waiting* w : taken_) batch_.push_back(*w->step);
  Session::forward_batch(batch_, scratch_, pool_);

  lock.lock();
  for (size_t i = 0; i < taken_.size(); ++i) {
    taken_[i]->step->result = std::move(batch_[i].result);
    taken_[i]->done = true;
  }
  ++batches_;
  steps_ += taken_.size();
  taken_.clear();
  running_ = false;
  // Wakes the finished callers, and the queued ones: one of them runs the next batch.
  changed_.notify_all();
}

void StepCombiner::exclusive(const std::function<void(kernels::ThreadPool&)>& fn) {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return !running_; });
  running_ = true;
  lock.unlock();
  fn(pool_);
  lock.lock();
  running_ = false;
  changed_.notify_all();  // queued steps: one of their callers runs the next batch
}

uint64_t StepCombiner::batches() const {
  std::lock_guard lock(mutex_);
  return batches_;
}

uint64_t StepCombiner::steps() const {
  std::lock_guard lock(mutex_);
  return steps_;
}

}  // namespace omni::model
