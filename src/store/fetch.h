// The fetch engine: assembles blobs in a BlobStore from byte ranges served by several peers.
//
// Peers are reached through the abstract ChunkSource (a Cap'n Proto client in service.h, in-process
// fakes in the tests). Per peer, `window` requests are kept in flight — a sliding window, so that a
// link with a long round trip stays full (window >= bandwidth * RTT / chunk_size, plus one). Chunks
// are handed out from one queue to whichever peer has room, so faster peers take more of them.
// Every chunk is checked against the manifest's chunk hash before it is written (PartialBlob), so:
//   - a peer that sends a wrong byte is dropped at once and its chunks go to the others;
//   - a peer that fails `max_failures` times, or does not answer within `request_timeout_ms`, is
//     dropped too;
//   - a fetch that stops (error, cancel, crash) resumes later without fetching verified chunks again;
//   - at the end ("endgame") idle peers duplicate the requests still outstanding at slower peers,
//     so one slow peer cannot hold up completion.
//
// Pipelining: the calling thread only schedules. Arrived chunks are verified and written by a pool
// of worker threads (hashing chunk i while chunk i+1 is decrypted on the peer's thread), and
// durability points and the completion of a blob (fsync, rename) run on a thread of their own, so
// the window never waits on the disk. fetch_model assembles up to `open_blobs` shards at once: the
// next shard's chunks are requested while the previous one's last chunks arrive and it completes.
// A chunk holds its peer's window slot until it is verified, which bounds the memory in use to
// window x peers chunks (plus those waiting for the whole-file hash, see PartialBlob).
// All file operations go through the store's Env, and so does the clock (timeouts, flush intervals).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "store/blob_store.h"
#include "store/chunk_buffer.h"
#include "store/manifest.h"
#include "store/shard.h"

namespace omni::store {

class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  virtual std::string name() const = 0;
  using Done = std::function<void(Result<ChunkBuffer>)>;
  // Starts reading bytes [offset, offset + length) of blob `cid` — fewer at the blob's end — and
  // calls `done` exactly once, from any thread, with the bytes or an error. Must not wait for the
  // transfer: the engine keeps several reads in flight. `done` may outlive the fetch that asked.
  virtual void read(const Cid& cid, uint64_t offset, uint32_t length, Done done) = 0;
};

struct FetchProgress {
  std::string blob;          // label of the blob being fetched ("block 3", "manifest")
  uint64_t total_bytes = 0;  // of everything this fetch needs
  uint64_t done_bytes = 0;   // verified so far, resumed chunks included
  uint64_t resumed_bytes = 0;
  uint32_t active_peers = 0;
};

struct FetchStats {
  uint64_t chunks_fetched = 0;     // verified chunks received and written
  uint64_t chunks_resumed = 0;     // chunks already present from an earlier, interrupted fetch
  uint64_t requests = 0;           // reads issued (duplicates and retries included)
  uint64_t bad_chunks = 0;         // chunks that failed verification
  uint64_t bytes_fetched = 0;
  std::vector<std::string> dropped;  // "peer: reason"
};

struct FetchOptions {
  uint32_t window = 16;               // reads in flight per peer
  uint32_t max_failures = 3;          // transport errors before a peer is dropped
  uint32_t request_timeout_ms = 60'000;
  uint32_t flush_every = 64;          // chunks between durability points (fdatasync + sidecar)
  uint32_t flush_interval_ms = 1000;  // ... or this long, whichever comes first, so that a slow
                                      // fetch that is interrupted loses at most this much work
  uint32_t workers = 0;     // threads verifying and writing chunks; 0: one per CPU plus two (they
                            // also wait for the disk and for their turn at the blob's hash), 4 to 16
  uint32_t open_blobs = 4;  // blobs assembled at once by fetch_model
  std::function<void(const FetchProgress&)> progress = nullptr;
  std::function<bool()> cancelled = nullptr;  // polled; a cancelled fetch keeps its verified chunks
};

class Fetcher {
 public:
  Fetcher(BlobStore& store, std::vector<std::shared_ptr<ChunkSource>> peers, FetchOptions options = {});
  ~Fetcher();

  // Fetches one blob whose chunk table is known (from a verified manifest), resuming a partial.
  // Errors: no peer left (each dropped peer with its reason), cancelled, a full store or disk.
  Result<void> fetch_blob(const Cid& cid, uint64_t size, uint32_t chunk_size, const std::vector<Digest>& hashes,
                          const std::string& label = "blob");
  // Fetches a small blob with no chunk table (a manifest) whole, checking it against its CID.
  Result<std::vector<uint8_t>> fetch_small(const Cid& cid, uint64_t max_bytes);
  // Blobs already in the store are checked first (BlobStore::verify); one damaged on disk is
  // removed there and fetched again.
  // Fetches the manifest `model` and the shards `range` needs, pins them (before fetching, so that
  // making room for one shard never evicts another), returns the manifest.
  Result<Manifest> fetch_model(const Cid& model, const ShardRange& range = {});

  const FetchStats& stats() const { return stats_; }
  // Peers not dropped so far.
  size_t active_peers() const;

 private:
  struct Peer;
  struct Shared;
  struct Job;
  // Fetches `jobs` (distinct blobs not in the store); progress totals cover all of them.
  Result<void> run(std::vector<Job> jobs);
  void report(const std::string& label);

  BlobStore& store_;
  std::vector<std::unique_ptr<Peer>> peers_;
  FetchOptions options_;
  FetchStats stats_;
  std::shared_ptr<Shared> shared_;
  uint64_t total_bytes_ = 0, done_bytes_ = 0, resumed_bytes_ = 0;
};

}  // namespace omni::store
