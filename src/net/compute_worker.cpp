#include "net/compute_worker.h"

namespace omni::net {

ComputeWorker::ComputeWorker(uint64_t quantum) : jobs_(quantum), thread_([this] { loop(); }) {}

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

uint64_t ComputeWorker::queued_cost() const {
  std::lock_guard lock(mutex_);
  return jobs_.queued_cost();
}

uint64_t ComputeWorker::queued_cost(const std::string& client) const {
  std::lock_guard lock(mutex_);
  return jobs_.queued_cost(client);
}

void ComputeWorker::push(const std::string& client, uint64_t cost, kj::Function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push(client, cost, kj::mv(job));
  }
  wake_.notify_one();
}

void ComputeWorker::loop() {
  for (;;) {
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [this] { return stopping_ || jobs_.size() > 0; });
    if (stopping_) {
      jobs_.clear();  // their fulfillers are destroyed unfulfilled: the promises break
      return;
    }
    auto job = jobs_.pop();
    lock.unlock();
    (*job)();
  }
}

}  // namespace omni::net
