// The fetch engine against in-process peers: several peers share the work within the window, a
// peer that flips a bit is dropped and the fetch completes from the others, an interrupted fetch
// resumes without requesting verified chunks again, a slow or silent peer does not hold up the
// fetch, and a whole sharded model moves between two stores (its shards pipelined) and loads
// bit-identically.
#include <chrono>
#include <filesystem>
#include <random>

#include "fake_peer.h"
#include "store/shard.h"
#include "store/sharded_model.h"
#include "test_util.h"

namespace omni::store {
namespace {

using testing::FakePeer;
using testing::ScratchDir;
using namespace std::chrono_literals;
const std::string kShared = OMNI_SHARED_DIR;
constexpr uint32_t kChunk = 4096;

struct Blob {
  std::vector<uint8_t> data;
  Cid cid;
  std::vector<Digest> hashes;
};

Blob make_blob(size_t size, uint32_t seed) {
  Blob b;
  std::mt19937 rng(seed);
  b.data.resize(size);
  for (auto& x : b.data) x = static_cast<uint8_t>(rng());
  b.cid = Cid::of(b.data);
  for (size_t off = 0; off < size; off += kChunk)
    b.hashes.push_back(sha256({b.data.data() + off, std::min<size_t>(kChunk, size - off)}));
  return b;
}

std::shared_ptr<FakePeer> peer(const std::string& name, const Blob& b, FakePeer::Behaviour beh = {}) {
  auto p = std::make_shared<FakePeer>(name, beh);
  p->add(b.data);
  return p;
}

void expect_stored(BlobStore& s, const Blob& b) {
  ASSERT_TRUE(s.has(b.cid));
  auto back = s.read_all(b.cid, b.data.size());
  ASSERT_TRUE(back);
  EXPECT_TRUE(*back == b.data);
}

size_t files_in(const std::string& dir) {
  size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) (void)e, ++n;
  return n;
}

TEST(Fetch, SeveralPeersShareTheWorkWithinTheWindow) {
  ScratchDir d;
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  Blob b = make_blob(100 * kChunk + 123, 1);
  auto p1 = peer("p1", b, {.delay = 1ms}), p2 = peer("p2", b, {.delay = 1ms}), p3 = peer("p3", b, {.delay = 1ms});
  Fetcher f(**s, {p1, p2, p3}, {.window = 4});
  auto r = f.fetch_blob(b.cid, b.data.size(), kChunk, b.hashes);
  ASSERT_TRUE(r) << r.error().message;
  expect_stored(**s, b);
  EXPECT_EQ(f.stats().chunks_fetched, 101u);
  EXPECT_EQ(f.stats().bad_chunks, 0u);
  for (auto* p : {p1.get(), p2.get(), p3.get()}) {
    EXPECT_GT(p->requests, 10u) << p->name();
    EXPECT_LE(p->max_in_flight, 4u) << p->name();
  }
  // The window was actually used: several reads outstanding at once, not one per round trip.
  EXPECT_GE(std::max({p1->max_in_flight.load(), p2->max_in_flight.load(), p3->max_in_flight.load()}), 3u);
}

TEST(Fetch, PeerThatFlipsABitIsDroppedAndTheFetchCompletesFromOthers) {
  ScratchDir d;
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  Blob b = make_blob(60 * kChunk, 2);
  auto liar = peer("liar", b, {.flip_bit = true});
  auto honest = peer("honest", b, {.delay = 1ms});
  Fetcher f(**s, {liar, honest}, {.window = 4});
  auto r = f.fetch_blob(b.cid, b.data.size(), kChunk, b.hashes);
  ASSERT_TRUE(r) << r.error().message;
  expect_stored(**s, b);
  EXPECT_GE(f.stats().bad_chunks, 1u);
  ASSERT_EQ(f.stats().dropped.size(), 1u);
  EXPECT_NE(f.stats().dropped[0].find("liar"), std::string::npos);
  EXPECT_NE(f.stats().dropped[0].find("verification"), std::string::npos);
  // Dropped after its first answer: it got at most one window of requests.
  EXPECT_LE(liar->requests, 4u);
  EXPECT_EQ(f.active_peers(), 1u);
}

TEST(Fetch, OnlyBadPeersIsAClearErrorAndNothingVisible) {
  ScratchDir d;
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  Blob b = make_blob(10 * kChunk, 3);
  Fetcher f(**s, {peer("liar", b, {.flip_bit = true}), peer("flaky", b, {.fail_after = 0})}, {.window = 2});
  auto r = f.fetch_blob(b.cid, b.data.size(), kChunk, b.hashes);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::Unavailable) << r.error().message;
  EXPECT_NE(r.error().message.find("liar"), std::string::npos);
  EXPECT_NE(r.error().message.find("connection reset"), std::string::npos);
  EXPECT_FALSE((*s)->has(b.cid));
  Fetcher none(**s, {});
  EXPECT_FALSE(none.fetch_blob(b.cid, b.data.size(), kChunk, b.hashes));
}

TEST(Fetch, InterruptedFetchResumesWithoutRefetchingVerifiedChunks) {
  ScratchDir d;
  Blob b = make_blob(50 * kChunk + 7, 4);
  uint64_t first_round = 0;
  {
    auto s = BlobStore::open(d.path());
    ASSERT_TRUE(s);
    auto p = peer("p", b);
    uint64_t answered_at_cancel = 0;
    FetchOptions o{.window = 2, .flush_every = 4};
    Fetcher* self = nullptr;
    o.cancelled = [&] {
      if (self && self->stats().chunks_fetched >= 20) {
        answered_at_cancel = self->stats().chunks_fetched;
        return true;
      }
      return false;
    };
    Fetcher f(**s, {p}, o);
    self = &f;
    auto r = f.fetch_blob(b.cid, b.data.size(), kChunk, b.hashes);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::Cancelled) << r.error().message;
    EXPECT_FALSE((*s)->has(b.cid));
    // Chunks being verified when the fetch was cancelled are still written and counted.
    first_round = f.stats().chunks_fetched;
    EXPECT_GE(first_round, answered_at_cancel);
    EXPECT_GE(first_round, 20u);
    EXPECT_LT(first_round, 51u);
  }
  // A new process (store reopened): only the missing chunks are requested.
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  auto p = peer("p2", b);
  Fetcher f(**s, {p}, {.window = 2});
  auto r = f.fetch_blob(b.cid, b.data.size(), kChunk, b.hashes);
  ASSERT_TRUE(r) << r.error().message;
  expect_stored(**s, b);
  EXPECT_EQ(f.stats().chunks_resumed, first_round);
  EXPECT_EQ(p->requests, 51u - first_round);
  EXPECT_EQ(files_in(d / "partial"), 0u);
}

TEST(Fetch, SlowPeerDoesNotHoldUpCompletion) {
  ScratchDir d;
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  Blob b = make_blob(40 * kChunk, 5);
  auto slow = peer("slow", b, {.delay = 400ms});
  auto fast = peer("fast", b, {.delay = 2ms});
  Fetcher f(**s, {slow, fast}, {.window = 2});
  auto t0 = std::chrono::steady_clock::now();
  auto r = f.fetch_blob(b.cid, b.data.size(), kChunk, b.hashes);
  auto elapsed = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(r) << r.error().message;
  expect_stored(**s, b);
  // The slow peer alone would take 40 x 400 ms; its last outstanding reads are duplicated at the
  // fast one, so the fetch ends long before its answers arrive.
  EXPECT_LT(elapsed, 1500ms);
  EXPECT_GT(fast->answered, 30u);
}

TEST(Fetch, SilentPeerTimesOutAndIsDropped) {
  ScratchDir d;
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  Blob b = make_blob(20 * kChunk, 6);
  auto silent = peer("silent", b, {.hang = true});
  auto ok = peer("ok", b, {.delay = 30ms});
  Fetcher f(**s, {silent, ok}, {.window = 2, .request_timeout_ms = 200});
  auto r = f.fetch_blob(b.cid, b.data.size(), kChunk, b.hashes);
  ASSERT_TRUE(r) << r.error().message;
  expect_stored(**s, b);
  ASSERT_EQ(f.stats().dropped.size(), 1u);
  EXPECT_NE(f.stats().dropped[0].find("silent"), std::string::npos);
}

TEST(Fetch, StoreLimitIsAClearErrorBeforeAnyTransfer) {
  ScratchDir d;
  auto s = BlobStore::open(d.path(), {.limit_bytes = 10 * kChunk});
  ASSERT_TRUE(s);
  Blob b = make_blob(20 * kChunk, 7);
  auto p = peer("p", b);
  Fetcher f(**s, {p});
  auto r = f.fetch_blob(b.cid, b.data.size(), kChunk, b.hashes, "block 3");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::ResourceExhausted) << r.error().message;
  EXPECT_NE(r.error().message.find("block 3"), std::string::npos);
  EXPECT_EQ(p->requests, 0u);
  EXPECT_FALSE((*s)->has(b.cid));
  EXPECT_EQ(files_in(d / "partial"), 0u);
}

// A whole model between two stores: the manifest is fetched and checked against its CID, then every
// shard from two peers, one of which lies; the result loads and verifies.
TEST(Fetch, ShardedModelMovesBetweenStores) {
  ScratchDir a, b;
  auto src = BlobStore::open(a.path());
  ASSERT_TRUE(src);
  auto rep = shard_model(kShared + "/models/synth-llama-q4_0.gguf", **src, 64 * 1024);
  ASSERT_TRUE(rep) << rep.error().message;
  auto dst = BlobStore::open(b.path());
  ASSERT_TRUE(dst);
  auto good = std::make_shared<FakePeer>("good");
  good->serve_store(src->get());
  auto liar = std::make_shared<FakePeer>("liar", FakePeer::Behaviour{.flip_bit = true});
  liar->serve_store(src->get());
  uint64_t last_done = 0, total = 0;
  Fetcher f(**dst, {liar, good},
            {.window = 4, .progress = [&](const FetchProgress& p) { last_done = p.done_bytes, total = p.total_bytes; }});
  auto m = f.fetch_model(rep->model);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->encode(), rep->manifest.encode());
  EXPECT_EQ(last_done, total);
  EXPECT_GT(total, 0u);
  EXPECT_EQ(f.stats().dropped.size(), 1u);
  EXPECT_TRUE(verify_model(**dst, rep->model));
  EXPECT_TRUE((*dst)->pinned(rep->model));
  auto loaded = load_model(**dst, rep->model);
  ASSERT_TRUE(loaded) << loaded.error().message;

  // A node that serves only blocks [1, 2) fetches only that block's shard and the manifest.
  ScratchDir c;
  auto partial = BlobStore::open(c.path());
  ASSERT_TRUE(partial);
  Fetcher g(**partial, {good});
  ASSERT_TRUE(g.fetch_model(rep->model, {.block_begin = 1, .block_end = 2, .embeddings = false, .head = false}));
  EXPECT_EQ((*partial)->list().size(), 2u);
  EXPECT_TRUE(load_model(**partial, rep->model, {.block_begin = 1, .block_end = 2, .embeddings = false, .head = false}));

  // A CID nobody has: a clear error.
  ScratchDir e;
  auto empty = BlobStore::open(e.path());
  ASSERT_TRUE(empty);
  Fetcher h(**empty, {good});
  auto missing = h.fetch_model(Cid::of({}));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::Unavailable) << missing.error().message;
}

// The shards of a model are assembled side by side: the next shard's chunks are requested while
// the previous shard's last ones are in flight (and it completes), so the window never drains at a
// shard boundary.
TEST(Fetch, ShardsOfAModelArePipelined) {
  ScratchDir a, b;
  auto src = BlobStore::open(a.path());
  ASSERT_TRUE(src);
  auto rep = shard_model(kShared + "/models/synth-llama-q8_0.gguf", **src, 64 * 1024);
  ASSERT_TRUE(rep) << rep.error().message;
  auto dst = BlobStore::open(b.path());
  ASSERT_TRUE(dst);
  auto peer = std::make_shared<FakePeer>("p", FakePeer::Behaviour{.delay = 1ms});
  peer->serve_store(src->get());
  Fetcher f(**dst, {peer}, {.window = 8});
  auto m = f.fetch_model(rep->model);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_TRUE(verify_model(**dst, rep->model));
  EXPECT_GE(peer->max_blobs_in_flight.load(), 2u);
  EXPECT_EQ(files_in(b / "partial"), 0u);
}

}  // namespace
}  // namespace omni::store
