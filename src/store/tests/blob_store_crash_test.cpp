// Crash safety of the blob store under the fetch engine: a fetch of several shards of a model is run
// once for every file operation it makes, failing that operation (an I/O error) or crashing at it
// (CrashEnv: only what was made durable survives). After each, a store reopened on the directory
// must hold every blob whole and matching its CID, or not at all, and a new fetch must complete and
// leave the model verified.
#include <algorithm>
#include <cstdio>
#include <string>

#include "crash_env.h"
#include "fake_peer.h"
#include "store/shard.h"
#include "test_util.h"

namespace omni::store {
namespace {

using testing::CrashEnv;
using testing::FakePeer;
using testing::ScratchDir;

const std::string kShared = OMNI_SHARED_DIR;
// Three block shards of 7 or 8 chunks each, plus the manifest: several blobs assembled at once,
// several durability points each (flush_every), small enough to repeat a few hundred times.
const ShardRange kRange{.block_begin = 0, .block_end = 3, .embeddings = false, .head = false};
constexpr uint32_t kChunk = 64 * 1024;

class BlobStoreCrash : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    source_dir_ = new ScratchDir();
    auto store = BlobStore::open(source_dir_->path());
    ASSERT_TRUE(store) << store.error().message;
    source_ = store->release();
    auto rep = shard_model(kShared + "/models/synth-llama-q4_0.gguf", *source_, kChunk);
    ASSERT_TRUE(rep) << rep.error().message;
    model_ = rep->model;
  }
  static void TearDownTestSuite() {
    delete source_;
    delete source_dir_;
  }

  static FetchOptions options() {
    // Two durability points per shard or so, on a schedule of chunks, not of time.
    return {.window = 4, .flush_every = 3, .flush_interval_ms = 600'000, .workers = 3};
  }

  // Fetches the model into `dir` through `env`; the result does not matter (it may fail anywhere).
  static void fetch_through(const std::string& dir, Env& env) {
    auto store = BlobStore::open(dir, {.env = &env});
    if (!store) return;
    auto peer = std::make_shared<FakePeer>("source");
    peer->serve_store(source_);
    Fetcher fetcher(**store, {peer}, options());
    (void)fetcher.fetch_model(model_, kRange);
  }

  // Reopens the store as a restarted process would and checks it: every blob whole and verified,
  // then a new fetch completes and the model verifies. Returns the number of blobs found intact.
  static size_t check_recovery(const std::string& dir, const std::string& what) {
    auto store = BlobStore::open(dir);
    EXPECT_TRUE(store) << what << ": " << store.error().message;
    if (!store) return 0;
    const auto blobs = (*store)->list();
    for (const Cid& cid : blobs) {
      auto bytes = (*store)->read_all(cid, 64ull << 20);
      EXPECT_TRUE(bytes) << what << ": " << cid.to_string() << ": " << bytes.error().message;
      if (bytes) {
        EXPECT_EQ(Cid::of(*bytes), cid) << what << ": blob " << cid.to_string() << " is not whole";
      }
    }
    auto peer = std::make_shared<FakePeer>("source");
    peer->serve_store(source_);
    Fetcher fetcher(**store, {peer}, options());
    auto again = fetcher.fetch_model(model_, kRange);
    EXPECT_TRUE(again) << what << ": the fetch after recovery failed: " << again.error().message;
    if (again) {
      for (const ShardEntry* s : shards_for_range(*again, kRange)) {
        auto h = (*store)->hash_blob(s->cid, kChunk);
        EXPECT_TRUE(h && h->cid == s->cid && h->chunk_hashes == s->chunk_hashes)
            << what << ": " << s->label() << " does not verify after the re-fetch";
      }
    }
    return blobs.size();
  }

  // Fails (kFail) or crashes at (kCrash) each operation of a fetch in turn, from the first to the
  // last, checking the recovery after each. Threads make the count vary a little from run to run (a
  // durability point more or less), so it goes on past the longest fault-free run while faults fire.
  static void every_operation(CrashEnv::Mode mode, const std::string& name) {
    uint64_t most_ops = 0;
    for (int run = 0; run < 3; ++run) {
      ScratchDir d;
      CrashEnv env(d.path());
      fetch_through(d.path(), env);
      most_ops = std::max(most_ops, env.operations());
      EXPECT_EQ(check_recovery(d.path(), name + " with no fault"), 4u);  // the manifest and three shards
    }
    ASSERT_GT(most_ops, 50u);
    uint64_t n = 1;
    for (;; ++n) {
      ScratchDir d;
      CrashEnv env(d.path());
      env.fail_at(n, mode);
      fetch_through(d.path(), env);
      const bool fired = env.fired();
      if (mode == CrashEnv::Mode::kCrash) env.restart();
      check_recovery(d.path(), name + " at operation " + std::to_string(n));
      if (HasFailure() || (n >= most_ops && !fired) || n > 2 * most_ops) break;
    }
    EXPECT_GE(n, most_ops) << name;
    std::printf("%s: faults at operations 1..%llu (complete fetches made up to %llu)\n", name.c_str(),
                static_cast<unsigned long long>(n), static_cast<unsigned long long>(most_ops));
  }

  static ScratchDir* source_dir_;
  static BlobStore* source_;
  static Cid model_;
};

ScratchDir* BlobStoreCrash::source_dir_ = nullptr;
BlobStore* BlobStoreCrash::source_ = nullptr;
Cid BlobStoreCrash::model_;

TEST_F(BlobStoreCrash, EveryOperationOfAFetchCanFail) { every_operation(CrashEnv::Mode::kFail, "fail"); }

TEST_F(BlobStoreCrash, EveryOperationOfAFetchCanCrash) { every_operation(CrashEnv::Mode::kCrash, "crash"); }

}  // namespace
}  // namespace omni::store
