#include "store/blob_store.h"

#include "base/system_error.h"
#include "store/manifest.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace omni::store {
namespace {

constexpr uint64_t kBitsMagic = 0x3173746962696d6fULL;  // "omnibits1" (8 bytes, little-endian)
constexpr size_t kBitsHeader = 24;                      // magic, size, chunk_size (u64 each)

Error sys_error(const std::string& what) {
  const int e = errno;
  Error error = errno_error(e, what);
  if (e == ENOSPC || e == EDQUOT) error.message += " (the disk is full)";
  return error;
}

Result<void> fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return Error{sys_error(path + ": cannot open for fsync")};
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Error{sys_error(path + ": fsync failed")};
  return {};
}

Result<void> make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return Error{sys_error(path + ": cannot create")};
  return {};
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (!d) return names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  return names;
}

uint64_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// Writes all of `bytes` at `offset`, retrying short writes.
Result<void> pwrite_all(int fd, std::span<const uint8_t> bytes, uint64_t offset, const std::string& name) {
  while (!bytes.empty()) {
    ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{sys_error(name + ": write failed")};
    }
    bytes = bytes.subspan(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

Result<size_t> pread_all(int fd, std::span<uint8_t> out, uint64_t offset, const std::string& name) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{sys_error(name + ": read failed")};
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

// Hashes a whole file, and each chunk of it when chunk_size > 0.
Result<Digest> hash_file(const std::string& path, uint32_t chunk_size, std::vector<Digest>* chunks, uint64_t* size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{sys_error(path + ": cannot open")};
  Sha256 whole, chunk;
  std::vector<uint8_t> buf(1 << 20);
  uint64_t total = 0, in_chunk = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      Error e{sys_error(path + ": read failed")};
      ::close(fd);
      return e;
    }
    if (n == 0) break;
    std::span<const uint8_t> data(buf.data(), static_cast<size_t>(n));
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
  ::close(fd);
  if (chunks && in_chunk > 0) chunks->push_back(chunk.finish());
  if (size) *size = total;
  return whole.finish();
}

}  // namespace

Result<std::unique_ptr<BlobStore>> BlobStore::open(const std::string& dir, StoreOptions options) {
  std::unique_ptr<BlobStore> s(new BlobStore());
  s->dir_ = dir;
  s->options_ = options;
  for (const char* sub : {"", "/blobs", "/partial", "/tmp"})
    if (auto r = make_dir(dir + sub); !r) return r.error();
  std::string lock = dir + "/lock";
  s->lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (s->lock_fd_ < 0) return Error{sys_error(lock + ": cannot open")};
  if (::flock(s->lock_fd_, LOCK_EX | LOCK_NB) != 0)
    return Error{ErrorCode::Unavailable, dir + ": the store is in use by another process"};
  // Anything in tmp/ is an unfinished write from a process that died: never visible, now garbage.
  for (const auto& n : list_dir(dir + "/tmp")) ::unlink((dir + "/tmp/" + n).c_str());
  for (const auto& n : list_dir(dir + "/blobs")) {
    if (!Cid::parse(n)) {
      // Not ours (a stray file): ignore it rather than guess.
      continue;
    }
    s->used_ += file_size(dir + "/blobs/" + n);
  }
  for (const auto& n : list_dir(dir + "/partial"))
    if (n.ends_with(".data")) s->used_ += file_size(dir + "/partial/" + n);
  std::ifstream pins(dir + "/pins");
  for (std::string line; std::getline(pins, line);)
    if (auto c = Cid::parse(line)) s->pins_.insert(*c);
  return s;
}

BlobStore::~BlobStore() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string BlobStore::blob_path(const Cid& cid) const { return dir_ + "/blobs/" + cid.to_string(); }

bool BlobStore::has(const Cid& cid) const { return ::access(blob_path(cid).c_str(), F_OK) == 0; }

Result<uint64_t> BlobStore::size(const Cid& cid) const {
  struct stat st;
  if (::stat(blob_path(cid).c_str(), &st) != 0)
    return Error{ErrorCode::NotFound, "blob " + cid.to_string() + " is not in the store"};
  return static_cast<uint64_t>(st.st_size);
}

std::vector<Cid> BlobStore::list() const {
  std::vector<Cid> out;
  for (const auto& n : list_dir(dir_ + "/blobs"))
    if (auto c = Cid::parse(n)) out.push_back(*c);
  return out;
}

Result<MappedFile> BlobStore::map(const Cid& cid) {
  std::string path = blob_path(cid);
  auto m = MappedFile::open(path);
  if (!m)
    return Error{ErrorCode::NotFound, "blob " + cid.to_string() + " is not in the store (" + m.error().message + ")"};
  ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // records the use for LRU eviction
  return m;
}

Result<BlobStore::Imported> BlobStore::hash_blob(const Cid& cid, uint32_t chunk_size) const {
  Imported out;
  std::string path = blob_path(cid);
  if (::access(path.c_str(), F_OK) != 0)
    return Error{ErrorCode::NotFound, "blob " + cid.to_string() + " is not in the store"};
  auto digest = hash_file(path, chunk_size, &out.chunk_hashes, &out.size);
  if (!digest) return digest.error();
  out.cid = Cid::from_digest(*digest);
  out.existed = true;
  return out;
}

Result<void> BlobStore::touch(const Cid& cid) {
  if (::utimensat(AT_FDCWD, blob_path(cid).c_str(), nullptr, 0) != 0)
    return Error{sys_error(blob_path(cid) + ": cannot record use")};
  return {};
}

Result<std::vector<uint8_t>> BlobStore::read(const Cid& cid, uint64_t offset, uint32_t length) {
  std::string path = blob_path(cid);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{ErrorCode::NotFound, "blob " + cid.to_string() + " is not in the store"};
  std::vector<uint8_t> out(length);
  auto n = pread_all(fd, out, offset, path);
  ::close(fd);
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
  if (has(cid)) return cid;
  std::string tmp = temp_path("put");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) return Error{sys_error(tmp + ": cannot create")};
  auto w = pwrite_all(fd, bytes, 0, tmp);
  if (w && ::fsync(fd) != 0) w = Error{sys_error(tmp + ": fsync failed")};
  ::close(fd);
  if (!w) {
    ::unlink(tmp.c_str());
    return w.error();
  }
  if (auto r = commit_file(tmp, cid, bytes.size(), false); !r) return r.error();
  return cid;
}

Result<BlobStore::Imported> BlobStore::import_file(const std::string& path, uint32_t chunk_size) {
  Imported out;
  auto digest = hash_file(path, chunk_size, &out.chunk_hashes, &out.size);
  if (!digest) {
    ::unlink(path.c_str());
    return digest.error();
  }
  out.cid = Cid::from_digest(*digest);
  if (has(out.cid)) {  // identical content is stored once
    ::unlink(path.c_str());
    out.existed = true;
    return out;
  }
  ::chmod(path.c_str(), 0444);
  if (auto r = fsync_path(path, false); !r) {
    ::unlink(path.c_str());
    return r.error();
  }
  if (auto r = commit_file(path, out.cid, out.size, false); !r) return r.error();
  return out;
}

// Renames a complete, fsynced file into blobs/ and fsyncs the directory. Removes `path` on error.
Result<void> BlobStore::commit_file(const std::string& path, const Cid& cid, uint64_t size, bool reserved) {
  std::unique_lock lock(mu_);
  if (!reserved) {
    if (auto r = make_room_locked(size, &cid); !r) {
      ::unlink(path.c_str());
      return r.error();
    }
    used_ += size;
  }
  std::string final_path = blob_path(cid);
  if (::rename(path.c_str(), final_path.c_str()) != 0) {
    Error e{sys_error(final_path + ": cannot rename into place")};
    ::unlink(path.c_str());
    used_ -= size;
    return e;
  }
  lock.unlock();
  return fsync_path(dir_ + "/blobs", true);
}

Result<void> BlobStore::make_room_locked(uint64_t bytes, const Cid* keep) {
  if (options_.limit_bytes == 0 || used_ + bytes <= options_.limit_bytes) return {};
  struct Candidate {
    Cid cid;
    timespec used;
    uint64_t size;
  };
  std::vector<Candidate> candidates;
  for (const auto& n : list_dir(dir_ + "/blobs")) {
    auto c = Cid::parse(n);
    if (!c || pins_.count(*c) || (keep && *c == *keep)) continue;
    struct stat st;
    if (::stat((dir_ + "/blobs/" + n).c_str(), &st) != 0) continue;
    candidates.push_back({*c, st.st_mtim, static_cast<uint64_t>(st.st_size)});
  }
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return a.used.tv_sec != b.used.tv_sec ? a.used.tv_sec < b.used.tv_sec : a.used.tv_nsec < b.used.tv_nsec;
  });
  uint64_t freeable = 0;
  for (const auto& c : candidates) freeable += c.size;
  if (used_ + bytes > options_.limit_bytes + freeable)
    return Error{ErrorCode::ResourceExhausted, "store " + dir_ + " is full: " + std::to_string(bytes) +
                                                   " more bytes needed, " + std::to_string(used_) + " of " +
                                                   std::to_string(options_.limit_bytes) + " bytes used and only " +
                                                   std::to_string(freeable) + " evictable (the rest is pinned)"};
  for (const auto& c : candidates) {
    if (used_ + bytes <= options_.limit_bytes) break;
    if (::unlink(blob_path(c.cid).c_str()) == 0) used_ -= std::min(used_, c.size);
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
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Error{sys_error(tmp + ": cannot create")};
  auto w = pwrite_all(fd, {reinterpret_cast<const uint8_t*>(data.data()), data.size()}, 0, tmp);
  if (w && ::fsync(fd) != 0) w = Error{sys_error(tmp + ": fsync failed")};
  ::close(fd);
  if (w && ::rename(tmp.c_str(), (dir_ + "/pins").c_str()) != 0) w = Error{sys_error(dir_ + "/pins: cannot replace")};
  if (!w) {
    ::unlink(tmp.c_str());
    return w;
  }
  return fsync_path(dir_, true);
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
  if (::unlink(blob_path(cid).c_str()) != 0) return Error{sys_error(blob_path(cid) + ": cannot remove")};
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
    int fd = ::open(p->bits_path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      std::vector<uint8_t> bits(kBitsHeader + p->hashes_.size());
      auto n = pread_all(fd, bits, 0, p->bits_path_);
      ::close(fd);
      uint64_t hdr[3];
      if (n && *n >= kBitsHeader) {
        std::memcpy(hdr, bits.data(), sizeof hdr);
        if (hdr[0] == kBitsMagic && hdr[1] == size && hdr[2] == chunk_size && file_size(p->data_path_) == size) {
          resume = true;
          for (size_t i = 0; i + kBitsHeader < *n; ++i) p->have_[i] = bits[kBitsHeader + i] == 1;
          // Chunks from an earlier run are not in this run's streaming hash: finish() re-reads.
          if (std::find(p->have_.begin(), p->have_.end(), uint8_t{1}) != p->have_.end()) p->streaming_ = false;
        }
      }
    }
    if (::access(p->data_path_.c_str(), F_OK) == 0) existing = file_size(p->data_path_);
  }
  if (!resume) {
    ::unlink(p->bits_path_.c_str());
    if (::unlink(p->data_path_.c_str()) == 0) release(existing);
    existing = 0;
  }
  {
    std::lock_guard lock(mu_);
    if (!resume) {
      if (auto r = make_room_locked(size, &cid); !r) return r.error();
      used_ += size;
    }
  }
  p->data_fd_ = ::open(p->data_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (p->data_fd_ < 0) {
    Error e{sys_error(p->data_path_ + ": cannot open")};
    if (!resume) release(size);
    return e;
  }
  if (!resume && size > 0) {
    // Reserve the disk space now: a full disk is reported before anything is fetched.
    int rc = ::fallocate(p->data_fd_, 0, 0, static_cast<off_t>(size));
    if (rc != 0 && (errno == EOPNOTSUPP || errno == ENOSYS)) rc = ::ftruncate(p->data_fd_, static_cast<off_t>(size));
    if (rc != 0) {
      Error e{sys_error(p->data_path_ + ": cannot reserve " + std::to_string(size) + " bytes")};
      ::close(p->data_fd_);
      p->data_fd_ = -1;
      ::unlink(p->data_path_.c_str());
      release(size);
      return e;
    }
  }
  p->bits_fd_ = ::open(p->bits_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (p->bits_fd_ < 0) return Error{sys_error(p->bits_path_ + ": cannot open")};
  if (!resume) {
    // No fsync here: a sidecar (or data file) lost in a crash only means starting this blob over,
    // and the first flush() makes both durable before the sidecar claims any chunk.
    uint64_t hdr[3] = {kBitsMagic, size, chunk_size};
    std::vector<uint8_t> init(kBitsHeader + p->hashes_.size(), 0);
    std::memcpy(init.data(), hdr, sizeof hdr);
    if (auto r = pwrite_all(p->bits_fd_, init, 0, p->bits_path_); !r) return r.error();
  }
  // Direct I/O needs page-aligned offsets, so whole chunks qualify only when the chunk size is a
  // multiple of a page; file systems without O_DIRECT (tmpfs) refuse the open.
  if (chunk_size % ChunkBuffer::kAlignment == 0)
    p->direct_fd_ = ::open(p->data_path_.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  return p;
}

PartialBlob::~PartialBlob() {
  if (!finished_ && data_fd_ >= 0) (void)flush();
  if (direct_fd_ >= 0) ::close(direct_fd_);
  if (data_fd_ >= 0) ::close(data_fd_);
  if (bits_fd_ >= 0) ::close(bits_fd_);
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
  if (direct_fd_ >= 0 && direct_ok_.load(std::memory_order_relaxed) && bytes.size() % ChunkBuffer::kAlignment == 0) {
    // ChunkBuffers are page-aligned and so is the offset (open_partial checked the chunk size).
    ssize_t n = ::pwrite(direct_fd_, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (n == static_cast<ssize_t>(bytes.size())) return {};
    // EINVAL: the file system takes O_DIRECT opens but not these writes, so stop trying. Anything
    // else (a short write, an I/O error) is retried through the page cache, which reports it.
    if (n < 0 && errno == EINVAL) direct_ok_.store(false, std::memory_order_relaxed);
  }
  return pwrite_all(data_fd_, bytes.bytes(), offset, data_path_);
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
  if (::fdatasync(data_fd_) != 0) {
    Error e{sys_error(data_path_ + ": fsync failed")};
    std::lock_guard lock(mu_);
    unsynced_.insert(unsynced_.end(), batch.begin(), batch.end());
    return e;
  }
  std::sort(batch.begin(), batch.end());
  const std::vector<uint8_t> ones(batch.size(), 1);
  for (size_t i = 0; i < batch.size();) {
    size_t j = i + 1;
    while (j < batch.size() && batch[j] == batch[j - 1] + 1) ++j;
    if (auto r = pwrite_all(bits_fd_, {ones.data(), j - i}, kBitsHeader + batch[i], bits_path_); !r) return r;
    i = j;
  }
  // A lost sidecar byte only costs a re-fetch of that chunk, so this sync is not needed for safety;
  // it keeps resumption from losing much work after a power cut.
  if (::fdatasync(bits_fd_) != 0) return Error{sys_error(bits_path_ + ": fsync failed")};
  return {};
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
    digest = hash_file(data_path_, 0, nullptr, nullptr);
    if (!digest) return digest.error();
  }
  if (*digest != cid_.digest) {
    // The chunk table (from a manifest) disagrees with the CID: nothing here can be trusted.
    ::unlink(bits_path_.c_str());
    ::unlink(data_path_.c_str());
    store_->release(size_);
    finished_ = true;
    return Error{ErrorCode::Corruption,
                 cid_.to_string() + ": assembled bytes do not match the CID (the manifest's chunk table is wrong)"};
  }
  ::fchmod(data_fd_, 0444);
  if (::fsync(data_fd_) != 0) return Error{sys_error(data_path_ + ": fsync failed")};
  if (direct_fd_ >= 0) ::close(direct_fd_);
  direct_fd_ = -1;
  ::close(data_fd_);
  data_fd_ = -1;
  finished_ = true;
  if (auto r = store_->commit_file(data_path_, cid_, size_, true); !r) return r;
  ::unlink(bits_path_.c_str());
  return {};
}

}  // namespace omni::store
