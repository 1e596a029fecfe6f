// In-process peers for the fetch tests: each serves blobs from memory (or a BlobStore) on its own
// thread, after a configurable delay, and can misbehave: flip a bit, fail, or never answer.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "store/blob_store.h"
#include "store/fetch.h"

namespace omni::store::testing {

struct PeerBehaviour {
  std::chrono::milliseconds delay{0};  // per request, served one after another
  bool flip_bit = false;               // every answer has one bit flipped
  int fail_after = -1;                 // answer errors after this many good answers
  bool hang = false;                   // never answer
};

class FakePeer : public ChunkSource {
 public:
  using Behaviour = PeerBehaviour;

  FakePeer(std::string name, Behaviour b = {}) : name_(std::move(name)), b_(b), worker_([this] { run(); }) {}
  ~FakePeer() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  void add(std::vector<uint8_t> data) {
    std::lock_guard lock(mu_);
    Cid c = Cid::of(data);
    blobs_[c] = std::move(data);
  }
  void serve_store(BlobStore* store) { store_ = store; }

  std::string name() const override { return name_; }
  void read(const Cid& cid, uint64_t offset, uint32_t length, Done done) override {
    uint64_t in_flight = ++requests - answered;
    max_in_flight = std::max<uint64_t>(max_in_flight, in_flight);
    std::lock_guard lock(mu_);
    if (++blob_reads_[cid] == 1) max_blobs_in_flight = std::max<uint64_t>(max_blobs_in_flight, blob_reads_.size());
    queue_.push_back({cid, offset, length, std::move(done)});
    cv_.notify_all();
  }

  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> answered{0};
  std::atomic<uint64_t> max_in_flight{0};        // the most reads this peer had outstanding at once
  std::atomic<uint64_t> max_blobs_in_flight{0};  // the most blobs it had reads outstanding for at once

 private:
  struct Req {
    Cid cid;
    uint64_t offset;
    uint32_t length;
    Done done;
  };

  Result<ChunkBuffer> serve(const Req& r) {
    if (store_) {
      auto bytes = store_->read(r.cid, r.offset, r.length);
      if (!bytes) return bytes.error();
      return ChunkBuffer::copy_of(*bytes);
    }
    std::lock_guard lock(mu_);
    auto it = blobs_.find(r.cid);
    if (it == blobs_.end()) return Error{name_ + ": no such blob"};
    const auto& d = it->second;
    if (r.offset > d.size()) return Error{name_ + ": range past the end"};
    size_t n = std::min<size_t>(r.length, d.size() - r.offset);
    return ChunkBuffer::copy_of({d.data() + r.offset, n});
  }

  void run() {
    for (;;) {
      Req r;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || (!queue_.empty() && !b_.hang); });
        if (stop_) break;
        r = std::move(queue_.front());
        queue_.pop_front();
      }
      if (b_.delay.count() > 0) std::this_thread::sleep_for(b_.delay);
      auto data = serve(r);
      if (data && b_.flip_bit && !data->empty()) {
        std::vector<uint8_t> bad(data->bytes().begin(), data->bytes().end());
        bad[bad.size() / 3] ^= 0x04;
        data = ChunkBuffer::copy_of(bad);
      }
      if (b_.fail_after >= 0 && answered >= static_cast<uint64_t>(b_.fail_after)) data = Error{name_ + ": connection reset"};
      {
        std::lock_guard lock(mu_);
        if (--blob_reads_[r.cid] == 0) blob_reads_.erase(r.cid);
      }
      ++answered;
      r.done(std::move(data));
    }
    // Unanswered requests are answered with an error so their callbacks run exactly once.
    std::deque<Req> rest;
    {
      std::lock_guard lock(mu_);
      rest.swap(queue_);
    }
    for (auto& r : rest) r.done(Error{name_ + ": shut down"});
  }

  std::string name_;
  Behaviour b_;
  BlobStore* store_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Req> queue_;
  std::map<Cid, std::vector<uint8_t>> blobs_;
  std::map<Cid, uint64_t> blob_reads_;  // reads outstanding per blob
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace omni::store::testing
