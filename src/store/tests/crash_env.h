// CrashEnv: an Env for crash tests. It hands every file operation to the real Env and counts them;
// the N-th one either fails on its own (kFail: an I/O error, later operations go on) or crashes the
// process (kCrash: it and every later operation fail, as if the process had died there). restart()
// then leaves the directory tree as a power cut at that moment could have left it, on a journaling
// file system that keeps metadata but not data it was not asked to sync:
//   - metadata changes (files created, renamed, removed; space reserved) become durable, in order,
//     at the next sync of anything (a journal commit), and are lost otherwise;
//   - a file's bytes are those of its last sync()/sync_data(); the rest of its durable size (space
//     reserved, never synced) reads as zeros.
// Directories themselves are taken as durable once made, and everything under `root` when the
// CrashEnv is made is taken as durable. Syncs are simulated, never done for real (it is a test).
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "base/env.h"

namespace omni::store::testing {

class CrashEnv : public Env {
 public:
  enum class Mode { kFail, kCrash };

  explicit CrashEnv(std::string root) : root_(std::move(root)) {
    for (const auto& path : files_under(root_)) {
      const uint64_t v = ++versions_;
      live_[path] = durable_[path] = v;
      synced_[v] = slurp(path);
    }
  }

  // Arms the fault: operation number `n` (counting from 1, from now) fails, or crashes.
  void fail_at(uint64_t n, Mode mode) {
    std::lock_guard lock(mu_);
    ops_ = 0, fail_at_ = n, mode_ = mode, fired_ = false, crashed_ = false;
  }
  uint64_t operations() const {
    std::lock_guard lock(mu_);
    return ops_;
  }
  // Whether the armed operation was reached.
  bool fired() const {
    std::lock_guard lock(mu_);
    return fired_;
  }

  // Replaces the files under the root with their durable state (call once nothing holds them open)
  // and disarms the fault.
  void restart() {
    std::lock_guard lock(mu_);
    for (const auto& path : files_under(root_)) ::unlink(path.c_str());
    for (const auto& [path, v] : durable_) {
      std::vector<uint8_t> bytes = synced_[v];
      if (bytes.size() < reserved_[v]) bytes.resize(reserved_[v], 0);
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    }
    live_ = durable_;
    pending_.clear();
    fail_at_ = 0, crashed_ = false;
  }

  Result<std::unique_ptr<File>> open(const std::string& path, Open how) override {
    if (auto r = step("open " + path); !r) return r.error();
    auto inner = real_.open(path, how);
    if (!inner) return inner.error();
    std::lock_guard lock(mu_);
    if (!live_.count(path)) created_locked(path);
    return std::unique_ptr<File>(new CrashFile(*this, std::move(*inner), live_[path]));
  }
  Result<void> make_dir(const std::string& path) override {
    if (auto r = step("mkdir " + path); !r) return r;
    return real_.make_dir(path);
  }
  Result<std::vector<std::string>> list_dir(const std::string& path) override {
    if (auto r = step("list " + path); !r) return r.error();
    return real_.list_dir(path);
  }
  Result<FileInfo> stat(const std::string& path) override {
    if (auto r = step("stat " + path); !r) return r.error();
    return real_.stat(path);
  }
  Result<void> rename(const std::string& from, const std::string& to) override {
    if (auto r = step("rename " + from); !r) return r;
    if (auto r = real_.rename(from, to); !r) return r;
    std::lock_guard lock(mu_);
    const uint64_t v = live_[from];
    live_.erase(from);
    live_[to] = v;
    pending_.push_back({Change::kRename, from, to, v, 0});
    return {};
  }
  Result<void> remove(const std::string& path) override {
    if (auto r = step("remove " + path); !r) return r;
    if (auto r = real_.remove(path); !r) return r;
    std::lock_guard lock(mu_);
    live_.erase(path);
    pending_.push_back({Change::kRemove, path, path, 0, 0});
    return {};
  }
  Result<void> sync_dir(const std::string& path) override {
    if (auto r = step("sync dir " + path); !r) return r;
    std::lock_guard lock(mu_);
    commit_locked();
    return {};
  }
  Result<void> touch(const std::string& path) override {
    if (auto r = step("touch " + path); !r) return r;
    return real_.touch(path);
  }
  Result<std::unique_ptr<File>> lock(const std::string& path) override {
    if (auto r = step("lock " + path); !r) return r.error();
    auto inner = real_.lock(path);
    if (!inner) return inner.error();
    std::lock_guard lock(mu_);
    if (!live_.count(path)) created_locked(path);
    return std::unique_ptr<File>(new CrashFile(*this, std::move(*inner), live_[path]));
  }

 private:
  struct Change {
    enum Kind { kCreate, kRename, kRemove, kReserve } kind;
    std::string from, to;  // kCreate, kReserve: both the file's path
    uint64_t version;      // of the file created, renamed or grown
    uint64_t size;         // kReserve: the space reserved
  };

  class CrashFile final : public File {
   public:
    CrashFile(CrashEnv& env, std::unique_ptr<File> inner, uint64_t version)
        : env_(env), inner_(std::move(inner)), version_(version) {}
    Result<void> write_at(uint64_t offset, std::span<const uint8_t> bytes) override {
      if (auto r = env_.step("write"); !r) return r;
      return inner_->write_at(offset, bytes);
    }
    Result<size_t> read_at(uint64_t offset, std::span<uint8_t> out) override {
      if (auto r = env_.step("read"); !r) return r.error();
      return inner_->read_at(offset, out);
    }
    Result<void> sync() override { return sync_data(); }
    Result<void> sync_data() override {
      if (auto r = env_.step("sync"); !r) return r;
      env_.synced(version_);
      return {};
    }
    Result<void> allocate(uint64_t size) override {
      if (auto r = env_.step("allocate"); !r) return r;
      if (auto r = inner_->allocate(size); !r) return r;
      env_.reserved(version_, size);
      return {};
    }
    Result<void> make_read_only() override {
      if (auto r = env_.step("chmod"); !r) return r;
      return inner_->make_read_only();
    }

   private:
    CrashEnv& env_;
    std::unique_ptr<File> inner_;
    uint64_t version_;
  };

  Result<void> step(const std::string& what) {
    std::lock_guard lock(mu_);
    const uint64_t n = ++ops_;
    if (crashed_) return Error{ErrorCode::Internal, what + ": the process crashed (simulated)"};
    if (n != fail_at_) return {};
    fired_ = true;
    crashed_ = mode_ == Mode::kCrash;
    return Error{ErrorCode::Internal, what + ": input/output error (injected at operation " + std::to_string(n) + ")"};
  }

  void created_locked(const std::string& path) {
    const uint64_t v = ++versions_;
    live_[path] = v;
    pending_.push_back({Change::kCreate, path, path, v, 0});
  }

  void reserved(uint64_t version, uint64_t size) {
    std::lock_guard lock(mu_);
    pending_.push_back({Change::kReserve, "", "", version, size});
  }

  // A journal commit: every metadata change so far becomes durable.
  void commit_locked() {
    for (const Change& c : pending_) {
      switch (c.kind) {
        case Change::kCreate: durable_[c.to] = c.version; break;
        case Change::kRename:
          durable_.erase(c.from);
          durable_[c.to] = c.version;
          break;
        case Change::kRemove: durable_.erase(c.from); break;
        case Change::kReserve: reserved_[c.version] = std::max(reserved_[c.version], c.size); break;
      }
    }
    pending_.clear();
  }

  // The file's bytes now become its durable bytes (and the metadata so far durable).
  void synced(uint64_t version) {
    std::lock_guard lock(mu_);
    commit_locked();
    for (const auto& [path, v] : live_)
      if (v == version) {
        synced_[version] = slurp(path);
        return;
      }
  }

  static std::vector<uint8_t> slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
  }

  static std::vector<std::string> files_under(const std::string& dir) {
    std::vector<std::string> out;
    DIR* d = ::opendir(dir.c_str());
    if (!d) return out;
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      const std::string path = dir + "/" + name;
      struct stat st;
      if (::lstat(path.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        auto sub = files_under(path);
        out.insert(out.end(), sub.begin(), sub.end());
      } else {
        out.push_back(path);
      }
    }
    ::closedir(d);
    return out;
  }

  Env& real_ = Env::Default();
  const std::string root_;
  mutable std::mutex mu_;
  uint64_t ops_ = 0, fail_at_ = 0, versions_ = 0;
  Mode mode_ = Mode::kFail;
  bool fired_ = false, crashed_ = false;
  std::map<std::string, uint64_t> live_;     // path -> version of the file there now
  std::map<std::string, uint64_t> durable_;  // path -> version a restart finds there
  std::map<uint64_t, std::vector<uint8_t>> synced_;  // version -> its durable bytes
  std::map<uint64_t, uint64_t> reserved_;            // version -> its durable reserved size
  std::vector<Change> pending_;                      // metadata changes not yet durable, in order
};

}  // namespace omni::store::testing
