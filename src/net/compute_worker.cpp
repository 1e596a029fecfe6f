#include "net/compute_worker.h"

#include <algorithm>

namespace omni::net {

ComputeWorker::ComputeWorker(uint64_t quantum, uint64_t max_pass_tokens, kernels::ThreadPool& pool)
    : max_pass_tokens_(std::max<uint64_t>(max_pass_tokens, 1)),
      quantum_(std::max<uint64_t>(quantum, 1)),
      pool_(pool),
      jobs_(quantum) {
  // Each step costs at least a token, so a pass holds at most max_pass_tokens jobs (and one more
  // than fits, the first, when it alone costs more).
  const size_t most = static_cast<size_t>(std::min<uint64_t>(max_pass_tokens_, 4096)) + 1;
  pass_.reserve(most);
  steps_.reserve(most);
  next_.reserve(most);
  prepared_.reserve(most);
  thread_ = std::thread([this] { loop(); });
}

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
                         std::shared_ptr<BatchStep> batch, kj::Function<void()> finish) {
  {
    std::lock_guard lock(mutex_);
    ++outstanding_;
    outstanding_cost_ += total;
    outstanding_by_client_[client] += total;
    jobs_.push(client, first, Job{client, first, total, kj::mv(step), kj::mv(batch), kj::mv(finish)});
  }
  wake_.notify_one();
}

void ComputeWorker::take_pass() {
  pass_.push_back(std::move(*jobs_.pop()));
  if (!pass_.front().batch) return;
  const model::Session& first = pass_.front().batch->session();
  uint64_t tokens = pass_.front().cost;
  while (pass_.size() < pass_.capacity()) {
    auto more = jobs_.pop_if([&](const Job& job, uint64_t cost) {
      if (!job.batch || tokens + cost > max_pass_tokens_) return false;
      // A client's steps in one pass stay within its turn's quantum: its many sessions must not make
      // the pass, and so another client's next token, as long as all of theirs together.
      uint64_t own = 0;
      for (const Job& in : pass_)
        if (in.client == job.client) own += in.cost;
      if (own > 0 && own + cost > quantum_) return false;
      const model::Session& s = job.batch->session();
      return s.block_begin() == first.block_begin() && s.block_end() == first.block_end();
    });
    if (!more) break;
    tokens += more->cost;
    pass_.push_back(std::move(*more));
  }
}

void ComputeWorker::run_pass() {
  const size_t n = pass_.size();
  next_.assign(n, 0);
  if (!pass_.front().batch) {
    next_[0] = pass_.front().step();
    return;
  }
  steps_.resize(n);
  prepared_.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    steps_[i] = model::SequenceStep{};
    prepared_[i] = pass_[i].batch->prepare(steps_[i]) ? 1 : 0;
    if (!prepared_[i]) steps_[i].session = nullptr;  // forward_batch skips it (with an error nobody reads)
  }
  if (std::find(prepared_.begin(), prepared_.end(), 1) != prepared_.end())
    model::Session::forward_batch(steps_, scratch_, pool_);
  for (size_t i = 0; i < n; ++i) next_[i] = pass_[i].batch->complete(steps_[i], prepared_[i] != 0);
}

void ComputeWorker::loop() {
  for (;;) {
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [this] { return stopping_ || jobs_.size() > 0; });
    if (stopping_) {
      jobs_.clear();  // their fulfillers are destroyed unfulfilled: the promises break
      return;
    }
    take_pass();
    lock.unlock();
    run_pass();
    lock.lock();
    size_t finished = 0;
    for (size_t i = 0; i < pass_.size(); ++i) {
      Job& job = pass_[i];
      const uint64_t next = next_[i];
      // A job that ends early (an error) takes the cost of its steps not run with it.
      const uint64_t ran = next == 0 ? job.remaining : std::min(job.cost, job.remaining);
      job.remaining -= ran;
      outstanding_cost_ -= ran;
      auto it = outstanding_by_client_.find(job.client);
      if ((it->second -= ran) == 0) outstanding_by_client_.erase(it);
      if (next == 0) {
        --outstanding_;
        // Finished ones move to the front, told below once the lock is let go.
        if (i != finished) std::swap(pass_[finished], job);
        ++finished;
      } else {
        // The rest of the job waits for the other clients' turns, behind this client's own jobs.
        job.cost = next;
        jobs_.push(job.client, next, std::move(job));
      }
    }
    // Counted out before the callers hear of it, so what they ask next (info) sees them gone.
    lock.unlock();
    for (size_t i = 0; i < finished; ++i) pass_[i].finish();
    pass_.clear();
  }
}

}  // namespace omni::net
