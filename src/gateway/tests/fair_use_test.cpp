// Fair use: node keys in the access policy (a bound key names its node, a forged one is refused),
// the class and limits a contribution earns, scaled rate limits, and the gateway's contribution
// ledger (persistence, bound, corrupt file).
#include "gateway/fair_use.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>

#include "gateway/access_policy.h"
#include "gateway/contribution_ledger.h"
#include "gateway/rate_limiter.h"
#include "net/peer_id.h"

namespace omni::gateway {
namespace {

std::string peer_of(uint8_t seed) {
  std::array<uint8_t, 32> key{};
  key.fill(seed);
  return net::peer_id_from_public_key(key);
}

AccessRequest completion(std::optional<std::string_view> authorization) {
  AccessRequest r;
  r.method = "POST";
  r.path = "/v1/completions";
  r.host = "127.0.0.1:8080";
  r.authorization = authorization;
  return r;
}

TEST(FairUse, ANodeKeyNamesItsNodeAndAForgedKeyIsRefused) {
  const std::string node = peer_of(1);
  auto p = AccessPolicy::create({{"s3cret=" + node, "padded=="}, {}, {}}, "127.0.0.1");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->node_keys(), 1u);
  EXPECT_TRUE(p->requires_key()) << "'padded==' is a plain key (no peer id after '=')";
  const std::string bearer = "Bearer s3cret";
  auto d = p->decide(completion(bearer));
  EXPECT_FALSE(d.refusal);
  EXPECT_EQ(d.node_id, node);
  // The whole entry is not the key, another key is no node's, a forged key is refused.
  const std::string whole = "Bearer s3cret=" + node;
  EXPECT_TRUE(p->decide(completion(whole)).refusal.has_value());
  auto plain = p->decide(completion(std::string_view("Bearer padded==")));
  EXPECT_FALSE(plain.refusal);
  EXPECT_TRUE(plain.node_id.empty());
  auto forged = p->decide(completion(std::string_view("Bearer s3cret2")));
  ASSERT_TRUE(forged.refusal.has_value());
  EXPECT_EQ(forged.refusal->status, 401);
  EXPECT_TRUE(forged.node_id.empty());
}

TEST(FairUse, NodeKeysAloneLeaveAnonymousRequestsInTheFreeTier) {
  const std::string node = peer_of(2);
  auto p = AccessPolicy::create({{"k=" + node}, {}, {}}, "127.0.0.1");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_FALSE(p->requires_key());
  auto anonymous = p->decide(completion(std::nullopt));
  EXPECT_FALSE(anonymous.refusal);
  EXPECT_TRUE(anonymous.node_id.empty());
  EXPECT_EQ(p->decide(completion(std::string_view("Bearer k"))).node_id, node);
  auto forged = p->decide(completion(std::string_view("Bearer not-k")));
  ASSERT_TRUE(forged.refusal.has_value()) << "a wrong key is not served as anonymous";
  EXPECT_EQ(forged.refusal->status, 401);
}

TEST(FairUse, ContributionEarnsPriorityAndScaledLimits) {
  FairUseOptions o;
  o.work_unit = 1000;
  o.max_scale = 5;
  auto anonymous = classify("10.0.0.1", "", 0, o);
  EXPECT_FALSE(anonymous.priority);
  EXPECT_EQ(anonymous.rate_key, "10.0.0.1");
  EXPECT_DOUBLE_EQ(anonymous.limit_scale, 1.0);
  auto idle = classify("10.0.0.1", "node-a", 0, o);
  EXPECT_FALSE(idle.priority) << "a node that contributed nothing is the free tier";
  EXPECT_EQ(idle.rate_key, "10.0.0.1");
  auto some = classify("10.0.0.1", "node-a", 1500, o);
  EXPECT_TRUE(some.priority);
  EXPECT_EQ(some.rate_key, "node:node-a");
  EXPECT_DOUBLE_EQ(some.limit_scale, 1.0 + 1500.0 / 1000.0);
  auto more = classify("10.0.0.2", "node-a", 3000, o);
  EXPECT_GT(more.limit_scale, some.limit_scale) << "limits grow with the contribution";
  EXPECT_EQ(more.rate_key, some.rate_key) << "one bucket per node, whatever the address";
  EXPECT_DOUBLE_EQ(classify("10.0.0.1", "node-a", 1'000'000'000, o).limit_scale, o.max_scale);
}

TEST(FairUse, ScaledRateLimitsGrantInProportion) {
  using std::chrono::seconds;
  RateLimiter limiter({10, 100});
  const auto t0 = RateLimiter::Clock::time_point{} + seconds(1000);
  auto admitted = [&](const std::string& client, double scale) {
    int n = 0;
    while (n < 1000 && limiter.admit(client, t0, scale).allowed) ++n;
    return n;
  };
  EXPECT_EQ(admitted("free", 1), 10);
  EXPECT_EQ(admitted("node:a", 3), 30);
  // Tokens: a request for more than the free tier's minute never fits there, and fits scaled.
  EXPECT_TRUE(limiter.reserve("free2", 150, true, t0).never_fits);
  auto r = limiter.reserve("node:b", 150, true, t0, 2);
  EXPECT_TRUE(r.allowed) << r.reason;
  EXPECT_EQ(r.tokens, 150u);
  // And refills at the scaled rate: 2 × 100 per minute, so 30 s later 100 more.
  EXPECT_FALSE(limiter.reserve("node:b", 60, true, t0, 2).allowed);
  EXPECT_TRUE(limiter.reserve("node:b", 100, true, t0 + seconds(30), 2).allowed);
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/omni-contrib-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ContributionLedger, SumsWorkAndSurvivesReopening) {
  TempDir dir;
  {
    auto l = ContributionLedger::open(dir.path());
    ASSERT_TRUE(l.ok()) << l.error().message;
    ASSERT_TRUE((*l)->add("a", 100).ok());
    ASSERT_TRUE((*l)->add("a", 23).ok());
    ASSERT_TRUE((*l)->add("b", 7).ok());
    ASSERT_TRUE((*l)->add("c", 0).ok());
    EXPECT_EQ((*l)->nodes(), 2u);
  }
  auto l = ContributionLedger::open(dir.path());
  ASSERT_TRUE(l.ok());
  EXPECT_EQ((*l)->work_of("a"), 123u);
  EXPECT_EQ((*l)->work_of("b"), 7u);
  EXPECT_EQ((*l)->work_of("nobody"), 0u);
}

TEST(ContributionLedger, BoundedRowsKeepTheLargestContributors) {
  TempDir dir;
  auto l = ContributionLedger::open(dir.path(), 4);
  ASSERT_TRUE(l.ok());
  ASSERT_TRUE((*l)->add("big", 1'000'000).ok());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE((*l)->add("sybil" + std::to_string(i), 1 + i).ok());
  EXPECT_EQ((*l)->nodes(), 4u);
  EXPECT_EQ((*l)->work_of("big"), 1'000'000u);
  EXPECT_EQ((*l)->work_of("sybil99"), 100u);
  EXPECT_EQ((*l)->work_of("sybil0"), 0u);
  auto again = ContributionLedger::open(dir.path(), 4);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->nodes(), 4u);
}

TEST(ContributionLedger, CorruptFileGivesAFreshLedger) {
  TempDir dir;
  {
    std::ofstream f(dir.path() + "/" + ContributionLedger::kFileName, std::ios::binary);
    for (int i = 0; i < 2048; ++i) f.put(static_cast<char>((i * 31) & 0xff));
  }
  auto l = ContributionLedger::open(dir.path());
  ASSERT_TRUE(l.ok()) << l.error().message;
  EXPECT_FALSE((*l)->recovered().empty());
  EXPECT_EQ((*l)->nodes(), 0u);
  ASSERT_TRUE((*l)->add("a", 5).ok());
}

}  // namespace
}  // namespace omni::gateway
