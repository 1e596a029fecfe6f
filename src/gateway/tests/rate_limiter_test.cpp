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

TEST(RateLimiter, AReservationIsTakenUpFrontSoConcurrentRequestsCannotOverdraw) {
  RateLimiter limiter({0, 100});  // 100 generated tokens per minute
  const auto t0 = Clock::now();
  auto first = limiter.reserve("a", 60, /*exact=*/true, t0);
  ASSERT_TRUE(first.allowed);
  EXPECT_EQ(first.tokens, 60u);
  // Before the first has generated anything, a second asking for 60 does not fit in the 40 left.
  auto second = limiter.reserve("a", 60, true, t0);
  EXPECT_FALSE(second.allowed);
  EXPECT_FALSE(second.never_fits);
  EXPECT_EQ(second.retry_after_s, 12);  // 20 tokens short at 100/60 per second
  EXPECT_NE(second.reason.find("40 are left"), std::string::npos) << second.reason;
  EXPECT_TRUE(limiter.reserve("a", 40, true, t0).allowed);
  // Another client has its own allowance.
  EXPECT_TRUE(limiter.reserve("b", 100, true, t0).allowed);
}

TEST(RateLimiter, TheUnusedPartOfAReservationIsGivenBack) {
  RateLimiter limiter({0, 100});
  const auto t0 = Clock::now();
  auto r = limiter.reserve("a", 100, true, t0);
  ASSERT_TRUE(r.allowed);
  EXPECT_FALSE(limiter.reserve("a", 1, true, t0).allowed);
  limiter.settle("a", r.tokens, 30, t0);  // stopped after 30
  EXPECT_FALSE(limiter.reserve("a", 71, true, t0).allowed);
  EXPECT_TRUE(limiter.reserve("a", 70, true, t0).allowed);
  // Settling never fills a bucket past a minute's allowance.
  RateLimiter other({0, 100});
  auto whole = other.reserve("a", 50, true, t0);
  other.settle("a", whole.tokens, 0, t0 + seconds(120));  // refilled meanwhile: 50 back would make 150
  EXPECT_TRUE(other.reserve("a", 100, true, t0 + seconds(120)).allowed);
  EXPECT_FALSE(other.reserve("a", 1, true, t0 + seconds(120)).allowed);
}

TEST(RateLimiter, AnOpenLengthIsCappedAtWhatTheBucketHolds) {
  RateLimiter limiter({0, 100});
  const auto t0 = Clock::now();
  ASSERT_TRUE(limiter.reserve("a", 70, true, t0).allowed);
  auto open = limiter.reserve("a", 4000, /*exact=*/false, t0);  // no max_tokens: the context's room
  ASSERT_TRUE(open.allowed);
  EXPECT_EQ(open.tokens, 30u);
  auto empty = limiter.reserve("a", 4000, false, t0);
  EXPECT_FALSE(empty.allowed);
  EXPECT_EQ(empty.retry_after_s, 1);  // one token's worth: 0.6 s, rounded up
  EXPECT_TRUE(limiter.reserve("a", 4000, false, t0 + seconds(3)).allowed);
}

TEST(RateLimiter, MoreThanAMinutesAllowanceNeverFits) {
  RateLimiter limiter({0, 100});
  auto r = limiter.reserve("a", 1500, true, Clock::now());
  EXPECT_FALSE(r.allowed);
  EXPECT_TRUE(r.never_fits);
  EXPECT_EQ(r.retry_after_s, 0);
  EXPECT_NE(r.reason.find("at most 100"), std::string::npos) << r.reason;
}

TEST(RateLimiter, AnEmptyTokensBucketRefusesAtAdmission) {
  RateLimiter limiter({0, 60});  // one token per second
  const auto t0 = Clock::now();
  ASSERT_TRUE(limiter.reserve("a", 60, true, t0).allowed);
  auto d = limiter.admit("a", t0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_s, 1);
  EXPECT_NE(d.reason.find("tokens"), std::string::npos);
  EXPECT_TRUE(limiter.admit("a", t0 + seconds(1)).allowed);
}

TEST(RateLimiter, WithoutATokensLimitReservationsAreFullAndUntracked) {
  RateLimiter limiter({0, 0});
  auto r = limiter.reserve("a", 4000, false, Clock::now());
  EXPECT_TRUE(r.allowed);
  EXPECT_EQ(r.tokens, 4000u);
  limiter.settle("a", r.tokens, 3, Clock::now());
  EXPECT_EQ(limiter.tracked_clients(), 0u);
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
