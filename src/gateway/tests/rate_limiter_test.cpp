#include "gateway/rate_limiter.h"

#include <gtest/gtest.h>

namespace omni::gateway {
namespace {

using Clock = RateLimiter::Clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(RateLimiter, UnlimitedAdmitsEverythingAndTracksNobody) {
  RateLimiter limiter({0, 0});
  const auto t = Clock::now();
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(limiter.admit("1.2.3.4", t).allowed);
  EXPECT_EQ(limiter.tracked_clients(), 0u);
}

TEST(RateLimiter, RequestBucketAllowsABurstThenTheRate) {
  RateLimiter limiter({60, 0});  // one per second, burst 60
  const auto t0 = Clock::now();
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(limiter.admit("a", t0).allowed) << i;
  auto refused = limiter.admit("a", t0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after_s, 1);
  EXPECT_NE(refused.reason.find("60 per minute"), std::string::npos);
  EXPECT_FALSE(limiter.admit("a", t0 + milliseconds(500)).allowed);  // half a token is not enough
  EXPECT_TRUE(limiter.admit("a", t0 + milliseconds(1001)).allowed);
  EXPECT_FALSE(limiter.admit("a", t0 + milliseconds(1002)).allowed);
  // Another client has its own bucket.
  EXPECT_TRUE(limiter.admit("b", t0).allowed);
}

TEST(RateLimiter, RetryAfterCoversTheDeficit) {
  RateLimiter limiter({6, 0});  // one per 10 s
  const auto t0 = Clock::now();
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(limiter.admit("a", t0).allowed);
  auto d = limiter.admit("a", t0);
  ASSERT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_s, 10);
  EXPECT_FALSE(limiter.admit("a", t0 + seconds(9)).allowed);
  EXPECT_TRUE(limiter.admit("a", t0 + seconds(10)).allowed);
}

TEST(RateLimiter, GeneratedTokensGoIntoDebtAndBlockUntilRepaid) {
  RateLimiter limiter({0, 600});  // 10 tokens per second, burst 600
  const auto t0 = Clock::now();
  ASSERT_TRUE(limiter.admit("a", t0).allowed);
  limiter.charge_tokens("a", 700, t0);  // a long answer: 100 tokens in debt
  auto d = limiter.admit("a", t0);
  ASSERT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_s, 11);  // (100 + 1) / 10 per second, rounded up
  EXPECT_NE(d.reason.find("tokens"), std::string::npos);
  EXPECT_FALSE(limiter.admit("a", t0 + seconds(10)).allowed);
  EXPECT_TRUE(limiter.admit("a", t0 + seconds(11)).allowed);
}

TEST(RateLimiter, BucketsNeverHoldMoreThanAMinute) {
  RateLimiter limiter({60, 0});
  const auto t0 = Clock::now();
  ASSERT_TRUE(limiter.admit("a", t0).allowed);
  const auto later = t0 + std::chrono::hours(10);
  int admitted = 0;
  while (limiter.admit("a", later).allowed) ++admitted;
  EXPECT_EQ(admitted, 60);
}

TEST(RateLimiter, IdleClientsAreForgotten) {
  RateLimiter limiter({60, 0});
  const auto t0 = Clock::now();
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limiter.admit("client" + std::to_string(i), t0).allowed);
  EXPECT_EQ(limiter.tracked_clients(), 1000u);
  // Two minutes on, every bucket has refilled; the sweep (every 30 s) drops them.
  ASSERT_TRUE(limiter.admit("new", t0 + seconds(120)).allowed);
  EXPECT_EQ(limiter.tracked_clients(), 1u);
}

}  // namespace
}  // namespace omni::gateway
