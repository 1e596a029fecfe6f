// The blob store: atomic visibility, cleanup after a crash, resumable partial blobs, the size limit
// with LRU eviction of unpinned blobs, persisted pins, the single-process lock, and verification
// of stored blobs against their CIDs (once, then trusted while the file is unchanged).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "store/blob_store.h"
#include "test_util.h"

namespace omni::store {
namespace {

using testing::ScratchDir;

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::vector<Digest> chunk_hashes(const std::vector<uint8_t>& data, uint32_t chunk) {
  std::vector<Digest> out;
  for (size_t off = 0; off < data.size(); off += chunk)
    out.push_back(sha256({data.data() + off, std::min<size_t>(chunk, data.size() - off)}));
  return out;
}

size_t count_files(const std::string& dir) {
  size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) (void)e, ++n;
  return n;
}

TEST(BlobStore, PutReadAndDeduplicate) {
  ScratchDir d;
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s) << s.error().message;
  auto data = random_bytes(10000, 1);
  auto cid = (*s)->put(data);
  ASSERT_TRUE(cid) << cid.error().message;
  EXPECT_EQ(*cid, Cid::of(data));
  EXPECT_TRUE((*s)->has(*cid));
  auto back = (*s)->read_all(*cid, 1 << 20);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, data);
  auto part = (*s)->read(*cid, 9990, 100);
  ASSERT_TRUE(part);
  EXPECT_EQ(part->size(), 10u);
  EXPECT_TRUE((*s)->put(data));
  EXPECT_EQ((*s)->used_bytes(), data.size());
  EXPECT_FALSE((*s)->read_all(Cid::of(random_bytes(5, 2)), 100));
}

TEST(BlobStore, SecondProcessIsLockedOut) {
  ScratchDir d;
  auto a = BlobStore::open(d.path());
  ASSERT_TRUE(a);
  // flock is per open file description, so a second open in this process is refused too.
  auto b = BlobStore::open(d.path());
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, ErrorCode::Unavailable) << b.error().message;
}

TEST(BlobStore, LeftoversOfACrashAreRemovedAndNeverVisible) {
  ScratchDir d;
  {
    auto s = BlobStore::open(d.path());
    ASSERT_TRUE(s);
    // A writer that died mid-way: its temp file sits in tmp/.
    std::ofstream(d / "tmp/shard.gguf.123.1") << "half a shard";
  }
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  EXPECT_EQ(count_files(d / "tmp"), 0u);
  EXPECT_TRUE((*s)->list().empty());
  EXPECT_EQ((*s)->used_bytes(), 0u);
}

TEST(BlobStore, ImportHashesChunksAndRemovesTheTempFile) {
  ScratchDir d;
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  auto data = random_bytes(3 * 4096 + 17, 3);
  std::string tmp = (*s)->temp_path("x");
  std::ofstream(tmp, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  auto imp = (*s)->import_file(tmp, 4096);
  ASSERT_TRUE(imp) << imp.error().message;
  EXPECT_EQ(imp->cid, Cid::of(data));
  EXPECT_EQ(imp->size, data.size());
  EXPECT_EQ(imp->chunk_hashes, chunk_hashes(data, 4096));
  EXPECT_FALSE(imp->existed);
  EXPECT_FALSE(std::filesystem::exists(tmp));
  auto h = (*s)->hash_blob(imp->cid, 4096);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->chunk_hashes, imp->chunk_hashes);
}

TEST(BlobStore, PartialBlobResumesWithVerifiedChunksOnly) {
  ScratchDir d;
  const uint32_t chunk = 4096;
  auto data = random_bytes(10 * chunk + 100, 4);
  Cid cid = Cid::of(data);
  auto hashes = chunk_hashes(data, chunk);
  auto chunk_of = [&](uint64_t i) {
    return std::span<const uint8_t>(data.data() + i * chunk, std::min<size_t>(chunk, data.size() - i * chunk));
  };
  {
    auto s = BlobStore::open(d.path());
    ASSERT_TRUE(s);
    auto p = (*s)->open_partial(cid, data.size(), chunk, hashes);
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ((*p)->n_chunks(), 11u);
    for (uint64_t i : {0u, 3u, 10u}) ASSERT_TRUE((*p)->write_chunk(i, chunk_of(i)));
    // A chunk with a flipped bit is refused and not recorded.
    auto bad = std::vector<uint8_t>(chunk_of(5).begin(), chunk_of(5).end());
    bad[7] ^= 1;
    auto r = (*p)->write_chunk(5, bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::Corruption) << r.error().message;
    ASSERT_TRUE((*p)->flush());
    ASSERT_TRUE((*p)->write_chunk(4, chunk_of(4)));  // recorded by the destructor's flush
    EXPECT_FALSE((*s)->has(cid));
    EXPECT_FALSE((*p)->finish());  // chunks missing
  }
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  EXPECT_FALSE((*s)->has(cid));
  auto p = (*s)->open_partial(cid, data.size(), chunk, hashes);
  ASSERT_TRUE(p);
  EXPECT_TRUE((*p)->has_chunk(0));
  EXPECT_TRUE((*p)->has_chunk(3));
  EXPECT_TRUE((*p)->has_chunk(10));
  EXPECT_TRUE((*p)->has_chunk(4));
  EXPECT_FALSE((*p)->has_chunk(5));
  EXPECT_EQ((*p)->chunks_present(), 4u);
  for (uint64_t i = 0; i < (*p)->n_chunks(); ++i)
    if (!(*p)->has_chunk(i)) {
      ASSERT_TRUE((*p)->write_chunk(i, chunk_of(i)));
    }
  ASSERT_TRUE((*p)->finish());
  EXPECT_TRUE((*s)->has(cid));
  auto back = (*s)->read_all(cid, 1 << 20);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, data);
  EXPECT_EQ(count_files(d / "partial"), 0u);
  EXPECT_EQ((*s)->used_bytes(), data.size());
}

// The fetch offers chunks from several threads at once, mostly in order: the blob must come out
// whole and verified whatever the interleaving, with a corrupt chunk refused (and offered again
// correctly later) while other threads wait for their turn at the whole-blob hash.
TEST(BlobStore, PartialBlobTakesChunksFromManyThreads) {
  ScratchDir d;
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  const uint32_t chunk = 4096;
  for (bool shuffled : {false, true}) {
    auto data = random_bytes(300 * chunk + 123, shuffled ? 8 : 7);
    Cid cid = Cid::of(data);
    auto p = (*s)->open_partial(cid, data.size(), chunk, chunk_hashes(data, chunk));
    ASSERT_TRUE(p) << p.error().message;
    const uint64_t n = (*p)->n_chunks();
    std::vector<uint64_t> order(n);
    for (uint64_t i = 0; i < n; ++i) order[i] = i;
    if (shuffled) std::shuffle(order.begin(), order.end(), std::mt19937(9));
    std::atomic<uint64_t> next{0}, refused{0};
    auto worker = [&] {
      for (uint64_t k; (k = next++) < n;) {
        const uint64_t i = order[k];
        auto bytes = std::span<const uint8_t>(data.data() + i * chunk, std::min<size_t>(chunk, data.size() - i * chunk));
        if (i == 17) {  // a liar's copy first: refused, nothing written
          std::vector<uint8_t> bad(bytes.begin(), bytes.end());
          bad[100] ^= 0x10;
          auto r = (*p)->offer_chunk(i, ChunkBuffer::copy_of(bad));
          ASSERT_TRUE(r);
          if (!*r) ++refused;
        }
        auto r = (*p)->offer_chunk(i, ChunkBuffer::copy_of(bytes));
        ASSERT_TRUE(r) << r.error().message;
        ASSERT_TRUE(*r) << "chunk " << i;
      }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    EXPECT_EQ(refused, 1u);
    EXPECT_EQ((*p)->chunks_present(), n);
    ASSERT_TRUE((*p)->finish());
    auto back = (*s)->read_all(cid, data.size());
    ASSERT_TRUE(back);
    EXPECT_TRUE(*back == data);
  }
  EXPECT_EQ(count_files(d / "partial"), 0u);
}

TEST(BlobStore, ChunkTableThatDisagreesWithTheCidIsRejectedAtFinish) {
  ScratchDir d;
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  auto data = random_bytes(5000, 5), other = random_bytes(5000, 6);
  // A lying manifest: chunk hashes of `other` under the CID of `data`.
  auto p = (*s)->open_partial(Cid::of(data), other.size(), 4096, chunk_hashes(other, 4096));
  ASSERT_TRUE(p);
  ASSERT_TRUE((*p)->write_chunk(0, {other.data(), 4096}));
  ASSERT_TRUE((*p)->write_chunk(1, {other.data() + 4096, other.size() - 4096}));
  auto r = (*p)->finish();
  ASSERT_FALSE(r);
  EXPECT_FALSE((*s)->has(Cid::of(data)));
  EXPECT_EQ(count_files(d / "partial"), 0u);
  EXPECT_EQ((*s)->used_bytes(), 0u);
}

// Overwrites one byte of a stored blob in place, as a careless or hostile hand would (the file
// is read-only: made writable first). The pause lets the modification time move on.
void tamper(const std::string& path, uint64_t offset) {
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good());
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// verify(): the store's own blobs are recorded verified as they land; a use (LRU touch) keeps the
// record valid; a blob changed on disk fails with Corruption naming its CID and is removed; a blob
// copied in by hand is hashed once and then recorded.
TEST(BlobStore, VerifiesBlobsOnceAndNoticesChanges) {
  ScratchDir d;
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  auto data = random_bytes(100000, 7);
  auto cid = (*s)->put(data);
  ASSERT_TRUE(cid) << cid.error().message;
  const std::string record = d / ("verified/" + cid->to_string());
  ASSERT_TRUE(std::filesystem::exists(record));
  const auto recorded = std::filesystem::last_write_time(record);
  EXPECT_TRUE((*s)->verify(*cid));
  ASSERT_TRUE((*s)->touch(*cid));
  EXPECT_TRUE((*s)->verify(*cid));
  EXPECT_EQ(std::filesystem::last_write_time(record), recorded) << "a use invalidated the verification";

  tamper((*s)->blob_path(*cid), 4321);
  auto bad = (*s)->verify(*cid);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::Corruption) << bad.error().message;
  EXPECT_NE(bad.error().message.find("blob " + cid->to_string() + " in store " + d.path() + " does not match its CID"),
            std::string::npos)
      << bad.error().message;
  EXPECT_FALSE((*s)->has(*cid));
  EXPECT_FALSE(std::filesystem::exists(record));
  EXPECT_EQ((*s)->used_bytes(), 0u);
  EXPECT_EQ((*s)->verify(*cid).error().code, ErrorCode::NotFound);

  // put() again: the blob is back, verified.
  ASSERT_TRUE((*s)->put(data));
  EXPECT_TRUE((*s)->verify(*cid));

  // A blob copied in by hand has no record: hashed, then recorded.
  auto other = random_bytes(5000, 8);
  const Cid other_cid = Cid::of(other);
  {
    std::ofstream f((*s)->blob_path(other_cid), std::ios::binary);
    f.write(reinterpret_cast<const char*>(other.data()), static_cast<std::streamsize>(other.size()));
  }
  EXPECT_FALSE(std::filesystem::exists(d / ("verified/" + other_cid.to_string())));
  EXPECT_TRUE((*s)->verify(other_cid));
  EXPECT_TRUE(std::filesystem::exists(d / ("verified/" + other_cid.to_string())));
}

// import_file and put replace a damaged copy instead of keeping it as "already stored".
TEST(BlobStore, ImportReplacesADamagedCopy) {
  ScratchDir d;
  auto s = BlobStore::open(d.path());
  ASSERT_TRUE(s);
  auto data = random_bytes(20000, 9);
  auto cid = (*s)->put(data);
  ASSERT_TRUE(cid);
  tamper((*s)->blob_path(*cid), 10);
  const std::string tmp = (*s)->temp_path("import");
  {
    std::ofstream f(tmp, std::ios::binary);
    f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  }
  auto imported = (*s)->import_file(tmp, 4096);
  ASSERT_TRUE(imported) << imported.error().message;
  EXPECT_FALSE(imported->existed);
  EXPECT_TRUE((*s)->verify(*cid));
  auto back = (*s)->read_all(*cid, 1 << 20);
  ASSERT_TRUE(back);
  EXPECT_TRUE(*back == data);
}

TEST(BlobStore, LimitEvictsLeastRecentlyUsedUnpinnedBlobs) {
  ScratchDir d;
  std::vector<Cid> cids;
  {
    auto s = BlobStore::open(d.path(), {.limit_bytes = 3500});
    ASSERT_TRUE(s);
    for (uint32_t i = 0; i < 3; ++i) {
      auto c = (*s)->put(random_bytes(1000, 10 + i));
      ASSERT_TRUE(c) << c.error().message;
      cids.push_back(*c);
    }
    // Make the use order explicit (mtime resolution may merge quick writes): 1 oldest, then 0, 2.
    struct timespec t[2] = {{1000, 0}, {1000, 0}};
    for (int i : {1, 0, 2}) {
      t[0].tv_sec = t[1].tv_sec = t[1].tv_sec + 10;
      ::utimensat(AT_FDCWD, (*s)->blob_path(cids[static_cast<size_t>(i)]).c_str(), t, 0);
    }
    ASSERT_TRUE((*s)->pin(cids[1]));
  }
  // Pins persist across reopening.
  auto s = BlobStore::open(d.path(), {.limit_bytes = 3500});
  ASSERT_TRUE(s);
  EXPECT_TRUE((*s)->pinned(cids[1]));
  EXPECT_EQ((*s)->used_bytes(), 3000u);
  auto c = (*s)->put(random_bytes(1000, 20));
  ASSERT_TRUE(c) << c.error().message;
  // Blob 1 is the oldest but pinned, so blob 0 (next oldest) goes.
  EXPECT_TRUE((*s)->has(cids[1]));
  EXPECT_FALSE((*s)->has(cids[0]));
  EXPECT_TRUE((*s)->has(cids[2]));
  EXPECT_LE((*s)->used_bytes(), 3500u);

  // Too big to ever fit: a clear error and nothing left behind.
  ASSERT_TRUE((*s)->pin(cids[2]));
  ASSERT_TRUE((*s)->pin(*c));
  auto big = random_bytes(1000, 30);
  auto r = (*s)->put(big);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::ResourceExhausted) << r.error().message;
  EXPECT_FALSE((*s)->has(Cid::of(big)));
  EXPECT_EQ(count_files(d / "tmp"), 0u);
  auto p = (*s)->open_partial(Cid::of(big), big.size(), 4096, chunk_hashes(big, 4096));
  ASSERT_FALSE(p);
  EXPECT_EQ(count_files(d / "partial"), 0u);
  ASSERT_TRUE((*s)->unpin(cids[2]));
  EXPECT_TRUE((*s)->put(big));
  EXPECT_FALSE((*s)->has(cids[2]));
}

// A real full disk: a 1 MiB tmpfs (needs root; skipped otherwise).
TEST(BlobStore, FullDiskIsAClearErrorWithNothingVisible) {
  ScratchDir d;
  std::string mnt = d / "small";
  std::filesystem::create_directory(mnt);
  if (::geteuid() != 0 || std::system(("mount -t tmpfs -o size=1m tmpfs " + mnt + " 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "cannot mount a tmpfs (needs root)";
  {
    auto s = BlobStore::open(mnt + "/store");
    ASSERT_TRUE(s) << s.error().message;
    auto big = random_bytes(3 << 20, 40);
    auto r = (*s)->put(big);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::ResourceExhausted) << r.error().message;
    auto p = (*s)->open_partial(Cid::of(big), big.size(), 1 << 20, chunk_hashes(big, 1 << 20));
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code, ErrorCode::ResourceExhausted) << p.error().message;
    EXPECT_TRUE((*s)->list().empty());
    EXPECT_EQ(count_files(mnt + "/store/tmp"), 0u);
    EXPECT_EQ(count_files(mnt + "/store/partial"), 0u);
    EXPECT_TRUE((*s)->put(random_bytes(1000, 41)));  // still usable
  }
  ASSERT_EQ(std::system(("umount " + mnt).c_str()), 0);
}

}  // namespace
}  // namespace omni::store
