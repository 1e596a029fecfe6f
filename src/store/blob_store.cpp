#include "store/blob_store.h"

#include "base/system_error.h"
#include "store/manifest.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>

namespace omni::store {
namespace {

constexpr uint64_t kBitsMagic = 0x3173746962696d6fULL;  // "omnibits1" (8 bytes, little-endian)
constexpr size_t kBitsHeader = 24;                      // magic, size, chunk_size (u64 each)
constexpr uint64_t kMaxPinsBytes = 64ull << 20;         // a million pins

// Hashes a whole file, and each chunk of it when `chunks` is set.
Result<Digest> hash_file(File& file, uint32_t chunk_size, std::vector<Digest>* chunks, uint64_t* size) {
  Sha256 whole, chunk;
  std::vector<uint8_t> buf(1 << 20);
  uint64_t total = 0, in_chunk = 0;
  for (;;) {
    auto n = file.read_at(total, buf);
    if (!n) return n.error();
    if (*n == 0) break;
    std::span<const uint8_t> data(buf.data(), *n);
    whole.update(data);
    total += data.size();
    while (chunks && !data.empty()) {
      size_t take = std::min<uint64_t>(data.size(), chunk_size - in_chunk);
      chunk.update(data.first(take));
      in_chunk += take;
      data = data.subspan(take);
      if (in_chunk == chunk_size) {
        chunks->push_back(chunk.finish());
        in_chunk = 0;
      }
    }
  }
  if (chunks && in_chunk > 0) chunks->push_back(chunk.finish());
  if (size) *size = total;
  return whole.finish();
}

std::vector<std::string> list_or_empty(Env& env, const std::string& dir) {
  auto names = env.list_dir(dir);
  return names ? std::move(*names) : std::vector<std::string>{};
}

uint64_t size_or_zero(Env& env, const std::string& path) {
  auto info = env.stat(path);
  return info ? info->size : 0;
}

}  // namespace

Result<std::unique_ptr<BlobStore>> BlobStore::open(const std::string& dir, StoreOptions options) {
  std::unique_ptr<BlobStore> s(new BlobStore());
  s->dir_ = dir;
  s->options_ = options;
  s->env_ = options.env ? options.env : &Env::Default();
  Env& env = *s->env_;
  for (const char* sub : {"", "/blobs", "/partial", "/tmp", "/verified"})
    if (auto r = env.make_dir(dir + sub); !r) return r.error();
  auto lock = env.lock(dir + "/lock");
  if (!lock) {
    if (lock.error().is(ErrorCode::Unavailable))
      return Error{ErrorCode::Unavailable, dir + ": the store is in use by another process"};
    return lock.error();
  }
  s->lock_ = std::move(*lock);
  // Anything in tmp/ is an unfinished write from a process that died: never visible, now garbage.
  auto leftovers = env.list_dir(dir + "/tmp");
  if (!leftovers) return leftovers.error();
  for (const auto& n : *leftovers) (void)env.remove(dir + "/tmp/" + n);
  for (const auto& n : list_or_empty(env, dir + "/blobs")) {
    if (!Cid::parse(n)) {
      // Not ours (a stray file): ignore it rather than guess.
      continue;
    }
    s->used_ += size_or_zero(env, dir + "/blobs/" + n);
  }
  for (const auto& n : list_or_empty(env, dir + "/partial"))
    if (n.ends_with(".data")) s->used_ += size_or_zero(env, dir + "/partial/" + n);
  // Records of blobs that are gone (removed while another process had the store, or a crash
  // between the two removals) would only pile up.
  for (const auto& n : list_or_empty(env, dir + "/verified"))
    if (!env.stat(dir + "/blobs/" + n)) (void)env.remove(dir + "/verified/" + n);
  auto pins = read_file(env, dir + "/pins", kMaxPinsBytes);
  if (!pins && !pins.error().is(ErrorCode::NotFound)) return pins.error();
  if (pins) {
    std::istringstream text(std::string(pins->begin(), pins->end()));
    for (std::string line; std::getline(text, line);)
      if (auto c = Cid::parse(line)) s->pins_.insert(*c);
  }
  return s;
}

BlobStore::~BlobStore() = default;

namespace {
// A blob that cannot be opened: NotFound when it is absent, else the I/O error (permissions, EIO)
// with the blob named, so a caller never takes a failing disk for a missing blob.
Error missing_blob(const Cid& cid, const Error& cause) {
  if (cause.is(ErrorCode::NotFound)) return Error{ErrorCode::NotFound, "blob " + cid.to_string() + " is not in the store"};
  return cause.with_context("blob " + cid.to_string());
}
}  // namespace

std::string BlobStore::blob_path(const Cid& cid) const { return dir_ + "/blobs/" + cid.to_string(); }

bool BlobStore::has(const Cid& cid) const { return env_->stat(blob_path(cid)).ok(); }

Result<uint64_t> BlobStore::size(const Cid& cid) const {
  auto info = env_->stat(blob_path(cid));
  if (!info) return missing_blob(cid, info.error());
  return info->size;
}

std::vector<Cid> BlobStore::list() const {
  std::vector<Cid> out;
  for (const auto& n : list_or_empty(*env_, dir_ + "/blobs"))
    if (auto c = Cid::parse(n)) out.push_back(*c);
  return out;
}

Result<MappedFile> BlobStore::map(const Cid& cid) {
  std::string path = blob_path(cid);
  auto m = MappedFile::open(path);
  if (!m) return missing_blob(cid, m.error());
  (void)env_->touch(path);  // records the use for LRU eviction
  return m;
}

Result<BlobStore::Imported> BlobStore::hash_blob(const Cid& cid, uint32_t chunk_size) const {
  Imported out;
  std::string path = blob_path(cid);
  auto file = env_->open(path, Env::Open::kRead);
  if (!file) return missing_blob(cid, file.error());
  auto digest = hash_file(**file, chunk_size, &out.chunk_hashes, &out.size);
  if (!digest) return digest.error();
  out.cid = Cid::from_digest(*digest);
  out.existed = true;
  return out;
}

std::string BlobStore::verified_path(const Cid& cid) const { return dir_ + "/verified/" + cid.to_string(); }

namespace {
// What a verification is valid for: this file (device, inode) with this size and content time.
std::string verification_key(const Env::FileInfo& info) {
  return "omni-verified-1 " + std::to_string(info.device) + " " + std::to_string(info.inode) + " " +
         std::to_string(info.size) + " " + std::to_string(info.modified.time_since_epoch().count()) + "\n";
}
}  // namespace

void BlobStore::record_verified(const Cid& cid) {
  auto info = env_->stat(blob_path(cid));
  if (!info) return;
  const std::string key = verification_key(*info);
  // Not fsynced: a record lost in a crash only costs one more hash.
  const std::string tmp = temp_path("verified");
  auto file = env_->open(tmp, Env::Open::kCreateNew);
  if (!file) return;
  auto w = (*file)->write_at(0, {reinterpret_cast<const uint8_t*>(key.data()), key.size()});
  file->reset();
  if (!w || !env_->rename(tmp, verified_path(cid))) (void)env_->remove(tmp);
}

Result<void> BlobStore::verify(const Cid& cid) {
  const std::string path = blob_path(cid);
  auto before = env_->stat(path);
  if (!before) return missing_blob(cid, before.error());
  const std::string key = verification_key(*before);
  if (auto record = read_file(*env_, verified_path(cid), 256); record && std::string(record->begin(), record->end()) == key)
    return {};
  auto file = env_->open(path, Env::Open::kRead);
  if (!file) return missing_blob(cid, file.error());
  auto digest = hash_file(**file, 0, nullptr, nullptr);
  file->reset();
  if (!digest) return digest.error().with_context("verifying blob " + cid.to_string());
  if (*digest != cid.digest) {
    const std::string actual = Cid::from_digest(*digest).to_string();
    // Its bytes are not the blob's: nothing may use them, and a fetch can bring the real ones.
    (void)env_->remove(verified_path(cid));
    const bool removed = remove(cid).ok();
    return Error{ErrorCode::Corruption,
                 "blob " + cid.to_string() + " in store " + dir_ + " does not match its CID (its bytes hash to " +
                     actual + "): it was changed or damaged on disk" +
                     (removed ? "; removed from the store, fetch it again" : "")};
  }
  // Recorded only when the file did not change while it was hashed.
  if (auto after = env_->stat(path); after && verification_key(*after) == key) record_verified(cid);
  return {};
}

Result<void> BlobStore::touch(const Cid& cid) {
  return env_->touch(blob_path(cid));
}

Result<std::vector<uint8_t>> BlobStore::read(const Cid& cid, uint64_t offset, uint32_t length) {
  std::string path = blob_path(cid);
  auto file = env_->open(path, Env::Open::kRead);
  if (!file) return missing_blob(cid, file.error());
  std::vector<uint8_t> out(length);
  auto n = (*file)->read_at(offset, out);
  if (!n) return n.error();
  out.resize(*n);
  return out;
}

Result<std::vector<uint8_t>> BlobStore::read_all(const Cid& cid, uint64_t max_bytes) {
  auto sz = size(cid);
  if (!sz) return sz.error();
  if (*sz > max_bytes)
    return Error{ErrorCode::InvalidArgument, "blob " + cid.to_string() + " has " + std::to_string(*sz) +
                                                 " bytes, more than " + std::to_string(max_bytes)};
  return read(cid, 0, static_cast<uint32_t>(*sz));
}

std::string BlobStore::temp_path(const std::string& hint) {
  std::lock_guard lock(mu_);
  return dir_ + "/tmp/" + hint + "." + std::to_string(::getpid()) + "." + std::to_string(++temp_counter_);
}

Result<Cid> BlobStore::put(std::span<const uint8_t> bytes) {
  Cid cid = Cid::of(bytes);
  if (has(cid) && verify(cid).ok()) return cid;  // a damaged copy is removed by verify and replaced
  std::string tmp = temp_path("put");
  auto file = env_->open(tmp, Env::Open::kCreateNew);
  if (!file) return file.error();
  auto w = (*file)->write_at(0, bytes);
  if (w) w = (*file)->make_read_only();
  if (w) w = (*file)->sync();
  file->reset();
  if (!w) {
    (void)env_->remove(tmp);
    return w.error();
  }
  if (auto r = commit_file(tmp, cid, bytes.size(), false); !r) return r.error();
  return cid;
}

Result<BlobStore::Imported> BlobStore::import_file(const std::string& path, uint32_t chunk_size) {
  Imported out;
  auto file = env_->open(path, Env::Open::kRead);
  if (!file) {
    (void)env_->remove(path);
    return file.error();
  }
  auto digest = hash_file(**file, chunk_size, &out.chunk_hashes, &out.size);
  if (!digest) {
    file->reset();
    (void)env_->remove(path);
    return digest.error();
  }
  out.cid = Cid::from_digest(*digest);
  if (has(out.cid) && verify(out.cid).ok()) {  // identical content is stored once; a damaged copy is replaced
    file->reset();
    (void)env_->remove(path);
    out.existed = true;
    return out;
  }
  auto synced = (*file)->make_read_only();
  if (synced) synced = (*file)->sync();
  file->reset();
  if (!synced) {
    (void)env_->remove(path);
    return synced.error();
  }
  if (auto r = commit_file(path, out.cid, out.size, false); !r) return r.error();
  return out;
}

// Renames a complete, fsynced file into blobs/ and fsyncs the directory. Removes `path` on error.
Result<void> BlobStore::commit_file(const std::string& path, const Cid& cid, uint64_t size, bool reserved) {
  std::unique_lock lock(mu_);
  if (!reserved) {
    if (auto r = make_room_locked(size, &cid); !r) {
      (void)env_->remove(path);
      return r.error();
    }
    used_ += size;
  }
  if (auto r = env_->rename(path, blob_path(cid)); !r) {
    (void)env_->remove(path);
    used_ -= size;
    return r.error();
  }
  lock.unlock();
  // Every caller hashed the file against `cid` just now.
  record_verified(cid);
  return env_->sync_dir(dir_ + "/blobs");
}

Result<void> BlobStore::make_room_locked(uint64_t bytes, const Cid* keep) {
  if (options_.limit_bytes == 0 || used_ + bytes <= options_.limit_bytes) return {};
  struct Candidate {
    Cid cid;
    std::chrono::system_clock::time_point used;
    uint64_t size;
  };
  std::vector<Candidate> candidates;
  for (const auto& n : list_or_empty(*env_, dir_ + "/blobs")) {
    auto c = Cid::parse(n);
    if (!c || pins_.count(*c) || (keep && *c == *keep)) continue;
    auto info = env_->stat(dir_ + "/blobs/" + n);
    if (!info) continue;
    candidates.push_back({*c, info->accessed, info->size});
  }
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) { return a.used < b.used; });
  uint64_t freeable = 0;
  for (const auto& c : candidates) freeable += c.size;
  if (used_ + bytes > options_.limit_bytes + freeable)
    return Error{ErrorCode::ResourceExhausted, "store " + dir_ + " is full: " + std::to_string(bytes) +
                                                   " more bytes needed, " + std::to_string(used_) + " of " +
                                                   std::to_string(options_.limit_bytes) + " bytes used and only " +
                                                   std::to_string(freeable) + " evictable (the rest is pinned)"};
  for (const auto& c : candidates) {
    if (used_ + bytes <= options_.limit_bytes) break;
    if (env_->remove(blob_path(c.cid))) {
      used_ -= std::min(used_, c.size);
      (void)env_->remove(verified_path(c.cid));
    }
  }
  return {};
}

void BlobStore::release(uint64_t bytes) {
  std::lock_guard lock(mu_);
  used_ -= std::min(used_, bytes);
}

Result<void> BlobStore::save_pins_locked() {
  std::ostringstream text;
  for (const auto& c : pins_) text << c.to_string() << "\n";
  std::string data = text.str();
  std::string tmp = dir_ + "/tmp/pins." + std::to_string(::getpid()) + "." + std::to_string(++temp_counter_);
  auto file = env_->open(tmp, Env::Open::kCreateNew);
  if (!file) return file.error();
  auto w = (*file)->write_at(0, {reinterpret_cast<const uint8_t*>(data.data()), data.size()});
  if (w) w = (*file)->sync();
  file->reset();
  if (w) w = env_->rename(tmp, dir_ + "/pins");
  if (!w) {
    (void)env_->remove(tmp);
    return w;
  }
  return env_->sync_dir(dir_);
}

Result<void> BlobStore::pin(const Cid& cid) {
  std::lock_guard lock(mu_);
  if (!pins_.insert(cid).second) return {};
  return save_pins_locked();
}

Result<void> BlobStore::pin_all(std::span<const Cid> cids) {
  std::lock_guard lock(mu_);
  bool added = false;
  for (const Cid& c : cids) added |= pins_.insert(c).second;
  if (!added) return {};
  return save_pins_locked();
}

Result<void> BlobStore::unpin(const Cid& cid) {
  std::lock_guard lock(mu_);
  if (!pins_.erase(cid)) return {};
  return save_pins_locked();
}

bool BlobStore::pinned(const Cid& cid) const {
  std::lock_guard lock(mu_);
  return pins_.count(cid) != 0;
}

Result<void> BlobStore::remove(const Cid& cid) {
  auto sz = size(cid);
  if (!sz) return sz.error();
  if (auto r = env_->remove(blob_path(cid)); !r) return r;
  (void)env_->remove(verified_path(cid));
  release(*sz);
  return {};
}

uint64_t BlobStore::used_bytes() const {
  std::lock_guard lock(mu_);
  return used_;
}

// ---- partial blobs ----

Result<std::unique_ptr<PartialBlob>> BlobStore::open_partial(const Cid& cid, uint64_t size, uint32_t chunk_size,
                                                             std::vector<Digest> chunk_hashes) {
  if (chunk_size == 0 || chunk_hashes.size() != chunk_count(size, chunk_size))
    return Error{ErrorCode::Corruption, "partial blob " + cid.to_string() + ": chunk table does not match its size"};
  std::unique_ptr<PartialBlob> p(new PartialBlob());
  p->store_ = this;
  p->cid_ = cid;
  p->size_ = size;
  p->chunk_size_ = chunk_size;
  p->hashes_ = std::move(chunk_hashes);
  p->have_.assign(p->hashes_.size(), 0);
  p->offering_.assign(p->hashes_.size(), 0);
  std::string base = dir_ + "/partial/" + cid.to_string();
  p->data_path_ = base + ".data";
  p->bits_path_ = base + ".bits";

  // Resume: a sidecar with the same geometry keeps its verified chunks; anything else starts over.
  uint64_t existing = 0;
  bool resume = false;
  {
    if (auto bits_file = env_->open(p->bits_path_, Env::Open::kRead)) {
      std::vector<uint8_t> bits(kBitsHeader + p->hashes_.size());
      auto n = (*bits_file)->read_at(0, bits);
      bits_file->reset();
      uint64_t hdr[3];
      if (n && *n >= kBitsHeader) {
        std::memcpy(hdr, bits.data(), sizeof hdr);
        if (hdr[0] == kBitsMagic && hdr[1] == size && hdr[2] == chunk_size &&
            size_or_zero(*env_, p->data_path_) == size) {
          resume = true;
          for (size_t i = 0; i + kBitsHeader < *n; ++i) p->have_[i] = bits[kBitsHeader + i] == 1;
          // Chunks from an earlier run are not in this run's streaming hash: finish() re-reads.
          if (std::find(p->have_.begin(), p->have_.end(), uint8_t{1}) != p->have_.end()) p->streaming_ = false;
        }
      }
    }
    if (auto info = env_->stat(p->data_path_)) existing = info->size;
  }
  if (!resume) {
    (void)env_->remove(p->bits_path_);
    if (env_->remove(p->data_path_)) release(existing);
    existing = 0;
  }
  {
    std::lock_guard lock(mu_);
    if (!resume) {
      if (auto r = make_room_locked(size, &cid); !r) return r.error();
      used_ += size;
    }
  }
  auto data = env_->open(p->data_path_, Env::Open::kReadWrite);
  if (!data) {
    if (!resume) release(size);
    return data.error();
  }
  p->data_ = std::move(*data);
  if (!resume && size > 0) {
    // Reserve the disk space now: a full disk is reported before anything is fetched.
    if (auto r = p->data_->allocate(size); !r) {
      p->data_.reset();
      (void)env_->remove(p->data_path_);
      release(size);
      return r.error();
    }
  }
  auto bits = env_->open(p->bits_path_, Env::Open::kReadWrite);
  if (!bits) return bits.error();
  p->bits_ = std::move(*bits);
  if (!resume) {
    // No fsync here: a sidecar (or data file) lost in a crash only means starting this blob over,
    // and the first flush() makes both durable before the sidecar claims any chunk.
    uint64_t hdr[3] = {kBitsMagic, size, chunk_size};
    std::vector<uint8_t> init(kBitsHeader + p->hashes_.size(), 0);
    std::memcpy(init.data(), hdr, sizeof hdr);
    if (auto r = p->bits_->write_at(0, init); !r) return r.error();
  }
  // Direct I/O needs page-aligned offsets, so whole chunks qualify only when the chunk size is a
  // multiple of a page; file systems without O_DIRECT (tmpfs) refuse the open.
  if (chunk_size % ChunkBuffer::kAlignment == 0)
    if (auto direct = env_->open(p->data_path_, Env::Open::kDirectWrite)) p->direct_ = std::move(*direct);
  return p;
}

PartialBlob::~PartialBlob() {
  if (!finished_ && data_) (void)flush();
}

uint64_t PartialBlob::chunk_bytes(uint64_t index) const {
  uint64_t begin = index * chunk_size_;
  return std::min<uint64_t>(chunk_size_, size_ - begin);
}

bool PartialBlob::has_chunk(uint64_t index) const {
  std::lock_guard lock(mu_);
  return have_[index] != 0;
}

uint64_t PartialBlob::chunks_present() const {
  std::lock_guard lock(mu_);
  return static_cast<uint64_t>(std::count(have_.begin(), have_.end(), uint8_t{1}));
}

size_t PartialBlob::unflushed() const {
  std::lock_guard lock(mu_);
  return unsynced_.size();
}

Result<void> PartialBlob::write_chunk(uint64_t index, std::span<const uint8_t> bytes) {
  auto r = offer_chunk(index, bytes);
  if (!r) return r.error();
  if (!*r)
    return Error{ErrorCode::Corruption, cid_.to_string() + ": chunk " + std::to_string(index) + " (" +
                                            std::to_string(bytes.size()) + " bytes) does not match its hash"};
  return {};
}

Result<bool> PartialBlob::offer_chunk(uint64_t index, std::span<const uint8_t> bytes) {
  if (index >= hashes_.size())
    return Error{ErrorCode::InvalidArgument, cid_.to_string() + ": chunk " + std::to_string(index) + " out of range"};
  if (bytes.size() != chunk_bytes(index)) return false;
  return offer_chunk(index, ChunkBuffer::copy_of(bytes));
}

Result<bool> PartialBlob::offer_chunk(uint64_t index, ChunkBuffer bytes) {
  if (index >= hashes_.size())
    return Error{ErrorCode::InvalidArgument, cid_.to_string() + ": chunk " + std::to_string(index) + " out of range"};
  if (bytes.size() != chunk_bytes(index)) return false;
  std::unique_lock lock(mu_);
  if (have_[index]) return true;
  offering_[index] = 1;
  // Chunks mostly arrive in order, a few threads holding one each. A thread whose chunk comes right
  // after chunks that other threads are offering now waits for its turn (briefly: those threads
  // are running), so that its chunk is hashed once, for the manifest and the CID together.
  drained_.wait(lock, [&] { return !worth_waiting(index); });
  const bool fused = streaming_ && index == hashed_ && !draining_;
  if (fused) draining_ = true;
  lock.unlock();

  bool ok;
  if (fused) {
    Sha256 next = whole_;  // this thread owns the stream now; `next` is kept only if the chunk is good
    ok = next.update_and_hash(bytes.bytes()) == hashes_[index];
    lock.lock();
    if (ok) {
      whole_ = std::move(next);
      ++hashed_;
      drain(lock);
    } else {
      draining_ = false;
      drained_.notify_all();
    }
    lock.unlock();
  } else {
    ok = sha256(bytes.bytes()) == hashes_[index];
  }
  Result<void> written = ok ? write_at(index, bytes) : Result<void>();
  lock.lock();
  offering_[index] = 0;
  drained_.notify_all();
  if (!ok) return false;
  if (!written) return written.error();
  have_[index] = 1;
  unsynced_.push_back(index);
  if (!fused) stream(index, std::move(bytes), lock);
  return true;
}

bool PartialBlob::worth_waiting(uint64_t index) const {
  if (!streaming_ || index < hashed_) return false;
  if (index == hashed_) return draining_;  // a drainer is about to let go
  for (uint64_t i = hashed_; i < index; ++i)
    if (!offering_[i]) return false;  // a gap nobody is filling: hash this chunk on its own
  return true;
}

Result<void> PartialBlob::write_at(uint64_t index, const ChunkBuffer& bytes) {
  const uint64_t offset = index * chunk_size_;
  if (direct_ && direct_ok_.load(std::memory_order_relaxed) && bytes.size() % ChunkBuffer::kAlignment == 0) {
    // ChunkBuffers are page-aligned and so is the offset (open_partial checked the chunk size).
    auto r = direct_->write_at(offset, bytes.bytes());
    if (r) return {};
    // InvalidArgument: the file system takes O_DIRECT opens but not these writes, so stop trying.
    // Anything else (an I/O error) is retried through the page cache, which reports it.
    if (r.error().is(ErrorCode::InvalidArgument)) direct_ok_.store(false, std::memory_order_relaxed);
  }
  return data_->write_at(offset, bytes.bytes());
}

void PartialBlob::stream(uint64_t index, ChunkBuffer bytes, std::unique_lock<std::mutex>& lock) {
  if (!streaming_ || index < hashed_) return;
  if (index > hashed_ || draining_) {
    if (ahead_bytes_ + bytes.size() > kMaxAheadBytes) {
      streaming_ = false;  // finish() re-reads the file instead
      ahead_.clear();
      ahead_bytes_ = 0;
      drained_.notify_all();
      return;
    }
    ahead_bytes_ += bytes.size();
    ahead_.emplace(index, std::move(bytes));
    return;
  }
  draining_ = true;
  lock.unlock();
  whole_.update(bytes.bytes());
  bytes = ChunkBuffer();
  lock.lock();
  ++hashed_;
  drain(lock);
}

void PartialBlob::drain(std::unique_lock<std::mutex>& lock) {
  // Feeds parked chunks to the hash, outside the lock, until the next one in order is missing.
  for (auto it = ahead_.find(hashed_); streaming_ && it != ahead_.end(); it = ahead_.find(hashed_)) {
    ChunkBuffer next = std::move(it->second);
    ahead_bytes_ -= next.size();
    ahead_.erase(it);
    lock.unlock();
    whole_.update(next.bytes());
    next = ChunkBuffer();
    lock.lock();
    ++hashed_;
  }
  draining_ = false;
  drained_.notify_all();
}

Result<void> PartialBlob::flush() {
  std::lock_guard serial(flush_mu_);
  std::vector<uint64_t> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(unsynced_);
  }
  if (batch.empty()) return {};
  // Data first, then the sidecar bytes that vouch for it: a set byte always means durable data.
  // Only chunks whose writes completed before this fdatasync began are claimed.
  if (auto r = data_->sync_data(); !r) {
    std::lock_guard lock(mu_);
    unsynced_.insert(unsynced_.end(), batch.begin(), batch.end());
    return r;
  }
  std::sort(batch.begin(), batch.end());
  const std::vector<uint8_t> ones(batch.size(), 1);
  for (size_t i = 0; i < batch.size();) {
    size_t j = i + 1;
    while (j < batch.size() && batch[j] == batch[j - 1] + 1) ++j;
    if (auto r = bits_->write_at(kBitsHeader + batch[i], {ones.data(), j - i}); !r) return r;
    i = j;
  }
  // A lost sidecar byte only costs a re-fetch of that chunk, so this sync is not needed for safety;
  // it keeps resumption from losing much work after a power cut.
  return bits_->sync_data();
}

Result<void> PartialBlob::finish() {
  std::unique_lock lock(mu_);
  if (finished_) return {};
  drained_.wait(lock, [&] { return !draining_; });
  const uint64_t present = static_cast<uint64_t>(std::count(have_.begin(), have_.end(), uint8_t{1}));
  if (present != n_chunks())
    return Error{ErrorCode::NotFound,
                 cid_.to_string() + ": " + std::to_string(n_chunks() - present) + " chunks missing"};
  const bool streamed = streaming_ && hashed_ == n_chunks();
  lock.unlock();
  // No flush(): the sidecar no longer matters once the blob is complete, and the fsync below makes
  // the data durable before the rename (a crash before it only costs re-fetching unrecorded chunks).
  // Every chunk matched the manifest; the whole-file hash checks the manifest's table against the CID.
  Result<Digest> digest = Error{ErrorCode::Internal, ""};
  if (streamed) {
    digest = whole_.finish();
  } else {
    digest = hash_file(*data_, 0, nullptr, nullptr);
    if (!digest) return digest.error();
  }
  Env& env = *store_->env_;
  if (*digest != cid_.digest) {
    // The chunk table (from a manifest) disagrees with the CID: nothing here can be trusted.
    (void)env.remove(bits_path_);
    (void)env.remove(data_path_);
    store_->release(size_);
    finished_ = true;
    return Error{ErrorCode::Corruption,
                 cid_.to_string() + ": assembled bytes do not match the CID (the manifest's chunk table is wrong)"};
  }
  if (auto r = data_->make_read_only(); !r) return r;
  if (auto r = data_->sync(); !r) return r;
  direct_.reset();
  data_.reset();
  finished_ = true;
  if (auto r = store_->commit_file(data_path_, cid_, size_, true); !r) return r;
  (void)env.remove(bits_path_);
  return {};
}

}  // namespace omni::store
