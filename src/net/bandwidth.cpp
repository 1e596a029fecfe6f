#include "net/bandwidth.h"

#include <algorithm>
#include <chrono>

namespace omni::net {
namespace {

Nanos steady_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// An uncapped direction still gets a bucket (never consulted): rate and burst must be positive.
uint64_t or_one(uint64_t v) { return v > 0 ? v : 1; }

}  // namespace

TokenBucket::TokenBucket(uint64_t rate, uint64_t burst, Nanos now)
    : rate_(std::max<uint64_t>(rate, 1)),
      burst_(std::max<uint64_t>(burst, 1)),
      balance_(static_cast<double>(burst_)),
      updated_(now) {}

Nanos TokenBucket::take(uint64_t bytes, Nanos now) {
  if (now > updated_) {
    balance_ = std::min(static_cast<double>(burst_),
                        balance_ + static_cast<double>(now - updated_) * 1e-9 * static_cast<double>(rate_));
    updated_ = now;
  }
  balance_ -= static_cast<double>(bytes);
  if (balance_ >= 0) return 0;
  return static_cast<Nanos>(-balance_ / static_cast<double>(rate_) * 1e9);
}

uint64_t default_burst(uint64_t rate) { return std::max<uint64_t>(rate / 16, 16 << 10); }

Bandwidth::Bandwidth(uint64_t max_upload, uint64_t max_download)
    : max_upload_(max_upload),
      max_download_(max_download),
      upload_(or_one(max_upload), default_burst(max_upload), steady_now()),
      download_(or_one(max_download), default_burst(max_download), steady_now()) {}

Nanos Bandwidth::take_upload(uint64_t bytes) {
  if (max_upload_ == 0) return 0;
  std::lock_guard lock(mutex_);
  return upload_.take(bytes, steady_now());
}

Nanos Bandwidth::take_download(uint64_t bytes) {
  if (max_download_ == 0) return 0;
  std::lock_guard lock(mutex_);
  return download_.take(bytes, steady_now());
}

uint64_t Bandwidth::upload_piece() const { return max_upload_ == 0 ? UINT64_MAX : upload_.burst() / 4; }
uint64_t Bandwidth::download_piece() const { return max_download_ == 0 ? UINT64_MAX : download_.burst() / 4; }

}  // namespace omni::net
