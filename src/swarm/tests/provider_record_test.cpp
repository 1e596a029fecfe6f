// Provider records: signing, verification, the shard bitmap, lookup and refresh.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "store/cid.h"
#include "swarm/directory.h"
#include "swarm/node_profile.h"
#include "swarm/provider_record.h"
#include "swarm/record.h"

namespace omni::swarm {
namespace {

std::string cid_of(const std::string& text) {
  return store::Cid::of({reinterpret_cast<const uint8_t*>(text.data()), text.size()}).to_string();
}

ProviderRecord sample(const net::Identity& id, int64_t now, std::vector<bool> shards) {
  ProviderRecord r;
  r.peer_id = id.peer_id();
  r.addresses = {"127.0.0.1:7000", "relay:127.0.0.1:9000"};
  r.model_cid = cid_of("model");
  r.shards = std::move(shards);
  r.issued_ms = now;
  r.expires_ms = now + 60000;
  r.seq = 3;
  return r;
}

TEST(ProviderRecord, RoundTripsEveryShardBit) {
  auto id = net::Identity::generate();
  ASSERT_TRUE(id.ok());
  const int64_t now = unix_now_ms();
  // Lengths around the hex digit boundaries, with a pattern that differs per position.
  for (size_t n : {0u, 1u, 3u, 4u, 5u, 9u, 26u, 82u}) {
    std::vector<bool> shards(n);
    for (size_t i = 0; i < n; ++i) shards[i] = (i * 7 + n) % 3 == 0;
    auto bytes = sign_provider_record(sample(*id, now, shards), *id);
    ASSERT_TRUE(bytes.ok()) << bytes.error().message;
    auto r = verify_provider_record(*bytes, now);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->shards, shards) << n;
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(r->holds(i), shards[i]);
    EXPECT_FALSE(r->holds(n));
    EXPECT_EQ(r->peer_id, id->peer_id());
    EXPECT_EQ(r->addresses, sample(*id, now, {}).addresses);
    EXPECT_EQ(r->model_cid, cid_of("model"));
    EXPECT_EQ(r->seq, 3u);
  }
}

TEST(ProviderRecord, RefusesTamperingExpiryAndOtherKindsOfRecord) {
  auto id = net::Identity::generate();
  ASSERT_TRUE(id.ok());
  const int64_t now = unix_now_ms();
  auto bytes = sign_provider_record(sample(*id, now, {true, false, true}), *id);
  ASSERT_TRUE(bytes.ok());
  // Any flipped byte of the payload breaks the signature.
  for (size_t at = 12; at < bytes->size() - 96; at += 7) {
    auto edited = *bytes;
    edited[at] ^= 1;
    EXPECT_FALSE(verify_provider_record(edited, now).ok()) << at;
  }
  auto expired = verify_provider_record(*bytes, now + 61000);
  ASSERT_FALSE(expired.ok());
  EXPECT_TRUE(expired.error().is(ErrorCode::InvalidArgument));
  // Signed for another peer id.
  auto other = net::Identity::generate();
  ASSERT_TRUE(other.ok());
  auto foreign = sign_provider_record(sample(*id, now, {}), *other);
  EXPECT_FALSE(foreign.ok());
  // A node record is no provider record and the other way round, even with the same key.
  NodeRecord node;
  node.peer_id = id->peer_id();
  node.addresses = {"127.0.0.1:7000"};
  node.model_id = std::string(64, 'a');
  node.n_layer = 4, node.block_begin = 0, node.block_end = 2;
  node.issued_ms = now, node.expires_ms = now + 60000;
  auto node_bytes = sign_record(node, *id);
  ASSERT_TRUE(node_bytes.ok());
  EXPECT_FALSE(verify_provider_record(*node_bytes, now).ok());
  EXPECT_FALSE(verify_record(*bytes, now).ok());
  // Malformed fields.
  auto bad_cid = sample(*id, now, {});
  bad_cid.model_cid = "not-a-cid";
  auto b = sign_provider_record(bad_cid, *id);
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(verify_provider_record(*b, now).error().is(ErrorCode::Corruption));
  auto no_address = sample(*id, now, {});
  no_address.addresses.clear();
  b = sign_provider_record(no_address, *id);
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(verify_provider_record(*b, now).error().is(ErrorCode::Corruption));
  EXPECT_FALSE(sign_provider_record(sample(*id, now, std::vector<bool>(kMaxProviderShards + 1)), *id).ok());
}

TEST(ProviderRecord, LookupKeepsTheNewestValidRecordOfEachPeerOfThatModel) {
  auto a = net::Identity::generate(), b = net::Identity::generate();
  ASSERT_TRUE(a.ok() && b.ok());
  const int64_t now = unix_now_ms();
  MemoryDirectory dir;
  const std::string model = cid_of("model");
  auto old_a = sample(*a, now - 1000, {true, false});
  auto new_a = sample(*a, now, {true, true});
  new_a.seq = 4;
  auto b_other_model = sample(*b, now, {true});
  b_other_model.model_cid = cid_of("another model");
  ASSERT_TRUE(dir.provide(model, "a-old", *sign_provider_record(old_a, *a)).ok());
  ASSERT_TRUE(dir.provide(model, "a-new", *sign_provider_record(new_a, *a)).ok());
  ASSERT_TRUE(dir.provide(model, b->peer_id(), *sign_provider_record(b_other_model, *b)).ok());
  ASSERT_TRUE(dir.provide(model, "junk", {1, 2, 3}).ok());
  auto found = lookup_providers(dir, model, now);
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->records.size(), 1u);
  EXPECT_EQ(found->records[0].peer_id, a->peer_id());
  EXPECT_EQ(found->records[0].shards, (std::vector<bool>{true, true}));
  EXPECT_EQ(found->rejected, 2u);  // the other model's record and the junk
  // Provider records do not show among node records.
  auto nodes = lookup(dir, "");
  ASSERT_TRUE(nodes.ok());
  EXPECT_TRUE(nodes->records.empty());
}

TEST(ProviderRecord, AnnouncerPublishesAndRefreshes) {
  auto id = net::Identity::generate();
  ASSERT_TRUE(id.ok());
  MemoryDirectory dir;
  auto record = sample(*id, 0, {false, true});
  record.seq = 0;
  {
    Announcer announcer(dir, *id, record, 1, 3, {});
    ASSERT_TRUE(announcer.start().ok());
    auto first = lookup_providers(dir, record.model_cid);
    ASSERT_TRUE(first.ok());
    ASSERT_EQ(first->records.size(), 1u);
    const uint64_t seq = first->records[0].seq;
    EXPECT_GT(first->records[0].expires_ms, unix_now_ms());
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    auto later = lookup_providers(dir, record.model_cid);
    ASSERT_TRUE(later.ok());
    ASSERT_EQ(later->records.size(), 1u);
    EXPECT_GT(later->records[0].seq, seq);
  }
}

}  // namespace
}  // namespace omni::swarm
