#include "net/receive_budget.h"

#include <utility>

namespace omni::net {

bool ReceiveBudget::take(uint64_t bytes) {
  uint64_t used = used_.load(std::memory_order_relaxed);
  do {
    if (bytes > limit_ || used > limit_ - bytes) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  return true;
}

ReceiveBudget::Reservation& ReceiveBudget::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    reset();
    budget_ = std::move(other.budget_);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

bool ReceiveBudget::Reservation::grow(ReceiveBudget& budget, uint64_t bytes) {
  if (budget_ && budget_.get() != &budget) return false;  // one budget per reservation
  if (!budget.take(bytes)) return false;
  if (!budget_) budget_ = budget.shared_from_this();
  bytes_ += bytes;
  return true;
}

void ReceiveBudget::Reservation::reset() {
  if (budget_ && bytes_ > 0) budget_->give_back(bytes_);
  bytes_ = 0;
  budget_.reset();
}

}  // namespace omni::net
