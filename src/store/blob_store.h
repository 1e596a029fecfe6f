// BlobStore: a directory of content-addressed blobs, safe against crashes and bounded in size.
//
// Layout of the data directory:
//   blobs/<cid>          complete blobs, each verified against its CID before it became visible
//   partial/<cid>.data   a blob being fetched, preallocated to its full size
//   partial/<cid>.bits   its sidecar: a header and one byte per chunk, 1 once that chunk is verified
//                        and durable (the data is fsynced before the byte is written)
//   tmp/                 files being written; anything here is garbage after a crash (removed on open)
//   pins                 pinned CIDs, one per line, replaced atomically
//   lock                 flock'ed by the process that has the store open
//
// A blob becomes visible only by rename() of a complete, fsynced, hash-checked file into blobs/,
// followed by an fsync of the directory, so a crash at any point leaves either the whole verified
// blob or no blob. Blobs and partials count against `limit_bytes`; to make room the store evicts
// unpinned blobs least recently used first (the blob file's mtime records its last use). When the
// limit or the disk is full, the operation fails with an Error that says so and leaves nothing
// partial visible. One process opens a store at a time; a BlobStore is safe to use from several
// threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "base/mapped_file.h"
#include "base/result.h"
#include "store/cid.h"
#include "store/hash.h"

namespace omni::store {

struct StoreOptions {
  uint64_t limit_bytes = 0;  // 0 = no limit beyond the disk's
};

class PartialBlob;

class BlobStore {
 public:
  // Opens (creating if needed) the store in `dir`, removes leftovers in tmp/ and takes the lock.
  static Result<std::unique_ptr<BlobStore>> open(const std::string& dir, StoreOptions options = {});
  ~BlobStore();

  const std::string& dir() const { return dir_; }
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

  std::string dir_;
  StoreOptions options_;
  int lock_fd_ = -1;
  mutable std::mutex mu_;
  std::set<Cid> pins_;
  uint64_t used_ = 0;
  uint64_t temp_counter_ = 0;
};

// A blob being assembled chunk by chunk, possibly across process restarts. Each chunk is checked
// against the manifest's chunk hash before it is written; verified chunks survive a crash.
class PartialBlob {
 public:
  ~PartialBlob();
  const Cid& cid() const { return cid_; }
  uint64_t size() const { return size_; }
  uint32_t chunk_size() const { return chunk_size_; }
  uint64_t n_chunks() const { return hashes_.size(); }
  uint64_t chunk_bytes(uint64_t index) const;
  bool has_chunk(uint64_t index) const { return have_[index] != 0; }
  uint64_t chunks_present() const;

  // Verifies `bytes` against chunk `index`'s hash and writes it. A mismatch is an Error and writes
  // nothing. Durability is batched: call flush() (finish() does) to make written chunks durable.
  Result<void> write_chunk(uint64_t index, std::span<const uint8_t> bytes);
  // As write_chunk, but a mismatch is `false` (nothing written) and only I/O failures are Errors.
  Result<bool> offer_chunk(uint64_t index, std::span<const uint8_t> bytes);
  size_t unflushed() const { return unsynced_.size(); }
  // fsyncs the data written so far, then records those chunks in the sidecar.
  Result<void> flush();
  // All chunks present: checks the whole file against the CID and moves it into blobs/. The whole-
  // file hash is normally computed as chunks arrive (in order, with a few out-of-order chunks held
  // back), so the file is not read again; after a resume or badly out-of-order arrival it is.
  Result<void> finish();

 private:
  friend class BlobStore;
  PartialBlob() = default;
  BlobStore* store_ = nullptr;
  Cid cid_;
  uint64_t size_ = 0;
  uint32_t chunk_size_ = 0;
  std::vector<Digest> hashes_;
  std::vector<uint8_t> have_;      // verified and written
  std::vector<uint64_t> unsynced_; // written, not yet recorded in the sidecar
  std::string data_path_, bits_path_;
  int data_fd_ = -1, bits_fd_ = -1;
  bool finished_ = false;
  // Streaming whole-file hash: chunks [0, hashed_) are in `whole_`; verified chunks that arrived
  // ahead of that point wait in `ahead_` (at most kMaxAhead). Off (re-read at finish) once a chunk
  // was present before this PartialBlob opened or too many arrive out of order.
  static constexpr size_t kMaxAhead = 64;
  bool streaming_ = true;
  uint64_t hashed_ = 0;
  Sha256 whole_;
  std::map<uint64_t, std::vector<uint8_t>> ahead_;
  void stream(uint64_t index, std::span<const uint8_t> bytes);
};

}  // namespace omni::store
