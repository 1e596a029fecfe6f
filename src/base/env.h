// Env: the file system and clock that durable storage reaches through (like LevelDB's Env), so that
// tests can make any single file operation fail, or "crash" the process at it, and check what a
// restart finds. Env::Default() is the real one (POSIX files, the steady clock); it lives for the
// whole process. Every method of an Env, and of a File it opened, is safe to call from several
// threads at once.
//
// Errors carry the system's reason, coded as base/system_error.h says (ENOENT NotFound, ENOSPC
// ResourceExhausted with "the disk is full", EINVAL InvalidArgument for a direct write a file system
// refuses, ...); a lock held by another process is Unavailable.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace omni {

// An open file; closed when destroyed. Offsets are explicit, so threads may write different ranges.
class File {
 public:
  virtual ~File() = default;
  // Writes all of `bytes` at `offset`.
  virtual Result<void> write_at(uint64_t offset, std::span<const uint8_t> bytes) = 0;
  // Reads up to out.size() bytes at `offset`; fewer only at the end of the file.
  virtual Result<size_t> read_at(uint64_t offset, std::span<uint8_t> out) = 0;
  // Makes the data and the metadata written so far durable (fsync).
  virtual Result<void> sync() = 0;
  // Makes the data written so far durable, and the size (fdatasync).
  virtual Result<void> sync_data() = 0;
  // Reserves `size` bytes on disk for the file (its size becomes at least `size`), so that writes
  // within it cannot run out of space.
  virtual Result<void> allocate(uint64_t size) = 0;
  // Takes away write permission from everyone (the open handle keeps writing).
  virtual Result<void> make_read_only() = 0;
};

class Env {
 public:
  enum class Open {
    kRead,         // an existing file, read-only
    kReadWrite,    // read and write, created empty if missing, never truncated
    kCreateNew,    // a new file (AlreadyExists if there is one), read and write
    kDirectWrite,  // an existing file, written with direct I/O (no page cache): offsets, sizes and
                   // buffers page-aligned; InvalidArgument where the file system has no direct I/O
  };
  struct FileInfo {
    uint64_t size = 0;
    std::chrono::system_clock::time_point modified;
    std::chrono::system_clock::time_point accessed;
    uint64_t device = 0, inode = 0;  // together: which file this is (a replaced file has a new inode)
  };
  using Clock = std::chrono::steady_clock;

  static Env& Default();
  virtual ~Env() = default;

  virtual Result<std::unique_ptr<File>> open(const std::string& path, Open how) = 0;
  // Creates the directory; one that exists already is fine.
  virtual Result<void> make_dir(const std::string& path) = 0;
  // The names in a directory, "." and ".." left out.
  virtual Result<std::vector<std::string>> list_dir(const std::string& path) = 0;
  virtual Result<FileInfo> stat(const std::string& path) = 0;
  // Replaces `to` (if any) with `from` atomically; durable once the directories are synced.
  virtual Result<void> rename(const std::string& from, const std::string& to) = 0;
  virtual Result<void> remove(const std::string& path) = 0;
  // Makes the directory's entries durable (files created, renamed or removed in it).
  virtual Result<void> sync_dir(const std::string& path) = 0;
  // Sets the file's access time to now; its modification time stays a witness of content changes.
  virtual Result<void> touch(const std::string& path) = 0;
  // Takes an exclusive lock on `path` (created if missing), held until the returned File is
  // destroyed. Unavailable when another process holds it.
  virtual Result<std::unique_ptr<File>> lock(const std::string& path) = 0;

  virtual Clock::time_point now() { return Clock::now(); }
};

// Reads a whole file of at most `max_bytes` (ResourceExhausted if it is larger).
Result<std::vector<uint8_t>> read_file(Env& env, const std::string& path, uint64_t max_bytes);

}  // namespace omni
