#include "store/model_cid_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdlib>
#include <cerrno>
#include <fstream>
#include <optional>

#include "base/parse.h"
#include "store/hash.h"
#include "store/shard.h"

namespace omni::store {
namespace {

constexpr const char* kMagic = "omni-model-cid-1";

// What an entry is valid for: this path, and this file (device, inode) with this size and content time.
Result<std::string> file_key(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Error{ErrorCode::NotFound, path + ": cannot stat"};
  return std::to_string(st.st_dev) + " " + std::to_string(st.st_ino) + " " + std::to_string(st.st_size) + " " +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

std::string entry_path(const std::string& cache_dir, const std::string& path) {
  const Digest d = sha256({reinterpret_cast<const uint8_t*>(path.data()), path.size()});
  return cache_dir + "/model-cids/" + hex_encode(d);
}

// The cached CID if the entry names exactly this path and key; anything else (absent, damaged,
// stale) is a miss.
std::optional<Cid> read_entry(const std::string& entry, const std::string& path, const std::string& key) {
  std::ifstream in(entry);
  if (!in) return std::nullopt;
  std::string magic, cached_path, cached_key, cid_text;
  if (!std::getline(in, magic) || !std::getline(in, cached_path) || !std::getline(in, cached_key) ||
      !std::getline(in, cid_text))
    return std::nullopt;
  if (magic != kMagic || cached_path != path || cached_key != key) return std::nullopt;
  auto cid = Cid::parse(cid_text);
  if (!cid) return std::nullopt;
  return *cid;
}

void write_entry(const std::string& cache_dir, const std::string& entry, const std::string& text) {
  static std::atomic<uint64_t> counter{0};
  ::mkdir(cache_dir.c_str(), 0700);
  ::mkdir((cache_dir + "/model-cids").c_str(), 0700);
  const std::string tmp = entry + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      ::unlink(tmp.c_str());
      return;
    }
  }
  // Not fsynced: an entry lost in a crash only costs one more hash.
  if (::rename(tmp.c_str(), entry.c_str()) != 0) ::unlink(tmp.c_str());
}

}  // namespace

Result<Cid> model_cid_of_file(const gguf::File& file, const std::string& cache_dir, bool* hashed) {
  if (hashed) *hashed = true;
  const std::string& path = file.path();
  if (cache_dir.empty() || path.empty()) {
    auto manifest = compute_manifest(file, path.empty() ? file.name() : path);
    if (!manifest) return manifest.error();
    return manifest->cid();
  }
  char resolved[PATH_MAX];
  const std::string abs = ::realpath(path.c_str(), resolved) ? std::string(resolved) : path;
  auto before = file_key(abs);
  if (!before) return before.error();
  const std::string entry = entry_path(cache_dir, abs);
  if (auto cached = read_entry(entry, abs, *before)) {
    if (hashed) *hashed = false;
    return *cached;
  }
  auto manifest = compute_manifest(file, path);
  if (!manifest) return manifest.error();
  const Cid cid = manifest->cid();
  // A file changed while it was hashed: the CID is of the mapped bytes, but no key describes them.
  if (auto after = file_key(abs); after && *after == *before)
    write_entry(cache_dir, entry, std::string(kMagic) + "\n" + abs + "\n" + *before + "\n" + cid.to_string() + "\n");
  return cid;
}

}  // namespace omni::store
