#include "gateway/static_site.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "base/env.h"

namespace omni::gateway {
namespace {

struct TypeInfo {
  std::string_view extension;
  std::string_view content_type;
  bool compressible;
};

constexpr std::array<TypeInfo, 16> kTypes{{
    {".html", "text/html; charset=utf-8", true},
    {".js", "text/javascript; charset=utf-8", true},
    {".mjs", "text/javascript; charset=utf-8", true},
    {".css", "text/css; charset=utf-8", true},
    {".json", "application/json", true},
    {".map", "application/json", true},
    {".svg", "image/svg+xml", true},
    {".txt", "text/plain; charset=utf-8", true},
    {".webmanifest", "application/manifest+json", true},
    {".ico", "image/x-icon", true},
    {".png", "image/png", false},
    {".jpg", "image/jpeg", false},
    {".webp", "image/webp", false},
    {".woff", "font/woff", false},
    {".woff2", "font/woff2", false},
    {".wasm", "application/wasm", true},
}};

const TypeInfo& type_of(const std::string& name) {
  static constexpr TypeInfo kOctets{"", "application/octet-stream", false};
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return kOctets;
  std::string extension = name.substr(dot);
  std::transform(extension.begin(), extension.end(), extension.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const TypeInfo& t : kTypes)
    if (t.extension == extension) return t;
  return kOctets;
}

// gzip (RFC 1952) at the best level: done once per file at load, so the time is spent once.
std::string gzip(const std::string& data) {
  z_stream z{};
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK) return {};
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return rc == Z_STREAM_END ? out : std::string{};
}

std::string etag_of(const std::string& data) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : data) h = (h ^ c) * 1099511628211ull;
  char buf[32];
  std::snprintf(buf, sizeof buf, "\"%016llx\"", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace

Result<StaticSite> StaticSite::load(const std::string& root, uint64_t max_total_bytes) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(fs::path(root) / "index.html", ec))
    return Error(ErrorCode::NotFound, "no index.html in the web directory " + root);
  StaticSite site;
  fs::recursive_directory_iterator it(root, fs::directory_options::none, ec), end;
  if (ec) return Error(ErrorCode::NotFound, "cannot list the web directory " + root + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) return Error(ErrorCode::Internal, "listing the web directory " + root + ": " + ec.message());
    // symlink_status: a link is skipped, never followed out of the root.
    if (!fs::is_regular_file(it->symlink_status(ec))) continue;
    const std::string path = it->path().string();
    const uint64_t left = max_total_bytes - site.total_bytes_;
    auto bytes = read_file(Env::Default(), path, left);
    if (!bytes) {
      if (bytes.error().is(ErrorCode::ResourceExhausted))
        return Error(ErrorCode::ResourceExhausted, "the web directory " + root + " holds more than " +
                                                       std::to_string(max_total_bytes) + " bytes");
      return bytes.error().with_context("reading " + path);
    }
    site.total_bytes_ += bytes->size();
    StaticFile file;
    file.body.assign(bytes->begin(), bytes->end());
    const TypeInfo& type = type_of(path);
    file.content_type = type.content_type;
    if (type.compressible) {
      std::string z = gzip(file.body);
      if (!z.empty() && z.size() < file.body.size() - file.body.size() / 10) file.gzipped = std::move(z);
    }
    file.etag = etag_of(file.body);
    std::string relative = "/" + fs::relative(it->path(), root, ec).generic_string();
    file.cache_control = relative.rfind("/assets/", 0) == 0 ? "public, max-age=31536000, immutable" : "no-cache";
    site.files_.emplace(std::move(relative), std::move(file));
  }
  return site;
}

const StaticFile* StaticSite::find(std::string_view path) const {
  if (path == "/") path = "/index.html";
  auto it = files_.find(path);
  return it == files_.end() ? nullptr : &it->second;
}

bool accepts_gzip(std::string_view header) {
  while (!header.empty()) {
    const size_t comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
    const size_t semi = item.find(';');
    std::string_view coding = item.substr(0, semi);
    std::string_view params = semi == std::string_view::npos ? std::string_view{} : item.substr(semi + 1);
    auto trim = [](std::string_view s) {
      while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
      while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
      return s;
    };
    coding = trim(coding);
    std::string lower(coding);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower != "gzip" && lower != "x-gzip" && lower != "*") continue;
    params = trim(params);
    if (params.size() >= 2 && (params[0] == 'q' || params[0] == 'Q') && params[1] == '=') {
      // q=0, q=0.0, q=0.000 refuse the coding; any other weight accepts it.
      std::string_view q = params.substr(2);
      const bool zero = !q.empty() && q[0] == '0' && q.find_first_not_of("0.", 1) == std::string_view::npos;
      if (zero) continue;
    }
    return true;
  }
  return false;
}

StaticAnswer answer_static(const StaticFile& file, std::string_view if_none_match, bool gzip_ok) {
  // If-None-Match holds one or more entity tags, or "*".
  if (!if_none_match.empty() &&
      (if_none_match == "*" || if_none_match.find(file.etag) != std::string_view::npos))
    return StaticAnswer{304, nullptr, false};
  if (gzip_ok && !file.gzipped.empty()) return StaticAnswer{200, &file.gzipped, true};
  return StaticAnswer{200, &file.body, false};
}

}  // namespace omni::gateway
