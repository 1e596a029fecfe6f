// ReceiveBudget: the bytes of incoming messages a server holds at once, over all its connections
// (messages being received, and received ones until their handlers let go of them). One peer's
// limit per message bounds one connection; this bounds the sum, so that many connections each
// parking a large partial message cannot take the process's memory.
//
// Thread-safe (a message may be released on another thread than the one that read it).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>

namespace omni::net {

class ReceiveBudget : public std::enable_shared_from_this<ReceiveBudget> {
 public:
  explicit ReceiveBudget(uint64_t limit_bytes) : limit_(limit_bytes) {}

  // Bytes taken from the budget, given back when destroyed (or by reset()).
  class Reservation {
   public:
    Reservation() = default;
    ~Reservation() { reset(); }
    Reservation(Reservation&& other) noexcept
        : budget_(std::move(other.budget_)), bytes_(std::exchange(other.bytes_, 0)) {}
    Reservation& operator=(Reservation&& other) noexcept;
    uint64_t bytes() const { return bytes_; }
    // Adds `bytes` more from `budget`; false (nothing taken) when the budget has not that much left.
    bool grow(ReceiveBudget& budget, uint64_t bytes);
    void reset();

   private:
    std::shared_ptr<ReceiveBudget> budget_;
    uint64_t bytes_ = 0;
  };

  uint64_t limit() const { return limit_; }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }

 private:
  bool take(uint64_t bytes);
  void give_back(uint64_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }

  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

}  // namespace omni::net
