// Directory lookups across a node's restarts: the records of a dead incarnation (still stored, not
// yet expired) must not shadow the new incarnation's.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "swarm/directory.h"
#include "swarm/node_profile.h"
#include "swarm/record.h"

namespace omni::swarm {
namespace {

// Stores every value put, as the DHT does (each refresh is a fresh value; old ones stay until they
// expire), so lookup() sees the dead incarnation's records next to the new ones.
class KeepAllDirectory final : public Directory {
 public:
  Result<void> announce(const std::string& model_id, const std::string&, std::vector<uint8_t> signed_record) override {
    std::lock_guard lock(mutex_);
    values_[model_id].push_back(std::move(signed_record));
    return {};
  }
  Result<std::vector<std::vector<uint8_t>>> fetch(const std::string& model_id) override {
    std::lock_guard lock(mutex_);
    return values_[model_id];
  }
  Result<void> provide(const std::string& model_cid, const std::string&, std::vector<uint8_t> signed_record) override {
    std::lock_guard lock(mutex_);
    providers_[model_cid].push_back(std::move(signed_record));
    return {};
  }
  Result<std::vector<std::vector<uint8_t>>> fetch_providers(const std::string& model_cid) override {
    std::lock_guard lock(mutex_);
    return providers_[model_cid];
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::vector<std::vector<uint8_t>>> values_;
  std::map<std::string, std::vector<std::vector<uint8_t>>> providers_;
};

NodeRecord record_of(const net::Identity& id, const std::string& address, uint32_t begin, uint32_t end) {
  NodeRecord r;
  r.peer_id = id.peer_id();
  r.addresses = {address};
  r.model_id = std::string(64, 'b');
  r.model_name = "synth";
  r.n_layer = 4;
  r.block_begin = begin;
  r.block_end = end;
  r.block_tps = 100;
  r.free_sessions = r.max_sessions = 4;
  r.protocol_version = 1;
  return r;
}

TEST(Directory, RestartedNodeSupersedesItsDeadIncarnation) {
  KeepAllDirectory dir;
  auto id = net::Identity::generate();
  ASSERT_TRUE(id.ok());
  {
    // The first incarnation had issued records before (refreshes, a relay address change), so its
    // last Announcer starts from a record with a non-zero seq; it announces and dies.
    NodeRecord old = record_of(*id, "127.0.0.1:1000", 0, 2);
    old.seq = 5;
    Announcer first(dir, *id, old, 60, 120, {});
    ASSERT_TRUE(first.start().ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a restart takes longer than this
  // The restarted process starts from a fresh record (seq 0), at another port and range.
  Announcer second(dir, *id, record_of(*id, "127.0.0.1:2000", 2, 4), 60, 120, {});
  ASSERT_TRUE(second.start().ok());

  auto found = lookup(dir, std::string(64, 'b'));
  ASSERT_TRUE(found.ok()) << found.error().message;
  ASSERT_EQ(found->records.size(), 1u);
  EXPECT_EQ(found->records[0].addresses, std::vector<std::string>{"127.0.0.1:2000"})
      << "the dead incarnation's record (seq " << found->records[0].seq << ") shadows the new one";
  EXPECT_EQ(found->records[0].block_begin, 2u);
  EXPECT_EQ(found->rejected, 0u);
}

TEST(Directory, KeepNewestHoldsMissedRecordsUntilTheyExpire) {
  auto a = net::Identity::generate(), b = net::Identity::generate();
  ASSERT_TRUE(a.ok() && b.ok());
  NodeRecord a1 = record_of(*a, "127.0.0.1:1000", 0, 2), b1 = record_of(*b, "127.0.0.1:2000", 2, 4);
  a1.seq = b1.seq = 10;
  a1.expires_ms = b1.expires_ms = 1000;
  std::map<std::string, NodeRecord> seen;
  keep_newest(seen, {a1, b1}, 0);
  ASSERT_EQ(seen.size(), 2u);
  // A read that misses b keeps b's record; a newer record of a replaces a's, an older one does not.
  NodeRecord a2 = a1;
  a2.seq = 11;
  a2.addresses = {"127.0.0.1:1001"};
  keep_newest(seen, {a2}, 500);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen.at(a1.peer_id).addresses, a2.addresses);
  keep_newest(seen, {a1}, 600);
  EXPECT_EQ(seen.at(a1.peer_id).seq, 11u);
  // Expiry removes records whether or not the read had them.
  keep_newest(seen, {a2}, 1000);
  EXPECT_TRUE(seen.empty());
}

TEST(Directory, SequenceNeverGoesBackWithinAProcess) {
  // The hybrid clock: the wall clock when it is ahead, else one more than the last.
  EXPECT_EQ(next_seq(0, 1'700'000'000'000), 1'700'000'000'000u);
  EXPECT_EQ(next_seq(1'700'000'000'000, 1'700'000'000'000), 1'700'000'000'001u);
  EXPECT_EQ(next_seq(1'700'000'005'000, 1'700'000'000'000), 1'700'000'005'001u);  // clock stepped back
  EXPECT_EQ(next_seq(7, -1), 8u);
  NodeRecord a, b;
  a.seq = 10;
  b.seq = 9;
  b.issued_ms = 99;
  EXPECT_TRUE(supersedes(a, b));
  EXPECT_FALSE(supersedes(b, a));
  b.seq = 10;
  a.issued_ms = 100;
  EXPECT_TRUE(supersedes(a, b));
  EXPECT_FALSE(supersedes(b, a));
}

// Fails every announcement until `reachable` is set: a node that starts before any DHT peer can
// store its record (the first node of a LAN swarm).
class UnreachableUntilDirectory final : public Directory {
 public:
  std::atomic<bool> reachable{false};
  std::atomic<int> attempts{0};
  Result<void> announce(const std::string& model_id, const std::string& peer_id,
                        std::vector<uint8_t> signed_record) override {
    ++attempts;
    if (!reachable) return Error{"DHT put failed (no DHT node reachable)"};
    return inner_.announce(model_id, peer_id, std::move(signed_record));
  }
  Result<std::vector<std::vector<uint8_t>>> fetch(const std::string& model_id) override {
    return inner_.fetch(model_id);
  }
  Result<void> provide(const std::string& model_cid, const std::string& peer_id,
                       std::vector<uint8_t> signed_record) override {
    ++attempts;
    if (!reachable) return Error{ErrorCode::Unavailable, "DHT put failed (no DHT node reachable)"};
    return inner_.provide(model_cid, peer_id, std::move(signed_record));
  }
  Result<std::vector<std::vector<uint8_t>>> fetch_providers(const std::string& model_cid) override {
    return inner_.fetch_providers(model_cid);
  }

 private:
  KeepAllDirectory inner_;
};

TEST(Directory, AnnouncerRetriesAfterAFailedFirstAnnouncement) {
  UnreachableUntilDirectory dir;
  auto id = net::Identity::generate();
  ASSERT_TRUE(id.ok());
  std::vector<std::string> lines;
  std::mutex lines_mutex;
  // A long refresh interval: the record must appear through the retries, not a refresh.
  Announcer announcer(dir, *id, record_of(*id, "127.0.0.1:1000", 0, 2), 600, 1200, [&](const std::string& line) {
    std::lock_guard lock(lines_mutex);
    lines.push_back(line);
  });
  ASSERT_FALSE(announcer.start().ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (dir.attempts < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_GE(dir.attempts, 3) << "no retry after the first announcement failed";
  dir.reachable = true;
  std::vector<NodeRecord> found;
  while (found.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto l = lookup(dir, std::string(64, 'b'));
    ASSERT_TRUE(l.ok()) << l.error().message;
    found = l->records;
  }
  ASSERT_EQ(found.size(), 1u) << "the record never reached the directory";
  EXPECT_EQ(found[0].addresses, std::vector<std::string>{"127.0.0.1:1000"});
  std::lock_guard lock(lines_mutex);
  // Failed retries are not logged one by one (the caller reported the first failure); the
  // recovery is, once.
  ASSERT_EQ(lines.size(), 1u) << lines.front();
  EXPECT_NE(lines[0].find("announced after"), std::string::npos) << lines[0];
}

}  // namespace
}  // namespace omni::swarm
