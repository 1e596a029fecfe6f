// Node records: signing, verification, and every way a record must be refused.
#include <gtest/gtest.h>

#include "net/peer_id.h"
#include "store/cid.h"
#include "swarm/directory.h"
#include "swarm/record.h"

namespace omni::swarm {
namespace {

NodeRecord sample(const net::Identity& id, int64_t now) {
  NodeRecord r;
  r.peer_id = id.peer_id();
  r.addresses = {"127.0.0.1:7000"};
  r.model_id = std::string(64, 'a');
  r.model_name = "synth";
  r.n_layer = 8;
  r.block_begin = 2;
  r.block_end = 6;
  r.block_tps = 123.5;
  r.free_sessions = r.max_sessions = 16;
  r.protocol_version = 1;
  r.issued_ms = now;
  r.expires_ms = now + 60000;
  r.seq = 7;
  return r;
}

TEST(Record, SignedRecordVerifiesAndRoundTrips) {
  auto id = net::Identity::generate();
  ASSERT_TRUE(id.ok());
  const int64_t now = unix_now_ms();
  auto bytes = sign_record(sample(*id, now), *id);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  auto r = verify_record(*bytes, now);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->peer_id, id->peer_id());
  EXPECT_EQ(r->block_begin, 2u);
  EXPECT_EQ(r->block_end, 6u);
  EXPECT_DOUBLE_EQ(r->block_tps, 123.5);
  EXPECT_EQ(r->seq, 7u);
  EXPECT_EQ(r->addresses, std::vector<std::string>{"127.0.0.1:7000"});
}

TEST(Record, ModelCidIsOptionalAndChecked) {
  auto id = net::Identity::generate();
  ASSERT_TRUE(id.ok());
  const int64_t now = unix_now_ms();
  NodeRecord r = sample(*id, now);
  auto plain = verify_record(*sign_record(r, *id), now);
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_EQ(plain->model_cid, "");
  const std::string cid = store::Cid::of(std::vector<uint8_t>{1, 2, 3}).to_string();
  r.model_cid = cid;
  auto with_cid = verify_record(*sign_record(r, *id), now);
  ASSERT_TRUE(with_cid.ok()) << with_cid.error().message;
  EXPECT_EQ(with_cid->model_cid, cid);
  r.model_cid = "not a cid";
  auto bad = verify_record(*sign_record(r, *id), now);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::Corruption);
}

TEST(Record, EveryFlippedByteIsRejected) {
  auto id = net::Identity::generate();
  ASSERT_TRUE(id.ok());
  const int64_t now = unix_now_ms();
  auto bytes = sign_record(sample(*id, now), *id);
  ASSERT_TRUE(bytes.ok());
  for (size_t i = 0; i < bytes->size(); ++i) {
    auto tampered = *bytes;
    tampered[i] ^= 0x01;
    EXPECT_FALSE(verify_record(tampered, now).ok()) << "byte " << i;
  }
  // Truncated and extended.
  auto shorter = *bytes;
  shorter.pop_back();
  EXPECT_FALSE(verify_record(shorter, now).ok());
  auto longer = *bytes;
  longer.push_back(0);
  EXPECT_FALSE(verify_record(longer, now).ok());
  EXPECT_FALSE(verify_record({}, now).ok());
}

TEST(Record, RecordForAnotherPeerIsRejected) {
  auto alice = net::Identity::generate();
  auto mallory = net::Identity::generate();
  ASSERT_TRUE(alice.ok() && mallory.ok());
  const int64_t now = unix_now_ms();
  // sign_record refuses to sign for someone else ...
  EXPECT_FALSE(sign_record(sample(*alice, now), *mallory).ok());
  // ... and a hand-made envelope (alice's payload, mallory's key and signature) fails verification.
  auto honest = sign_record(sample(*mallory, now), *mallory);
  ASSERT_TRUE(honest.ok());
  std::string payload(honest->begin() + 12, honest->end() - 96);
  const std::string from = mallory->peer_id(), to = alice->peer_id();
  payload.replace(payload.find(from), from.size(), to);
  std::vector<uint8_t> forged(honest->begin(), honest->begin() + 8);
  for (int i = 0; i < 4; ++i) forged.push_back(static_cast<uint8_t>(payload.size() >> (8 * i)));
  forged.insert(forged.end(), payload.begin(), payload.end());
  forged.insert(forged.end(), honest->end() - 96, honest->end());
  auto r = verify_record(forged, now);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::PermissionDenied) << r.error().message;
}

TEST(Record, ExpiredAndInsaneRecordsAreRejected) {
  auto id = net::Identity::generate();
  ASSERT_TRUE(id.ok());
  const int64_t now = unix_now_ms();
  auto bytes = sign_record(sample(*id, now), *id);
  ASSERT_TRUE(bytes.ok());
  EXPECT_FALSE(verify_record(*bytes, now + 61000).ok());  // expired
  auto bad = sample(*id, now);
  bad.block_end = 9;  // beyond n_layer
  EXPECT_FALSE(verify_record(*sign_record(bad, *id), now).ok());
  bad = sample(*id, now);
  bad.expires_ms = now + kMaxRecordTtlMs + 1000;
  EXPECT_FALSE(verify_record(*sign_record(bad, *id), now).ok());
  bad = sample(*id, now);
  bad.addresses = {"nowhere"};
  EXPECT_FALSE(verify_record(*sign_record(bad, *id), now).ok());
}

TEST(Record, LinksRoundTripAndBadOnesAreRejected) {
  auto id = net::Identity::generate();
  auto other = net::Identity::generate();
  auto third = net::Identity::generate();
  ASSERT_TRUE(id.ok() && other.ok() && third.ok());
  const int64_t now = unix_now_ms();
  auto r = sample(*id, now);
  r.links = {{other->peer_id(), 12.5}, {third->peer_id(), 0}};
  auto bytes = sign_record(r, *id);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  auto back = verify_record(*bytes, now);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->links, r.links);
  // The most links a record may carry still fits the record's size limit.
  r.links.clear();
  for (size_t i = 0; i < kMaxLinks; ++i) {
    auto peer = net::Identity::generate();
    ASSERT_TRUE(peer.ok());
    r.links.push_back({peer->peer_id(), kMaxLinkRttMs});
  }
  bytes = sign_record(r, *id);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  EXPECT_TRUE(verify_record(*bytes, now).ok());
  const std::vector<std::vector<LinkRtt>> bad{
      {{id->peer_id(), 1}},                            // to itself
      {{"not-a-peer", 1}},                             // not a peer id
      {{other->peer_id(), -1}},                        // negative
      {{other->peer_id(), kMaxLinkRttMs + 1}},         // beyond belief
      {{other->peer_id(), 1}, {other->peer_id(), 2}},  // twice
  };
  for (const auto& links : bad) {
    r.links = links;
    auto signed_bad = sign_record(r, *id);
    ASSERT_TRUE(signed_bad.ok());
    auto v = verify_record(*signed_bad, now);
    ASSERT_FALSE(v.ok()) << links.front().peer_id;
    EXPECT_EQ(v.error().code, ErrorCode::Corruption) << v.error().message;
  }
  r.links.assign(kMaxLinks + 1, {other->peer_id(), 1});  // too many
  auto many = sign_record(r, *id);
  ASSERT_TRUE(many.ok());
  EXPECT_FALSE(verify_record(*many, now).ok());
}

TEST(Directory, LookupKeepsNewestVerifiedRecordPerPeer) {
  MemoryDirectory dir;
  auto a = net::Identity::generate();
  auto b = net::Identity::generate();
  ASSERT_TRUE(a.ok() && b.ok());
  const int64_t now = unix_now_ms();
  auto ra = sample(*a, now);
  ASSERT_TRUE(dir.announce(ra.model_id, ra.peer_id, *sign_record(ra, *a)).ok());
  ra.seq = 8;
  ra.block_begin = 0;
  ASSERT_TRUE(dir.announce(ra.model_id, ra.peer_id, *sign_record(ra, *a)).ok());
  auto rb = sample(*b, now);
  auto signed_b = *sign_record(rb, *b);
  signed_b[20] ^= 0x40;  // tampered on the way
  dir.inject(rb.model_id, "forged", signed_b);
  dir.inject(rb.model_id, "junk", {1, 2, 3});
  auto old = sample(*a, now);  // a stale copy of a's record (lower seq) stored elsewhere
  dir.inject(rb.model_id, "stale", *sign_record(old, *a));
  auto found = lookup(dir, ra.model_id, now);
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->records.size(), 1u);
  EXPECT_EQ(found->records[0].peer_id, a->peer_id());
  EXPECT_EQ(found->records[0].seq, 8u);
  EXPECT_EQ(found->records[0].block_begin, 0u);
  EXPECT_EQ(found->rejected, 2u);
  // The swarm-wide list has a's record too.
  auto all = lookup(dir, "", now);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->records.size(), 1u);
}

}  // namespace
}  // namespace omni::swarm
