// BlobStore: a directory of content-addressed blobs, safe against crashes and bounded in size.
//
// Layout of the data directory:
//   blobs/<cid>          complete blobs, each verified against its CID before it became visible
//   partial/<cid>.data   a blob being fetched, preallocated to its full size
//   partial/<cid>.bits   its sidecar: a header and one byte per chunk, 1 once that chunk is verified
//                        and durable (the data is fsynced before the byte is written)
//   tmp/                 files being written; anything here is garbage after a crash (removed on open)
//   verified/<cid>       the blob's verification record: the file (device, inode), size and
//                        modification time at which its bytes last hashed to its CID
//   pins                 pinned CIDs, one per line, replaced atomically
//   lock                 flock'ed by the process that has the store open
//   downloads/, models/  models fetched from URLs, kept by model_download.h (not the store's own)
//
// A blob becomes visible only by rename() of a complete, fsynced, hash-checked file into blobs/,
// followed by an fsync of the directory, so a crash at any point leaves either the whole verified
// blob or no blob. Blobs and partials count against `limit_bytes`; to make room the store evicts
// unpinned blobs least recently used first (the blob file's atime records its last use, so that
// its mtime stays a witness of content changes for verify()). When the
// limit or the disk is full, the operation fails with an Error that says so and leaves nothing
// partial visible. One process opens a store at a time; a BlobStore is safe to use from several
// threads. Every file operation goes through StoreOptions::env (the real file system by default),
// through which blob_store_crash_test fails or crashes each operation of a fetch in turn.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "base/env.h"
#include "base/mapped_file.h"
#include "base/result.h"
#include "store/chunk_buffer.h"
#include "store/cid.h"
#include "store/hash.h"

namespace omni::store {

struct StoreOptions {
  uint64_t limit_bytes = 0;  // 0 = no limit beyond the disk's
  Env* env = nullptr;        // every file operation goes through it; null = Env::Default()
};

class PartialBlob;

class BlobStore {
 public:
  // Opens (creating if needed) the store in `dir`, removes leftovers in tmp/ and takes the lock.
  static Result<std::unique_ptr<BlobStore>> open(const std::string& dir, StoreOptions options = {});
  ~BlobStore();

  const std::string& dir() const { return dir_; }
  Env& env() const { return *env_; }
  bool has(const Cid& cid) const;
  std::string blob_path(const Cid& cid) const;
  Result<uint64_t> size(const Cid& cid) const;
  std::vector<Cid> list() const;

  // Maps a complete blob read-only and records the use (for eviction order).
  Result<MappedFile> map(const Cid& cid);
  // Reads up to `length` bytes at `offset` of a complete blob.
  Result<std::vector<uint8_t>> read(const Cid& cid, uint64_t offset, uint32_t length);
  // Reads a whole (small) blob, at most `max_bytes`.
  Result<std::vector<uint8_t>> read_all(const Cid& cid, uint64_t max_bytes);

  // Stores `bytes` as a blob and returns its CID (nothing is written if it exists).
  Result<Cid> put(std::span<const uint8_t> bytes);

  // A fresh path under tmp/ for a file the caller writes and then hands to import_file.
  std::string temp_path(const std::string& hint);
  struct Imported {
    Cid cid;
    uint64_t size = 0;
    std::vector<Digest> chunk_hashes;
    bool existed = false;  // the store already held this blob
  };
  // Re-hashes a stored blob (whole and per chunk); `cid` is then the CID its bytes really have.
  Result<Imported> hash_blob(const Cid& cid, uint32_t chunk_size) const;
  // Records a use of the blob (LRU eviction order).
  Result<void> touch(const Cid& cid);
  // Checks that a complete blob's bytes hash to its CID, before they are served or loaded. Hashes
  // once: the result is recorded (verified/<cid>) and trusted while the file's device, inode, size
  // and modification time stay the same; blobs the store wrote itself (put, import_file, a
  // finished fetch) are recorded as they land. Errors: NotFound when absent; Corruption, naming
  // the CID, when the bytes do not match (the blob is then removed from the store, so a fetch can
  // bring it again); the I/O error otherwise.
  Result<void> verify(const Cid& cid);
  // Moves a finished file (under tmp/) into the store: hashes it (whole and per chunk), fsyncs it,
  // makes room (eviction) and renames it into blobs/. An identical blob already present is kept and
  // the file removed. The file is removed on every error too.
  Result<Imported> import_file(const std::string& path, uint32_t chunk_size);

  // A resumable partial blob of known size and chunk table (see PartialBlob). Reserves its size
  // against the limit (evicting if needed) and on disk (fallocate) up front, so a full store or
  // disk is reported before any byte is fetched.
  Result<std::unique_ptr<PartialBlob>> open_partial(const Cid& cid, uint64_t size, uint32_t chunk_size,
                                                    std::vector<Digest> chunk_hashes);

  Result<void> pin(const Cid& cid);
  // Pins several blobs with one durable update of the pins file (present or not yet fetched).
  Result<void> pin_all(std::span<const Cid> cids);
  Result<void> unpin(const Cid& cid);
  bool pinned(const Cid& cid) const;
  Result<void> remove(const Cid& cid);

  uint64_t used_bytes() const;
  uint64_t limit_bytes() const { return options_.limit_bytes; }

 private:
  friend class PartialBlob;
  BlobStore() = default;
  // Evicts unpinned blobs (LRU) until `bytes` more fit under the limit; never evicts `keep`.
  Result<void> make_room_locked(uint64_t bytes, const Cid* keep);
  Result<void> save_pins_locked();
  void release(uint64_t bytes);
  Result<void> commit_file(const std::string& path, const Cid& cid, uint64_t size, bool reserved);
  std::string verified_path(const Cid& cid) const;
  // Records that the blob, as it is on disk now, matches its CID; best effort (a missing record
  // only costs a hash).
  void record_verified(const Cid& cid);

  std::string dir_;
  StoreOptions options_;
  Env* env_ = nullptr;
  std::unique_ptr<File> lock_;
  mutable std::mutex mu_;
  std::set<Cid> pins_;
  uint64_t used_ = 0;
  uint64_t temp_counter_ = 0;
};

// A blob being assembled chunk by chunk, possibly across process restarts. Each chunk is checked
// against the manifest's chunk hash before it is written; verified chunks survive a crash.
//
// Several threads may offer *different* chunks at once and flush() meanwhile; finish() comes after
// every offer has returned. Chunks whose offsets and sizes are multiples of a page are written with
// direct I/O from their (page-aligned) buffers where the file system allows it: a fetched model is
// written once and read later, so it need not pass through the page cache (which would cost a copy
// and fresh page-cache memory per byte); the rest, and everything on file systems without direct
// I/O, is written through the page cache.
class PartialBlob {
 public:
  ~PartialBlob();
  const Cid& cid() const { return cid_; }
  uint64_t size() const { return size_; }
  uint32_t chunk_size() const { return chunk_size_; }
  uint64_t n_chunks() const { return hashes_.size(); }
  uint64_t chunk_bytes(uint64_t index) const;
  bool has_chunk(uint64_t index) const;
  uint64_t chunks_present() const;

  // Verifies `bytes` against chunk `index`'s hash and writes it. A mismatch is an Error and writes
  // nothing. Durability is batched: call flush() (finish() does) to make written chunks durable.
  Result<void> write_chunk(uint64_t index, std::span<const uint8_t> bytes);
  // As write_chunk, but a mismatch is `false` (nothing written) and only I/O failures are Errors.
  Result<bool> offer_chunk(uint64_t index, ChunkBuffer bytes);
  Result<bool> offer_chunk(uint64_t index, std::span<const uint8_t> bytes);
  // Chunks written since the last flush.
  size_t unflushed() const;
  // A durability point: fsyncs the data written so far, then records those chunks in the sidecar
  // (chunks written while it runs wait for the next one).
  Result<void> flush();
  // All chunks present: checks the whole file against the CID and moves it into blobs/. The whole-
  // file hash is computed as chunks are offered (in order; chunks that arrive early wait in memory,
  // up to kMaxAheadBytes), so the file is not read again; after a resume or badly out-of-order
  // arrival it is.
  Result<void> finish();

 private:
  friend class BlobStore;
  PartialBlob() = default;
  Result<void> write_at(uint64_t index, const ChunkBuffer& bytes);
  // Whether a thread offering chunk `index` should wait to feed it to the whole-file hash itself.
  bool worth_waiting(uint64_t index) const;
  // Feeds verified chunk `index` to the whole-file hash, or parks it until the chunks before it are in.
  void stream(uint64_t index, ChunkBuffer bytes, std::unique_lock<std::mutex>& lock);
  // The stream's owner feeds it the parked chunks that are next in order, then lets go.
  void drain(std::unique_lock<std::mutex>& lock);

  BlobStore* store_ = nullptr;
  Cid cid_;
  uint64_t size_ = 0;
  uint32_t chunk_size_ = 0;
  std::vector<Digest> hashes_;
  std::string data_path_, bits_path_;
  std::unique_ptr<File> data_, bits_;
  std::unique_ptr<File> direct_;  // the data file opened for direct I/O, or null where not possible
  std::atomic<bool> direct_ok_{true};  // false once the file system refused a direct write
  bool finished_ = false;              // finish() ran (only finish() and the destructor touch it)
  std::mutex flush_mu_;                // one flush at a time, so sidecar updates stay in order

  mutable std::mutex mu_;  // guards everything below
  std::vector<uint8_t> have_;       // verified and written
  std::vector<uint8_t> offering_;   // being offered by some thread right now
  std::vector<uint64_t> unsynced_;  // written, not yet recorded in the sidecar
  // Streaming whole-file hash: chunks [0, hashed_) are in `whole_`. One offering thread at a time
  // owns it (`draining_`): normally the one holding chunk hashed_, which hashes that chunk for the
  // manifest and the CID in one pass (Sha256::update_and_hash); verified chunks that arrived ahead
  // of that point wait in `ahead_` and are fed by the owner. Off (re-read at finish) once a chunk
  // was present before this PartialBlob opened or more than kMaxAheadBytes wait.
  static constexpr uint64_t kMaxAheadBytes = 64ull << 20;
  bool streaming_ = true;
  bool draining_ = false;
  std::condition_variable drained_;
  uint64_t hashed_ = 0;
  uint64_t ahead_bytes_ = 0;
  Sha256 whole_;
  std::map<uint64_t, ChunkBuffer> ahead_;
};

}  // namespace omni::store
