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

RateLimiter::Buckets& RateLimiter::buckets_of(const std::string& client, Clock::time_point now, double scale) {
  scale = std::max(1.0, scale);
  auto [it, inserted] = clients_.try_emplace(client);
  Buckets& b = it->second;
  if (inserted) {
    b.requests = limits_.requests_per_minute * scale;
    b.tokens = limits_.tokens_per_minute * scale;
  } else {
    const double elapsed = std::max(0.0, std::chrono::duration<double>(now - b.updated).count());
    b.requests = refill(b.requests, limits_.requests_per_minute * scale, elapsed);
    b.tokens = refill(b.tokens, limits_.tokens_per_minute * scale, elapsed);
  }
  b.scale = scale;
  b.updated = std::max(b.updated, now);
  return b;
}

RateLimiter::Decision RateLimiter::admit(const std::string& client, Clock::time_point now, double scale) {
  if (limits_.requests_per_minute <= 0 && limits_.tokens_per_minute <= 0) return {};
  std::lock_guard lock(mutex_);
  if (now - last_sweep_ >= kSweepInterval) sweep(now);
  Buckets& b = buckets_of(client, now, scale);
  const double requests_limit = limits_.requests_per_minute * b.scale, tokens_limit = limits_.tokens_per_minute * b.scale;
  Decision d;
  if (limits_.requests_per_minute > 0 && b.requests < 1.0) {
    d.allowed = false;
    d.retry_after_s = seconds_until(b.requests, 1.0, requests_limit);
    d.reason = "too many requests: the limit is " + std::to_string(static_cast<long>(requests_limit)) +
               " per minute for this client";
    return d;
  }
  if (limits_.tokens_per_minute > 0 && b.tokens < 1.0) {
    d.allowed = false;
    d.retry_after_s = seconds_until(b.tokens, 1.0, tokens_limit);
    d.reason = "too many generated tokens: the limit is " + std::to_string(static_cast<long>(tokens_limit)) +
               " per minute for this client";
    return d;
  }
  if (limits_.requests_per_minute > 0) b.requests -= 1.0;
  return d;
}

RateLimiter::Reservation RateLimiter::reserve(const std::string& client, size_t wanted, bool exact,
                                              Clock::time_point now, double scale) {
  Reservation r;
  r.tokens = std::max<size_t>(1, wanted);
  if (limits_.tokens_per_minute <= 0) return r;
  const double tokens_limit = limits_.tokens_per_minute * std::max(1.0, scale);
  const std::string limit = std::to_string(static_cast<long>(tokens_limit));
  if (exact && static_cast<double>(r.tokens) > tokens_limit) {
    r.allowed = false;
    r.never_fits = true;
    r.reason = "max_tokens (" + std::to_string(r.tokens) + ") is more than the limit of " + limit +
               " generated tokens per minute for this client; ask for at most " + limit;
    return r;
  }
  std::lock_guard lock(mutex_);
  Buckets& b = buckets_of(client, now, scale);
  const double available = std::floor(std::max(0.0, b.tokens));
  if (!exact) r.tokens = static_cast<size_t>(std::min<double>(static_cast<double>(r.tokens), std::max(1.0, available)));
  if (static_cast<double>(r.tokens) > available) {
    r.allowed = false;
    r.retry_after_s = seconds_until(b.tokens, static_cast<double>(r.tokens), tokens_limit);
    r.reason = "too many generated tokens: the limit is " + limit + " per minute for this client, and " +
               std::to_string(r.tokens) + " are asked for while " + std::to_string(static_cast<long>(available)) +
               " are left";
    return r;
  }
  b.tokens -= static_cast<double>(r.tokens);
  return r;
}

void RateLimiter::settle(const std::string& client, size_t reserved, size_t used, Clock::time_point now,
                         double scale) {
  if (limits_.tokens_per_minute <= 0 || used >= reserved) return;
  std::lock_guard lock(mutex_);
  Buckets& b = buckets_of(client, now, scale);
  b.tokens = std::min(limits_.tokens_per_minute * b.scale, b.tokens + static_cast<double>(reserved - used));
}

size_t RateLimiter::tracked_clients() const {
  std::lock_guard lock(mutex_);
  return clients_.size();
}

void RateLimiter::sweep(Clock::time_point now) {
  last_sweep_ = now;
  for (auto it = clients_.begin(); it != clients_.end();) {
    const double elapsed = std::max(0.0, std::chrono::duration<double>(now - it->second.updated).count());
    const double requests_limit = limits_.requests_per_minute * it->second.scale;
    const double tokens_limit = limits_.tokens_per_minute * it->second.scale;
    const bool requests_full =
        limits_.requests_per_minute <= 0 || refill(it->second.requests, requests_limit, elapsed) >= requests_limit;
    const bool tokens_full =
        limits_.tokens_per_minute <= 0 || refill(it->second.tokens, tokens_limit, elapsed) >= tokens_limit;
    it = (requests_full && tokens_full) ? clients_.erase(it) : std::next(it);
  }
}

}  // namespace omni::gateway
