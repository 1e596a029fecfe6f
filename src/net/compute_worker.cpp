#include "net/compute_worker.h"

#include <algorithm>

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

size_t ComputeWorker::outstanding() const {
  std::lock_guard lock(mutex_);
  return outstanding_;
}

uint64_t ComputeWorker::outstanding_cost() const {
  std::lock_guard lock(mutex_);
  return outstanding_cost_;
}

uint64_t ComputeWorker::outstanding_cost(const std::string& client) const {
  std::lock_guard lock(mutex_);
  auto it = outstanding_by_client_.find(client);
  return it == outstanding_by_client_.end() ? 0 : it->second;
}

void ComputeWorker::push(const std::string& client, uint64_t total, uint64_t first, kj::Function<uint64_t()> step,
                         kj::Function<void()> finish) {
  {
    std::lock_guard lock(mutex_);
    ++outstanding_;
    outstanding_cost_ += total;
    outstanding_by_client_[client] += total;
    jobs_.push(client, first, Job{client, first, total, kj::mv(step), kj::mv(finish)});
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
    const uint64_t next = job->step();
    lock.lock();
    // A job that ends early (an error) takes the cost of its steps not run with it.
    const uint64_t ran = next == 0 ? job->remaining : std::min(job->cost, job->remaining);
    job->remaining -= ran;
    outstanding_cost_ -= ran;
    auto it = outstanding_by_client_.find(job->client);
    if ((it->second -= ran) == 0) outstanding_by_client_.erase(it);
    if (next == 0) {
      --outstanding_;
      // Counted out before the caller hears of it, so what it asks next (info) sees it gone.
      lock.unlock();
      job->finish();
    } else {
      // The rest of the job waits for the other clients' turns, behind this client's own jobs.
      const std::string client = job->client;
      job->cost = next;
      jobs_.push(client, next, kj::mv(*job));
    }
  }
}

}  // namespace omni::net
