#include "base/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/system_error.h"

namespace omni {
namespace {

// A failed system call: errno_error's code and message, and on a full disk a sentence saying so.
Error posix_error(int err, const std::string& what) {
  Error e = errno_error(err, what);
  if (err == ENOSPC || err == EDQUOT) e.message += " (the disk is full)";
  return e;
}

class PosixFile final : public File {
 public:
  PosixFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixFile() override { ::close(fd_); }

  Result<void> write_at(uint64_t offset, std::span<const uint8_t> bytes) override {
    while (!bytes.empty()) {
      ssize_t n = ::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        return posix_error(errno, path_ + ": write failed");
      }
      bytes = bytes.subspan(static_cast<size_t>(n));
      offset += static_cast<uint64_t>(n);
    }
    return {};
  }

  Result<size_t> read_at(uint64_t offset, std::span<uint8_t> out) override {
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return posix_error(errno, path_ + ": read failed");
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  }

  Result<void> sync() override {
    if (::fsync(fd_) != 0) return posix_error(errno, path_ + ": fsync failed");
    return {};
  }

  Result<void> sync_data() override {
    if (::fdatasync(fd_) != 0) return posix_error(errno, path_ + ": fsync failed");
    return {};
  }

  Result<void> allocate(uint64_t size) override {
    int rc = ::fallocate(fd_, 0, 0, static_cast<off_t>(size));
    if (rc != 0 && (errno == EOPNOTSUPP || errno == ENOSYS)) {
      // No fallocate on this file system: at least the size is set (space is found on write).
      struct stat st;
      rc = ::fstat(fd_, &st);
      if (rc == 0 && static_cast<uint64_t>(st.st_size) < size) rc = ::ftruncate(fd_, static_cast<off_t>(size));
    }
    if (rc != 0) return posix_error(errno, path_ + ": cannot reserve " + std::to_string(size) + " bytes");
    return {};
  }

  Result<void> make_read_only() override {
    if (::fchmod(fd_, 0444) != 0) return posix_error(errno, path_ + ": cannot make read-only");
    return {};
  }

 private:
  int fd_;
  std::string path_;
};

class PosixEnv final : public Env {
 public:
  Result<std::unique_ptr<File>> open(const std::string& path, Open how) override {
    int flags = O_CLOEXEC;
    switch (how) {
      case Open::kRead: flags |= O_RDONLY; break;
      case Open::kReadWrite: flags |= O_RDWR | O_CREAT; break;
      case Open::kCreateNew: flags |= O_RDWR | O_CREAT | O_EXCL; break;
      case Open::kDirectWrite: flags |= O_WRONLY | O_DIRECT; break;
    }
    int fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0) return posix_error(errno, path + ": cannot open");
    return std::unique_ptr<File>(new PosixFile(fd, path));
  }

  Result<void> make_dir(const std::string& path) override {
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return posix_error(errno, path + ": cannot create");
    return {};
  }

  Result<std::vector<std::string>> list_dir(const std::string& path) override {
    DIR* d = ::opendir(path.c_str());
    if (!d) return posix_error(errno, path + ": cannot list");
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(std::move(n));
    }
    ::closedir(d);
    return names;
  }

  Result<FileInfo> stat(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return posix_error(errno, path);
    FileInfo info;
    info.size = static_cast<uint64_t>(st.st_size);
    auto time_of = [](const struct timespec& t) {
      return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec)));
    };
    info.modified = time_of(st.st_mtim);
    info.accessed = time_of(st.st_atim);
    info.device = static_cast<uint64_t>(st.st_dev);
    info.inode = static_cast<uint64_t>(st.st_ino);
    return info;
  }

  Result<void> rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return posix_error(errno, to + ": cannot rename " + from + " to it");
    return {};
  }

  Result<void> remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return posix_error(errno, path + ": cannot remove");
    return {};
  }

  Result<void> sync_dir(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return posix_error(errno, path + ": cannot open for fsync");
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return posix_error(err, path + ": fsync failed");
    return {};
  }

  Result<void> touch(const std::string& path) override {
    const struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};  // access, modification
    if (::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) return posix_error(errno, path + ": cannot set its time");
    return {};
  }

  Result<std::unique_ptr<File>> lock(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return posix_error(errno, path + ": cannot open");
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      Error e = posix_error(err, path + ": cannot lock");
      // Held by another process: it may be free later (not a resource this process ran out of).
      if (err == EWOULDBLOCK) e.code = ErrorCode::Unavailable;
      ::close(fd);
      return e;
    }
    return std::unique_ptr<File>(new PosixFile(fd, path));
  }
};

}  // namespace

Env& Env::Default() {
  static PosixEnv env;
  return env;
}

Result<std::vector<uint8_t>> read_file(Env& env, const std::string& path, uint64_t max_bytes) {
  auto file = env.open(path, Env::Open::kRead);
  if (!file) return file.error();
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> piece(64 * 1024);
  for (;;) {
    auto n = (*file)->read_at(bytes.size(), piece);
    if (!n) return n.error();
    if (bytes.size() + *n > max_bytes)
      return Error{ErrorCode::ResourceExhausted, path + ": larger than " + std::to_string(max_bytes) + " bytes"};
    bytes.insert(bytes.end(), piece.begin(), piece.begin() + static_cast<std::ptrdiff_t>(*n));
    if (*n < piece.size()) return bytes;
  }
}

}  // namespace omni
