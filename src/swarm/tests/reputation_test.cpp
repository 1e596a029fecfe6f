// The reputation store: scores from events, persistence across reopening, the bound on rows, a
// corrupt file replaced by a fresh store, exclusions.
#include <gtest/gtest.h>

#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "swarm/reputation.h"

namespace omni::swarm {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/omni-reputation-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

constexpr int64_t kNow = 1'800'000'000;

TEST(Reputation, UnknownPeerScoresOneAndFailuresLowerIt) {
  auto store = ReputationStore::open("");
  ASSERT_TRUE(store.ok());
  auto& s = **store;
  EXPECT_DOUBLE_EQ(s.score("a", kNow), 1.0);
  ASSERT_TRUE(s.record("a", PeerEvent::Answered, kNow).ok());
  EXPECT_DOUBLE_EQ(s.score("a", kNow), 1.0);
  ASSERT_TRUE(s.record("b", PeerEvent::TimedOut, kNow).ok());
  // reliability = (0 + prior) / (0 + 3 + prior): the formula of reputation.h, computed here.
  const double p = ReputationStore::kPriorGood;
  EXPECT_NEAR(s.score("b", kNow), p / (3 + p), 1e-12);
  ASSERT_TRUE(s.record("c", PeerEvent::Unreachable, kNow).ok());
  EXPECT_GT(s.score("c", kNow), s.score("b", kNow)) << "a refused probe costs less than a stall";
  // Good events pull a peer back up; time makes an old failure fade.
  const double before = s.score("b", kNow);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(s.record("b", PeerEvent::Served, kNow).ok());
  EXPECT_GT(s.score("b", kNow), before);
  const double day = s.half_life_s();
  ASSERT_TRUE(s.record("d", PeerEvent::Unreachable, kNow).ok());
  ASSERT_TRUE(s.record("d", PeerEvent::Unreachable, kNow).ok());
  const double fresh = s.score("d", kNow);
  const double later = s.score("d", kNow + static_cast<int64_t>(day));
  // One half-life halves the bad count: p / (2 + p) becomes p / (1 + p).
  EXPECT_NEAR(fresh, p / (2 + p), 1e-12);
  EXPECT_NEAR(later, p / (1 + p), 1e-12);
  EXPECT_EQ(s.find("d")->unreachable, 2u);
  EXPECT_DOUBLE_EQ(s.find("a")->uptime(), 1.0);
  EXPECT_DOUBLE_EQ(s.find("c")->uptime(), 0.0);
}

TEST(Reputation, SpeedBelowClaimLowersTheScoreAndAboveItGainsNothing) {
  auto store = ReputationStore::open("");
  ASSERT_TRUE(store.ok());
  auto& s = **store;
  ASSERT_TRUE(s.record_speed("slow", 250, 1000, kNow).ok());
  EXPECT_NEAR(s.score("slow", kNow), 0.25, 1e-12);
  ASSERT_TRUE(s.record_speed("fast", 5000, 1000, kNow).ok());
  EXPECT_DOUBLE_EQ(s.score("fast", kNow), 1.0);
  ASSERT_TRUE(s.record_speed("liar", 1, 1e8, kNow).ok());
  EXPECT_DOUBLE_EQ(s.score("liar", kNow), ReputationStore::kMinSpeed);
  ASSERT_TRUE(s.record_speed("none", 0, 1000, kNow).ok());
  EXPECT_FALSE(s.find("none").has_value()) << "a measurement of nothing is no measurement";
}

TEST(Reputation, FaultExcludesWithReasonAndTimeUntilPardoned) {
  auto store = ReputationStore::open("");
  ASSERT_TRUE(store.ok());
  auto& s = **store;
  ASSERT_TRUE(s.record_fault("x", "outvoted on a spot check", kNow).ok());
  ASSERT_TRUE(s.record_fault("x", "another reason", kNow + 5).ok());
  auto x = s.find("x");
  ASSERT_TRUE(x.has_value());
  EXPECT_TRUE(x->excluded());
  EXPECT_EQ(x->excluded_reason, "outvoted on a spot check") << "the first reason stays";
  EXPECT_EQ(x->excluded_since_s, kNow);
  EXPECT_DOUBLE_EQ(s.score("x", kNow), 0.0);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(s.record("x", PeerEvent::Verified, kNow).ok());
  EXPECT_DOUBLE_EQ(s.score("x", kNow), 0.0) << "good events do not lift an exclusion";
  ASSERT_TRUE(s.pardon("x").ok());
  EXPECT_DOUBLE_EQ(s.score("x", kNow), 1.0);
  EXPECT_EQ(s.pardon("x").error().code, ErrorCode::NotFound);
  const std::string long_reason(10000, 'r');
  ASSERT_TRUE(s.record_fault("y", long_reason, kNow).ok());
  EXPECT_EQ(s.find("y")->excluded_reason.size(), ReputationStore::kMaxReasonBytes);
}

TEST(Reputation, SurvivesReopening) {
  TempDir dir;
  {
    auto store = ReputationStore::open(dir.path());
    ASSERT_TRUE(store.ok()) << store.error().message;
    ASSERT_TRUE((*store)->record("a", PeerEvent::TimedOut, kNow).ok());
    ASSERT_TRUE((*store)->record("a", PeerEvent::Answered, kNow).ok());
    ASSERT_TRUE((*store)->record_speed("a", 500, 1000, kNow).ok());
    ASSERT_TRUE((*store)->record_fault("z", "wrong output", kNow).ok());
  }
  auto store = ReputationStore::open(dir.path());
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_TRUE((*store)->recovered().empty());
  auto a = (*store)->find("a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->timed_out, 1u);
  EXPECT_EQ(a->answered, 1u);
  EXPECT_DOUBLE_EQ(a->speed, 0.5);
  const double p = ReputationStore::kPriorGood;
  EXPECT_NEAR((*store)->score("a", kNow), (1 + p) / (1 + 3 + p) * 0.5, 1e-12);
  auto z = (*store)->find("z");
  ASSERT_TRUE(z.has_value());
  EXPECT_EQ(z->excluded_reason, "wrong output");
  EXPECT_EQ(z->excluded_since_s, kNow);
  // The file is in WAL mode, as the header says.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir.path() + "/" + ReputationStore::kFileName).c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST(Reputation, RowsAreBoundedAndExcludedPeersAreForgottenLast) {
  TempDir dir;
  ReputationStore::Options options;
  options.max_peers = 8;
  {
    auto store = ReputationStore::open(dir.path(), options);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->record_fault("liar", "caught", kNow).ok());
    for (int i = 0; i < 100; ++i)
      ASSERT_TRUE((*store)->record("sybil" + std::to_string(i), PeerEvent::Answered, kNow + 1 + i).ok());
    EXPECT_EQ((*store)->peers(kNow).size(), 8u);
    EXPECT_TRUE((*store)->find("liar").has_value()) << "an exclusion outlives a flood of new ids";
    EXPECT_TRUE((*store)->find("sybil99").has_value());
    EXPECT_FALSE((*store)->find("sybil0").has_value());
  }
  // The file holds the same bound.
  auto store = ReputationStore::open(dir.path(), options);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->peers(kNow).size(), 8u);
  // A smaller bound at the next open trims the file's rows too.
  options.max_peers = 3;
  store = ReputationStore::open(dir.path(), options);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->peers(kNow).size(), 3u);
  EXPECT_TRUE((*store)->find("liar").has_value());
}

TEST(Reputation, CorruptFileGivesAFreshStoreAndIsKeptAside) {
  TempDir dir;
  const std::string path = dir.path() + "/" + ReputationStore::kFileName;
  {
    std::ofstream f(path, std::ios::binary);
    for (int i = 0; i < 4096; ++i) f.put(static_cast<char>((i * 7919) & 0xff));
  }
  auto store = ReputationStore::open(dir.path());
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_FALSE((*store)->recovered().empty());
  EXPECT_TRUE((*store)->peers(kNow).empty());
  EXPECT_TRUE(std::filesystem::exists(path + ".corrupt"));
  ASSERT_TRUE((*store)->record("a", PeerEvent::TimedOut, kNow).ok());
  store = ReputationStore::open(dir.path());
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->recovered().empty());
  EXPECT_EQ((*store)->find("a")->timed_out, 1u);
}

TEST(Reputation, DatabaseOfAnotherShapeIsReplacedToo) {
  TempDir dir;
  const std::string path = dir.path() + "/" + ReputationStore::kFileName;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE peers (x INTEGER)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto store = ReputationStore::open(dir.path());
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_FALSE((*store)->recovered().empty());
  ASSERT_TRUE((*store)->record("a", PeerEvent::Answered, kNow).ok());
}

TEST(Reputation, UnwritableDirectoryIsAClearError) {
  auto store = ReputationStore::open("/nonexistent-omni-dir/for-sure");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().code, ErrorCode::Unavailable);
  EXPECT_NE(store.error().message.find("reputation"), std::string::npos);
}

}  // namespace
}  // namespace omni::swarm
