#include "net/bandwidth.h"

#include <gtest/gtest.h>

namespace omni::net {
namespace {

constexpr Nanos kSecond = 1'000'000'000;

TEST(TokenBucket, StartsFullAndSpendsTheBurstAtOnce) {
  TokenBucket b(1000, 500, 0);
  EXPECT_EQ(b.take(300, 0), 0);
  EXPECT_EQ(b.take(200, 0), 0);
  // Empty now: 100 more bytes are owed 100 / 1000 s.
  EXPECT_EQ(b.take(100, 0), kSecond / 10);
}

TEST(TokenBucket, TakersQueueBehindEachOther) {
  TokenBucket b(1000, 100, 0);
  EXPECT_EQ(b.take(100, 0), 0);
  EXPECT_EQ(b.take(1000, 0), kSecond);
  // A second taker at the same moment waits for the first one's bytes too.
  EXPECT_EQ(b.take(500, 0), kSecond + kSecond / 2);
}

TEST(TokenBucket, RefillsAtTheRateUpToTheBurst) {
  TokenBucket b(1000, 100, 0);
  EXPECT_EQ(b.take(100, 0), 0);
  // 50 ms later 50 bytes are back.
  EXPECT_EQ(b.take(50, kSecond / 20), 0);
  EXPECT_EQ(b.take(50, kSecond / 20), kSecond / 20);
  // After a long idle time, no more than the burst is saved up.
  EXPECT_EQ(b.take(100, 100 * kSecond), 0);
  EXPECT_EQ(b.take(1, 100 * kSecond), kSecond / 1000);
}

TEST(TokenBucket, LongRunRateIsTheCap) {
  // Pieces moved as soon as the bucket allows: the total time is (bytes - burst) / rate.
  const uint64_t rate = 250'000, burst = default_burst(rate);
  TokenBucket b(rate, burst, 0);
  Nanos now = 0;
  uint64_t moved = 0;
  while (moved < 10 * rate) {
    now += b.take(4096, now);
    moved += 4096;
  }
  const double expected = static_cast<double>(moved - burst) / static_cast<double>(rate) * 1e9;
  EXPECT_NEAR(static_cast<double>(now), expected, 1e6);  // within 1 ms over 10 s
}

TEST(Bandwidth, UncappedDirectionNeverWaits) {
  Bandwidth b(0, 1000);
  EXPECT_EQ(b.take_upload(1 << 30), 0);
  EXPECT_EQ(b.upload_piece(), UINT64_MAX);
  EXPECT_EQ(b.download_piece(), default_burst(1000) / 4);
  EXPECT_EQ(b.take_download(default_burst(1000)), 0);
  EXPECT_GT(b.take_download(1000), 0);
}

}  // namespace
}  // namespace omni::net
