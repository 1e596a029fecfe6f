#include "gateway/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace omni::gateway {
namespace {

constexpr auto kSweepInterval = std::chrono::seconds(30);

double refill(double level, double per_minute, double seconds) {
  if (per_minute <= 0) return 0;
  return std::min(per_minute, level + per_minute / 60.0 * seconds);
}

// Seconds until a bucket at `level` holds `needed`, rounded up (at least 1).
int seconds_until(double level, double needed, double per_minute) {
  const double s = (needed - level) / (per_minute / 60.0);
  return std::max(1, static_cast<int>(std::ceil(s)));
}

}  // namespace

RateLimiter::Buckets& RateLimiter::buckets_of(const std::string& client, Clock::time_point now) {
  auto [it, inserted] = clients_.try_emplace(client);
  Buckets& b = it->second;
  if (inserted) {
    b.requests = limits_.requests_per_minute;
    b.tokens = limits_.tokens_per_minute;
  } else {
    const double elapsed = std::max(0.0, std::chrono::duration<double>(now - b.updated).count());
    b.requests = refill(b.requests, limits_.requests_per_minute, elapsed);
    b.tokens = refill(b.tokens, limits_.tokens_per_minute, elapsed);
  }
  b.updated = std::max(b.updated, now);
  return b;
}

RateLimiter::Decision RateLimiter::admit(const std::string& client, Clock::time_point now) {
  if (limits_.requests_per_minute <= 0 && limits_.tokens_per_minute <= 0) return {};
  std::lock_guard lock(mutex_);
  if (now - last_sweep_ >= kSweepInterval) sweep(now);
  Buckets& b = buckets_of(client, now);
  Decision d;
  if (limits_.requests_per_minute > 0 && b.requests < 1.0) {
    d.allowed = false;
    d.retry_after_s = seconds_until(b.requests, 1.0, limits_.requests_per_minute);
    d.reason = "too many requests: the limit is " + std::to_string(static_cast<long>(limits_.requests_per_minute)) +
               " per minute per client";
    return d;
  }
  if (limits_.tokens_per_minute > 0 && b.tokens < 1.0) {
    d.allowed = false;
    d.retry_after_s = seconds_until(b.tokens, 1.0, limits_.tokens_per_minute);
    d.reason = "too many generated tokens: the limit is " +
               std::to_string(static_cast<long>(limits_.tokens_per_minute)) + " per minute per client";
    return d;
  }
  if (limits_.requests_per_minute > 0) b.requests -= 1.0;
  return d;
}

void RateLimiter::charge_tokens(const std::string& client, double tokens, Clock::time_point now) {
  if (limits_.tokens_per_minute <= 0) return;
  std::lock_guard lock(mutex_);
  buckets_of(client, now).tokens -= tokens;
}

size_t RateLimiter::tracked_clients() const {
  std::lock_guard lock(mutex_);
  return clients_.size();
}

void RateLimiter::sweep(Clock::time_point now) {
  last_sweep_ = now;
  for (auto it = clients_.begin(); it != clients_.end();) {
    const double elapsed = std::max(0.0, std::chrono::duration<double>(now - it->second.updated).count());
    const bool requests_full = limits_.requests_per_minute <= 0 ||
                               refill(it->second.requests, limits_.requests_per_minute, elapsed) >=
                                   limits_.requests_per_minute;
    const bool tokens_full = limits_.tokens_per_minute <= 0 ||
                             refill(it->second.tokens, limits_.tokens_per_minute, elapsed) >=
                                 limits_.tokens_per_minute;
    it = (requests_full && tokens_full) ? clients_.erase(it) : std::next(it);
  }
}

}  // namespace omni::gateway
