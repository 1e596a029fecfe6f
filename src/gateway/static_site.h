// StaticSite: the web UI's built files (web/dist), read once when the gateway starts and answered
// from memory. Each file is stored as it is and, where compressing pays (text, JS, CSS, SVG, JSON;
// at least 10% smaller), gzipped once at load: a page load costs copies, not a deflate per request
// per client (httplib's mount point read and compressed every file on every request).
//
// Validators and caching: every file has a strong ETag (a 64-bit FNV-1a of its bytes; it only has
// to tell our own builds apart) answered with 304 on If-None-Match. Files under assets/ carry a
// content hash in their names (Vite), so they are cacheable for a year; index.html and the rest
// are revalidated on every load (no-cache), so a rebuilt UI shows at once.
//
// Only regular files inside the root are loaded (symbolic links and special files are skipped), at
// most `max_total_bytes` in all: a directory over it is an error at start, not a gateway that
// grows. The set is fixed after load; lookups are thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace omni::gateway {

struct StaticFile {
  std::string content_type;
  std::string body;
  std::string gzipped;  // empty when compressing does not pay
  std::string etag;     // quoted, as sent
  std::string cache_control;
};

class StaticSite {
 public:
  static constexpr uint64_t kDefaultMaxTotalBytes = 64ull << 20;

  // Reads every regular file under `root`. Errors: NotFound (no root or no index.html in it),
  // ResourceExhausted (more than max_total_bytes in all), or a file's read error (base/env.h).
  static Result<StaticSite> load(const std::string& root, uint64_t max_total_bytes = kDefaultMaxTotalBytes);

  // The file for a request path ("/" is index.html); nullptr when there is none. Paths are matched
  // exactly (no "..", no percent-decoding beyond what the HTTP layer did).
  const StaticFile* find(std::string_view path) const;

  size_t file_count() const { return files_.size(); }
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  std::map<std::string, StaticFile, std::less<>> files_;  // keyed by "/relative/path"
  uint64_t total_bytes_ = 0;
};

// What a GET or HEAD for `file` gets: 304 when `if_none_match` names its ETag, else 200 with the
// gzipped body when `accepts_gzip` and one exists. Sets status, headers and body.
struct StaticAnswer {
  int status = 200;
  const std::string* body = nullptr;  // null for 304
  bool gzipped = false;
};
StaticAnswer answer_static(const StaticFile& file, std::string_view if_none_match, bool accepts_gzip);

// Whether an Accept-Encoding header value accepts gzip (a "gzip" or "*" coding whose q is not 0).
bool accepts_gzip(std::string_view accept_encoding);

}  // namespace omni::gateway
