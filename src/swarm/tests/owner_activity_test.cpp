#include "swarm/owner_activity.h"

#include <gtest/gtest.h>

#include <deque>

namespace omni::swarm {
namespace {

using namespace std::chrono_literals;

// Counters given by the test, one per read.
class FakeCpu final : public CpuSource {
 public:
  explicit FakeCpu(std::deque<CpuCounters>* queue) : queue_(queue) {}
  Result<CpuCounters> read() override {
    if (queue_->empty()) return Error{ErrorCode::Corruption, "no more samples"};
    CpuCounters c = queue_->front();
    queue_->pop_front();
    return c;
  }

 private:
  std::deque<CpuCounters>* queue_;
};

// Appends a second of a 2-CPU machine (200 ticks) where others used `others` ticks and the node `own`.
void second(std::deque<CpuCounters>& q, CpuCounters& c, uint64_t others, uint64_t own) {
  c.machine_total += 200;
  c.machine_busy += others + own;
  c.own += own;
  q.push_back(c);
}

TEST(OwnerActivity, PausesAfterTheOthersStayBusyAndResumesAfterTheyStayIdle) {
  std::deque<CpuCounters> q;
  CpuCounters c;
  q.push_back(c);
  OwnerActivity a({.busy_fraction = 0.5, .busy_for_s = 3, .idle_for_s = 5}, std::make_unique<FakeCpu>(&q));
  auto t = OwnerActivity::Clock::time_point{};
  ASSERT_TRUE(a.sample(t));
  // The node itself at full load never counts: others 10 %.
  second(q, c, 20, 180);
  auto s = a.sample(t += 1s);
  ASSERT_TRUE(s);
  EXPECT_NEAR(s->others, 0.1, 1e-9);
  EXPECT_FALSE(s->busy);
  // Others at 80 %: busy once that has lasted 3 s (the first busy sample starts the count).
  for (int i = 0; i < 3; ++i) {
    second(q, c, 160, 0);
    s = a.sample(t += 1s);
    ASSERT_TRUE(s);
    EXPECT_NEAR(s->others, 0.8, 1e-9);
    EXPECT_FALSE(s->busy) << i;
  }
  second(q, c, 160, 0);
  s = a.sample(t += 1s);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->busy);
  EXPECT_TRUE(s->changed);
  // A dip shorter than idle_for_s does not resume; nor does one busy second reset into a pause.
  for (int i = 0; i < 4; ++i) {
    second(q, c, 10, 0);
    s = a.sample(t += 1s);
    EXPECT_TRUE(s->busy);
  }
  second(q, c, 190, 0);
  s = a.sample(t += 1s);
  EXPECT_TRUE(s->busy);
  EXPECT_FALSE(s->changed);
  // Idle for 5 s: resumes.
  for (int i = 0; i < 5; ++i) {
    second(q, c, 10, 0);
    s = a.sample(t += 1s);
    EXPECT_TRUE(s->busy) << i;
  }
  second(q, c, 10, 0);
  s = a.sample(t += 1s);
  EXPECT_FALSE(s->busy);
  EXPECT_TRUE(s->changed);
}

TEST(OwnerActivity, ASourceErrorIsReturned) {
  std::deque<CpuCounters> q;
  OwnerActivity a({}, std::make_unique<FakeCpu>(&q));
  auto s = a.sample(OwnerActivity::Clock::now());
  ASSERT_FALSE(s);
  EXPECT_TRUE(s.error().is(ErrorCode::Corruption));
}

TEST(CpuCounters, ParsesProcStatAndSelfStat) {
  const std::string stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
  // A command name with spaces and a ')' in it.
  const std::string self = "4242 (omni (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 77 33 0 0 20 0 3 0\n";
  auto c = parse_cpu_counters(stat, self);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->machine_busy, 100u + 5 + 50 + 3 + 2 + 1);
  EXPECT_EQ(c->machine_total, c->machine_busy + 1000 + 20);
  EXPECT_EQ(c->own, 77u + 33);
  EXPECT_FALSE(parse_cpu_counters("intr 1 2\n", self));
  EXPECT_FALSE(parse_cpu_counters("cpu  1 2 3\n", self));
  EXPECT_FALSE(parse_cpu_counters(stat, "4242 omni S 1"));
  EXPECT_FALSE(parse_cpu_counters(stat, "4242 (omni) S 1 2 3"));
}

TEST(CpuCounters, TheRealProcFilesParse) {
  auto c = proc_cpu_source()->read();
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_GT(c->machine_total, c->machine_busy);
}

}  // namespace
}  // namespace omni::swarm
