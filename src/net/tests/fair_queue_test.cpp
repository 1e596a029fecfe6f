// FairQueue (deficit round robin): clients share the cost served equally whatever they offer, jobs
// of one client keep their order, a waiting client is served within one round, idle credit is lost.
#include "net/fair_queue.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace omni::net {
namespace {

struct Job {
  std::string client;
  uint64_t cost;
  int seq;
};

TEST(FairQueue, TenToOneOfferedLoadGetsEqualService) {
  const uint64_t quantum = 512;
  FairQueue<Job> q(quantum);
  // A offers ten times B's load: ten jobs for each of B's, of random costs (the tokens of a call).
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint64_t> cost(1, 512);
  int seq = 0;
  auto offer = [&](const std::string& c, int n) {
    for (int i = 0; i < n; ++i) {
      const uint64_t k = cost(rng);
      q.push(c, k, Job{c, k, seq++});
    }
  };
  offer("A", 1000);
  offer("B", 100);
  std::map<std::string, uint64_t> served;
  std::map<std::string, int> jobs;
  // Serve while both still have work: the share is measured only under contention.
  while (q.queued_cost("A") > 0 && q.queued_cost("B") > 0) {
    auto j = q.pop();
    ASSERT_TRUE(j);
    served[j->client] += j->cost;
    jobs[j->client]++;
  }
  // FIFO would have served A ten jobs for each of B's; DRR serves equal cost, give or take the
  // credit one turn can carry (a quantum plus a job).
  const double a = static_cast<double>(served["A"]), b = static_cast<double>(served["B"]);
  EXPECT_GT(b, 0);
  EXPECT_LE(std::abs(a - b), 2.0 * quantum) << "A " << a << " B " << b;
  EXPECT_LT(jobs["A"], 2 * jobs["B"]);
}

TEST(FairQueue, ASmallClientWaitsAtMostOneTurnOfEachOther) {
  // B is a closed loop (one 1-token job at a time, the next pushed when it is served), A floods with
  // full 512-token batches: B's job runs after at most one of A's.
  FairQueue<Job> q(512);
  int seq = 0;
  for (int i = 0; i < 64; ++i) q.push("A", 512, Job{"A", 512, seq++});
  q.push("B", 1, Job{"B", 1, seq++});
  int a_between = 0, b_served = 0, worst = 0;
  for (int i = 0; i < 60; ++i) {
    auto j = q.pop();
    ASSERT_TRUE(j);
    if (j->client == "A") {
      ++a_between;
      q.push("A", 512, Job{"A", 512, seq++});  // A keeps its backlog
    } else {
      worst = std::max(worst, a_between);
      a_between = 0;
      ++b_served;
      q.push("B", 1, Job{"B", 1, seq++});
    }
  }
  EXPECT_LE(worst, 1);
  EXPECT_GE(b_served, 29);  // every other pass; FIFO would have served B once in 65
}

TEST(FairQueue, JobsOfOneClientKeepTheirOrder) {
  FairQueue<Job> q(10);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> pick(0, 2);
  std::uniform_int_distribution<uint64_t> cost(1, 30);  // some bigger than the quantum
  std::map<std::string, int> last;
  for (int i = 0; i < 300; ++i) {
    const std::string c(1, static_cast<char>('a' + pick(rng)));
    q.push(c, cost(rng), Job{c, 0, i});
  }
  EXPECT_EQ(q.size(), 300u);
  int n = 0;
  while (auto j = q.pop()) {
    auto it = last.find(j->client);
    if (it != last.end()) {
      EXPECT_LT(it->second, j->seq);
    }
    last[j->client] = j->seq;
    ++n;
  }
  EXPECT_EQ(n, 300);
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.queued_cost(), 0u);
}

TEST(FairQueue, CreditIsNotSavedWhileIdle) {
  // A runs alone for a while, then B joins: A's past turns give it no head start over B.
  FairQueue<Job> q(4);
  for (int i = 0; i < 20; ++i) {
    q.push("A", 1, Job{"A", 1, i});
    ASSERT_TRUE(q.pop());
  }
  for (int i = 0; i < 40; ++i) q.push("A", 1, Job{"A", 1, i});
  for (int i = 0; i < 40; ++i) q.push("B", 1, Job{"B", 1, i});
  std::map<std::string, int> served;
  for (int i = 0; i < 40; ++i) served[q.pop()->client]++;
  EXPECT_NEAR(served["A"], 20, 4);
  EXPECT_NEAR(served["B"], 20, 4);
}

TEST(FairQueue, CountsQueuedCostPerClient) {
  FairQueue<Job> q(100);
  EXPECT_FALSE(q.pop());
  q.push("A", 30, Job{"A", 30, 0});
  q.push("A", 20, Job{"A", 20, 1});
  q.push("B", 7, Job{"B", 7, 2});
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.queued_cost(), 57u);
  EXPECT_EQ(q.queued_cost("A"), 50u);
  EXPECT_EQ(q.queued_cost("B"), 7u);
  EXPECT_EQ(q.queued_cost("C"), 0u);
  auto j = q.pop();
  EXPECT_EQ(q.queued_cost(j->client), j->client == "A" ? 20u : 0u);
  EXPECT_EQ(q.queued_cost(), 57u - j->cost);
  q.clear();
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.queued_cost("A"), 0u);
  EXPECT_FALSE(q.pop());
}

}  // namespace
}  // namespace omni::net
