// RateLimiter: per-client token buckets, one on requests and one on generated tokens.
//
// Each bucket holds up to one minute's allowance and refills continuously at limit/60 per second,
// so a client may burst a minute's worth and then goes at the configured rate. A limit of 0
// switches that bucket off.
//
// A request passes two gates. admit(), before any work is spent on it (before its body is parsed
// or tokenized): it takes one request token, and the tokens bucket must not be empty. reserve(),
// once the most it may generate is known: that many tokens are taken from the bucket up front, so
// concurrent or long requests cannot overdraw it; what the generation did not use is given back
// by settle() when it ends. A request that names its length (max_tokens) gets all of it or is
// refused; one that leaves it open is capped at what the bucket holds. A refusal says how long to
// wait (Retry-After), or that the request can never fit (more than a minute's allowance).
//
// Fair use (fair_use.h): a client's limits may be scaled (a contributing node's requests get
// `scale` times the configured limits, scale >= 1); the scale is the caller's to pass on every call,
// and a bucket holds and refills by the scale of its latest call.
//
// Memory is bounded: a bucket that has refilled completely is the same as no bucket and is dropped
// by a periodic sweep. Thread-safe. Time is passed in, so tests need no sleeping.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

namespace omni::gateway {

struct RateLimits {
  double requests_per_minute = 0;  // 0: unlimited
  double tokens_per_minute = 0;    // generated tokens; 0: unlimited
};

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  explicit RateLimiter(RateLimits limits) : limits_(limits) {}

  struct Decision {
    bool allowed = true;
    int retry_after_s = 0;  // when refused: whole seconds until the request would be admitted
    std::string reason;     // when refused: which limit, for the error message
  };

  // Takes one request token from `client`'s bucket if the request may go ahead.
  Decision admit(const std::string& client, Clock::time_point now, double scale = 1);

  struct Reservation {
    bool allowed = true;
    size_t tokens = 0;       // when allowed: what the request may generate (settle() with it)
    bool never_fits = false; // refused because `wanted` is more than a full bucket holds
    int retry_after_s = 0;   // refused and it may fit later: whole seconds until it does
    std::string reason;
  };
  // Takes up to `wanted` generated tokens (>= 1) from `client`'s bucket. exact: all of `wanted`
  // or nothing (the client asked for that many); otherwise as many as the bucket holds, at least
  // one. Without a tokens limit every reservation is granted in full and nothing is tracked.
  Reservation reserve(const std::string& client, size_t wanted, bool exact, Clock::time_point now, double scale = 1);
  // Gives back what a reservation of `reserved` tokens did not use (`used` of them).
  void settle(const std::string& client, size_t reserved, size_t used, Clock::time_point now, double scale = 1);

  size_t tracked_clients() const;
  const RateLimits& limits() const { return limits_; }

 private:
  struct Buckets {
    double requests = 0;
    double tokens = 0;
    double scale = 1;
    Clock::time_point updated;
  };

  Buckets& buckets_of(const std::string& client, Clock::time_point now, double scale);  // refilled to `now`
  void sweep(Clock::time_point now);

  RateLimits limits_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Buckets> clients_;
  Clock::time_point last_sweep_{};
};

}  // namespace omni::gateway
