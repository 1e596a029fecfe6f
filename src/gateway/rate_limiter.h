// RateLimiter: per-client token buckets, one on requests and one on generated tokens.
//
// Each bucket holds up to one minute's allowance and refills continuously at limit/60 per second,
// so a client may burst a minute's worth and then goes at the configured rate. A request needs one
// request token and a tokens bucket that is not empty; generated tokens are charged as they are
// produced (a request's length is unknown in advance), so a long answer can drive the bucket below
// zero and the client's next request waits until it is paid back. A refusal says how long to wait
// (Retry-After). A limit of 0 switches that bucket off.
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
  Decision admit(const std::string& client, Clock::time_point now);
  // Charges `tokens` generated for `client`.
  void charge_tokens(const std::string& client, double tokens, Clock::time_point now);

  size_t tracked_clients() const;
  const RateLimits& limits() const { return limits_; }

 private:
  struct Buckets {
    double requests = 0;
    double tokens = 0;
    Clock::time_point updated;
  };

  Buckets& buckets_of(const std::string& client, Clock::time_point now);  // refilled to `now`
  void sweep(Clock::time_point now);

  RateLimits limits_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Buckets> clients_;
  Clock::time_point last_sweep_{};
};

}  // namespace omni::gateway
