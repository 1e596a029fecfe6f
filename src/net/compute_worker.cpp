#include "net/compute_worker.h"

namespace omni::net {

ComputeWorker::ComputeWorker() : thread_([this] { loop(); }) {}

ComputeWorker::~ComputeWorker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

size_t ComputeWorker::queued() const {
  std::lock_guard lock(mutex_);
  return jobs_.size();
}

void ComputeWorker::push(kj::Function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(kj::mv(job));
  }
  wake_.notify_one();
}

void ComputeWorker::loop() {
  for (;;) {
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (stopping_) {
      jobs_.clear();  // their fulfillers are destroyed unfulfilled: the promises break
      return;
    }
    auto job = kj::mv(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
  }
}

}  // namespace omni::net
