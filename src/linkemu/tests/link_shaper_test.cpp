#include "linkemu/link_shaper.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace omni::linkemu {
namespace {

constexpr Nanos kMs = 1'000'000;

TEST(LinkShaper, DelayOnlyDeliversOneDelayAfterArrival) {
  Bottleneck link(0);
  LinkShaper shaper({.delay_ns = 20 * kMs}, 1, link);
  std::deque<Segment> out;
  shaper.schedule(5 * kMs, 100, out);
  shaper.schedule(7 * kMs, 50, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].end, 100u);
  EXPECT_EQ(out[0].due, 25 * kMs);
  EXPECT_EQ(out[1].end, 150u);
  EXPECT_EQ(out[1].due, 27 * kMs);
}

TEST(LinkShaper, RateAddsSerializationAndQueueing) {
  // 20 Mbit/s: 2500 bytes per ms, so a segment is 2500 bytes and takes 1 ms on the link.
  const DirectionParams params{.delay_ns = 10 * kMs, .rate_bits_per_s = 20e6};
  Bottleneck link(params.rate_bits_per_s);
  LinkShaper shaper(params, 1, link);
  EXPECT_EQ(shaper.segment_bytes(), 2500u);
  std::deque<Segment> out;
  shaper.schedule(0, 10'000, out);
  ASSERT_EQ(out.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(out[i].end, 2500u * (i + 1));
    EXPECT_EQ(out[i].due, (i + 1) * kMs + 10 * kMs) << i;
  }
  // Arrives while the link is still busy until 4 ms: queued behind the first 10 000 bytes.
  shaper.schedule(kMs + kMs / 2, 2500, out);
  EXPECT_EQ(out.back().due, 5 * kMs + 10 * kMs);
  // The link went idle: only serialization and propagation.
  shaper.schedule(100 * kMs, 1250, out);
  EXPECT_EQ(out.back().due, 100 * kMs + kMs / 2 + 10 * kMs);
}

TEST(LinkShaper, StreamsShareTheBottleneck) {
  const DirectionParams params{.delay_ns = 0, .rate_bits_per_s = 8e6};  // 1 byte per µs
  Bottleneck link(params.rate_bits_per_s);
  LinkShaper a(params, 1, link);
  LinkShaper b(params, 2, link);
  std::deque<Segment> out_a, out_b;
  a.schedule(0, 1000, out_a);
  b.schedule(0, 1000, out_b);
  EXPECT_EQ(out_a.back().due, 1000 * 1000);
  EXPECT_EQ(out_b.back().due, 2000 * 1000);  // waited for a's bytes
}

TEST(LinkShaper, JitterVariesDelayButNeverReorders) {
  const DirectionParams params{.delay_ns = 10 * kMs, .jitter_ns = 4 * kMs};
  Bottleneck link(0);
  LinkShaper shaper(params, 7, link);
  std::deque<Segment> out;
  Nanos previous_due = 0;
  for (int i = 0; i < 2000; ++i) {
    const Nanos arrival = i * kMs / 4;  // closer than the jitter range: the clamp matters
    shaper.schedule(arrival, 10, out);
    const Nanos due = out.back().due;
    EXPECT_GE(due, previous_due);
    EXPECT_GE(due, arrival + 6 * kMs);
    EXPECT_LE(due, arrival + 14 * kMs);  // the clamp only waits for bytes due by then
    previous_due = due;
  }
  // Spaced far apart, the clamp never applies: delays spread over [delay - J, delay + J].
  Bottleneck sparse_link(0);
  LinkShaper sparse(params, 8, sparse_link);
  std::deque<Segment> sparse_out;
  Nanos lowest = 1'000'000 * kMs, highest = 0;
  for (int i = 0; i < 200; ++i) {
    const Nanos arrival = i * 100 * kMs;
    sparse.schedule(arrival, 10, sparse_out);
    const Nanos delay = sparse_out.back().due - arrival;
    EXPECT_GE(delay, 6 * kMs);
    EXPECT_LE(delay, 14 * kMs);
    lowest = std::min(lowest, delay);
    highest = std::max(highest, delay);
  }
  EXPECT_LT(lowest, 7 * kMs);
  EXPECT_GT(highest, 13 * kMs);
}

TEST(LinkShaper, SameSeedSameSchedule) {
  const DirectionParams params{.delay_ns = 10 * kMs, .jitter_ns = 5 * kMs, .rate_bits_per_s = 1e6};
  Bottleneck link1(params.rate_bits_per_s), link2(params.rate_bits_per_s);
  LinkShaper a(params, 42, link1), b(params, 42, link2);
  std::deque<Segment> out_a, out_b;
  for (int i = 0; i < 50; ++i) {
    a.schedule(i * kMs, 3000, out_a);
    b.schedule(i * kMs, 3000, out_b);
  }
  ASSERT_EQ(out_a.size(), out_b.size());
  for (std::size_t i = 0; i < out_a.size(); ++i) EXPECT_EQ(out_a[i].due, out_b[i].due);
}

TEST(LinkShaper, CloseFollowsTheDataByOnePropagationDelay) {
  const DirectionParams params{.delay_ns = 10 * kMs, .rate_bits_per_s = 20e6};
  Bottleneck link(params.rate_bits_per_s);
  LinkShaper shaper(params, 1, link);
  EXPECT_EQ(shaper.schedule_close(3 * kMs), 13 * kMs);  // idle link
  LinkShaper busy(params, 1, link);
  std::deque<Segment> out;
  busy.schedule(100 * kMs, 5000, out);                   // on the link until 102 ms
  EXPECT_EQ(busy.schedule_close(100 * kMs), 112 * kMs);
  EXPECT_GE(busy.schedule_close(100 * kMs), out.back().due);
}

TEST(LinkShaper, PassThroughSkipsTheLinkButKeepsTheOrder) {
  const DirectionParams params{.delay_ns = 10 * kMs, .rate_bits_per_s = 8e6};  // 1 byte per µs
  Bottleneck link(params.rate_bits_per_s);
  LinkShaper shaper(params, 1, link);
  std::deque<Segment> out;
  shaper.pass_through(0, 1'000'000, out);  // a whole second of link time, delivered at once
  EXPECT_EQ(out.back().due, 0);
  EXPECT_EQ(out.back().end, 1'000'000u);
  shaper.schedule(kMs, 1000, out);         // the link was idle: 1 ms serialization + 10 ms
  EXPECT_EQ(out.back().due, 12 * kMs);
  EXPECT_EQ(out.back().end, 1'001'000u);
  shaper.pass_through(2 * kMs, 10, out);   // must not overtake the shaped bytes
  EXPECT_EQ(out.back().due, 12 * kMs);
  EXPECT_EQ(shaper.schedule_close(3 * kMs, false), 12 * kMs);
}

TEST(LinkShaper, QueueLimitIsTwiceTheBandwidthDelayProductAtLeastOneMiB) {
  EXPECT_EQ(LinkShaper::default_queue_limit({}), 1u << 20);
  EXPECT_EQ(LinkShaper::default_queue_limit({.delay_ns = 10 * kMs, .rate_bits_per_s = 20e6}), 1u << 20);
  // 100 Mbit/s × 100 ms round trip = 1.25 MB; twice that.
  EXPECT_EQ(LinkShaper::default_queue_limit({.delay_ns = 50 * kMs, .rate_bits_per_s = 100e6}), 2'500'000u);
}

TEST(LinkShaper, SegmentSizeFollowsTheRate) {
  Bottleneck link(0);
  EXPECT_EQ(LinkShaper({.rate_bits_per_s = 1e6}, 1, link).segment_bytes(), 1448u);  // floor: one packet
  EXPECT_EQ(LinkShaper({.rate_bits_per_s = 10e9}, 1, link).segment_bytes(), 65536u);
  EXPECT_EQ(LinkShaper({}, 1, link).segment_bytes(), 65536u);
}

}  // namespace
}  // namespace omni::linkemu
