#include "store/model_download.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/parse.h"
#include "base/system_error.h"
#include "store/blob_store.h"
#include "store/curl_http_client.h"

namespace omni::store {
namespace {

constexpr uint64_t kMaxRedirectBody = 1 << 20;  // a redirect's own body is read and dropped
constexpr uint64_t kMaxSidecarBytes = 64 << 10;
constexpr std::string_view kGgufMagic = "GGUF";

std::string mib(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string scheme_of(const std::string& url) { return lower(url.substr(0, url.find("://"))); }

// "https://host:443/path" -> "host" (lower case, no port, no user info).
std::string host_of(const std::string& url) {
  const size_t start = url.find("://");
  if (start == std::string::npos) return "";
  std::string authority = url.substr(start + 3, url.find_first_of("/?#", start + 3) - (start + 3));
  if (auto at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
  if (!authority.empty() && authority.front() == '[') return lower(authority.substr(0, authority.find(']') + 1));
  return lower(authority.substr(0, authority.find(':')));
}

// A Location header's target, relative to the URL that answered with it.
std::string resolve_location(const std::string& base, const std::string& location) {
  if (location.find("://") != std::string::npos) return location;
  const size_t authority = base.find("://") + 3;
  if (location.starts_with("//")) return base.substr(0, authority - 2) + location;
  const size_t path = base.find_first_of("/?#", authority);
  const std::string origin = base.substr(0, path);
  if (location.starts_with("/")) return origin + location;
  std::string dir = path == std::string::npos ? "/" : base.substr(path, base.find_first_of("?#", path) - path);
  dir = dir.substr(0, dir.rfind('/') + 1);
  return origin + dir + location;
}

bool is_hugging_face_host(const std::string& host) {
  for (std::string_view domain : {"huggingface.co", "hf.co"})
    if (host == domain || (host.size() > domain.size() && host.ends_with(domain) &&
                           host[host.size() - domain.size() - 1] == '.'))
      return true;
  return false;
}

// An entity tag's value without W/ and quotes; `strong` says whether it had no W/.
std::string etag_value(std::string_view tag, bool* strong = nullptr) {
  const bool weak = tag.starts_with("W/") || tag.starts_with("w/");
  if (weak) tag.remove_prefix(2);
  if (strong) *strong = !weak;
  if (tag.size() >= 2 && tag.front() == '"' && tag.back() == '"') tag = tag.substr(1, tag.size() - 2);
  return std::string(tag);
}

Result<uint64_t> parse_u64(std::string_view text) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size())
    return Error{ErrorCode::InvalidArgument, "'" + std::string(text) + "' is not a byte count"};
  return v;
}

// "bytes FIRST-LAST/TOTAL" (TOTAL may be "*": unknown, 0 here).
struct ContentRange {
  uint64_t first = 0, last = 0, total = 0;
};
Result<ContentRange> parse_content_range(std::string_view text) {
  auto bad = [&] { return Error{ErrorCode::Corruption, "malformed Content-Range '" + std::string(text) + "'"}; };
  if (!text.starts_with("bytes ")) return bad();
  text.remove_prefix(6);
  const size_t dash = text.find('-'), slash = text.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) return bad();
  auto first = parse_u64(text.substr(0, dash));
  auto last = parse_u64(text.substr(dash + 1, slash - dash - 1));
  if (!first || !last || *last < *first) return bad();
  ContentRange r{*first, *last, 0};
  if (text.substr(slash + 1) != "*") {
    auto total = parse_u64(text.substr(slash + 1));
    if (!total || *total <= *last) return bad();
    r.total = *total;
  }
  return r;
}

Error http_status_error(int status, const std::string& url) {
  const std::string what = "HTTP " + std::to_string(status) + " from " + url;
  if (status == 404 || status == 410) return Error{ErrorCode::NotFound, what};
  if (status == 401 || status == 403)
    return Error{ErrorCode::PermissionDenied, what + " (the file needs an account or a token; for Hugging Face set HF_TOKEN)"};
  if (status == 429 || status >= 500) return Error{ErrorCode::Unavailable, what};
  return Error{ErrorCode::InvalidArgument, what};
}

// The partial file's sidecar (see the header).
struct Sidecar {
  std::string url;
  std::string validator;  // sent as If-Range
  uint64_t total = 0;     // 0: not known
  uint64_t durable = 0;
  std::string sha256;     // as published, hex
  std::string sha256_from;
};

Result<void> save_sidecar(Env& env, const std::string& path, const Sidecar& s) {
  const nlohmann::json j = {{"url", s.url},           {"validator", s.validator}, {"total", s.total},
                            {"durable", s.durable},   {"sha256", s.sha256},       {"sha256_from", s.sha256_from}};
  const std::string text = j.dump();
  const std::string tmp = path + ".new";
  (void)env.remove(tmp);
  auto file = env.open(tmp, Env::Open::kCreateNew);
  if (!file) return file.error();
  if (auto r = (*file)->write_at(0, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size())); !r)
    return r.error();
  file->reset();
  return env.rename(tmp, path);
}

std::optional<Sidecar> load_sidecar(Env& env, const std::string& path) {
  auto bytes = read_file(env, path, kMaxSidecarBytes);
  if (!bytes) return std::nullopt;
  const auto j = nlohmann::json::parse(bytes->begin(), bytes->end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  Sidecar s;
  auto text = [&](const char* key, std::string& out) {
    if (auto it = j.find(key); it != j.end() && it->is_string()) out = it->get<std::string>();
  };
  auto count = [&](const char* key, uint64_t& out) {
    if (auto it = j.find(key); it != j.end() && it->is_number_unsigned()) out = it->get<uint64_t>();
  };
  text("url", s.url);
  text("validator", s.validator);
  text("sha256", s.sha256);
  text("sha256_from", s.sha256_from);
  count("total", s.total);
  count("durable", s.durable);
  return s;
}

Result<Digest> hash_file(Env& env, const std::string& path) {
  auto file = env.open(path, Env::Open::kRead);
  if (!file) return file.error();
  Sha256 h;
  std::vector<uint8_t> buf(4 << 20);
  for (uint64_t off = 0;;) {
    auto n = (*file)->read_at(off, buf);
    if (!n) return n.error();
    if (*n == 0) break;
    h.update(std::span(buf.data(), *n));
    off += *n;
  }
  return h.finish();
}

// One URL's download into its partial file, across tries.
class Download {
 public:
  Download(const std::string& url, const std::string& part, const std::string& sidecar, const std::string& label,
           const ModelFetchOptions& o, Env& env, HttpClient& http)
      : url_(url), part_path_(part), sidecar_path_(sidecar), label_(label), o_(o), env_(env), http_(http) {}

  // The file must have this SHA-256, whatever the host publishes.
  void pin(const Digest& d) { expected_ = d, expected_from_ = "the pinned sha256", pinned_ = true; }

  // Runs tries until the file is complete.
  Result<void> run() {
    if (auto s = load_sidecar(env_, sidecar_path_); s && s->url == url_ && !s->validator.empty() && s->durable > 0) {
      state_ = *s;
      if (auto d = parse_sha256_hex(state_.sha256); d && !expected_) expected_ = *d, expected_from_ = state_.sha256_from;
    }
    resumed_ = state_.durable;
    if (state_.durable > 0)
      log("resuming " + url_ + " at " + mib(state_.durable) + (state_.total ? " of " + mib(state_.total) : ""));
    auto delay = o_.retry_delay;
    for (uint32_t attempt = 1;; ++attempt) {
      auto r = try_once();
      if (r) return r;
      const bool transient = r.error().is(ErrorCode::Unavailable) || r.error().is(ErrorCode::DeadlineExceeded);
      if (!transient || attempt >= std::max<uint32_t>(o_.attempts, 1)) {
        const bool kept = transient || r.error().is(ErrorCode::ResourceExhausted);
        if (!kept || state_.durable == 0) return r.error();
        return r.error().with_context("downloading " + url_ + " (" + std::to_string(state_.durable) +
                                      " bytes kept in " + part_path_ + "; run again to resume)");
      }
      log("try " + std::to_string(attempt) + " failed (" + r.error().message + "); trying again in " +
          std::to_string(delay.count()) + " ms");
      std::this_thread::sleep_for(delay);
      delay *= 2;
    }
  }

  uint64_t fetched() const { return fetched_; }
  std::optional<Digest> expected() const { return expected_; }
  const std::string& expected_from() const { return expected_from_; }

 private:
  void log(const std::string& line) const {
    if (o_.log) o_.log(line);
  }

  void progress(bool done) const {
    if (!o_.progress) return;
    FetchProgress p;
    p.blob = label_;
    p.total_bytes = state_.total ? state_.total : offset_;
    p.done_bytes = offset_;
    p.resumed_bytes = resumed_;
    o_.progress(p, done);
  }

  // Where the partial file starts over: empty, nothing durable.
  Result<void> start_over() {
    file_.reset();
    if (auto r = env_.remove(sidecar_path_); !r && !r.error().is(ErrorCode::NotFound)) return r.error();
    if (auto r = env_.remove(part_path_); !r && !r.error().is(ErrorCode::NotFound)) return r.error();
    auto f = env_.open(part_path_, Env::Open::kCreateNew);
    if (!f) return f.error();
    file_ = std::move(*f);
    offset_ = 0;
    state_.durable = 0;
    return {};
  }

  // Makes the bytes so far durable and records that in the sidecar.
  Result<void> make_durable() {
    if (!file_ || offset_ == state_.durable) return {};
    if (auto r = file_->sync_data(); !r) return r.error();
    state_.durable = offset_;
    unsynced_ = 0;
    return save_sidecar(env_, sidecar_path_, state_);
  }

  // A SHA-256 the response publishes for the file (see the header), checked against what is known.
  Result<void> note_published(const HttpResponseHead& head, const std::string& url) {
    std::optional<Digest> claimed;
    std::string from;
    if (const std::string* v = head.find("x-linked-etag")) {
      if (auto d = parse_sha256_hex(etag_value(*v))) claimed = *d, from = "X-Linked-Etag from " + host_of(url);
    } else if (const std::string* e = head.find("etag"); e && is_hugging_face_host(host_of(url))) {
      if (auto d = parse_sha256_hex(etag_value(*e))) claimed = *d, from = "ETag from " + host_of(url);
    }
    if (!claimed) return {};
    if (pinned_ && *expected_ != *claimed)
      return Error{ErrorCode::Corruption, "sha256 mismatch before the download: " + expected_from_ + " is " +
                                              hex_encode(*expected_) + ", " + from + " says " + hex_encode(*claimed)};
    // The host's latest word: a file replaced upstream comes with its new hash.
    if (!pinned_) expected_ = claimed, expected_from_ = from;
    state_.sha256 = hex_encode(*claimed);
    state_.sha256_from = from;
    return {};
  }

  Result<void> try_once() {
    if (state_.durable > 0) {
      auto f = env_.open(part_path_, Env::Open::kReadWrite);
      if (!f) {
        state_ = Sidecar{};
        if (auto r = start_over(); !r) return r;
      } else {
        file_ = std::move(*f);
        offset_ = state_.durable;
      }
    } else if (auto r = start_over(); !r) {
      return r;
    }
    std::string current = url_;
    bool restarted = false;
    for (uint32_t hops = 0;;) {
      HttpRequest request{current, {}};
      const bool ranged = offset_ > 0;
      if (ranged) request.headers = {{"Range", "bytes=" + std::to_string(offset_) + "-"}, {"If-Range", state_.validator}};
      if (!o_.bearer_token.empty() && host_of(current) == lower(o_.token_host))
        request.headers.emplace_back("Authorization", "Bearer " + o_.bearer_token);
      std::string location;
      uint64_t redirect_body = 0;
      bool redirect = false, complete = false, restart = false;
      auto on_head = [&](const HttpResponseHead& head) -> Result<void> {
        if (auto r = note_published(head, current); !r) return r;
        const int s = head.status;
        if (s == 301 || s == 302 || s == 303 || s == 307 || s == 308) {
          const std::string* loc = head.find("location");
          if (!loc || loc->empty())
            return Error{ErrorCode::InvalidArgument, "HTTP " + std::to_string(s) + " from " + current + " without a Location"};
          redirect = true;
          location = *loc;
          return {};
        }
        if (s == 416 && ranged && state_.total == offset_) {  // it was complete already
          complete = true;
          return {};
        }
        if (s == 416) {
          restart = true;
          return Error{ErrorCode::Unavailable, current + " refused the resume (HTTP 416)"};
        }
        if (s != 200 && s != 206) return http_status_error(s, current);
        const std::string* etag = head.find("etag");
        bool strong = false;
        const std::string validator = etag ? etag_value(*etag, &strong) : "";
        if (s == 206) {
          const std::string* cr = head.find("content-range");
          if (!cr) return Error{ErrorCode::Corruption, current + " answered 206 without a Content-Range"};
          auto range = parse_content_range(*cr);
          if (!range) return range.error().with_context(current);
          if (!ranged || range->first != offset_ || (state_.total && range->total && range->total != state_.total)) {
            restart = true;
            return Error{ErrorCode::Unavailable, current + " sent bytes " + std::to_string(range->first) +
                                                     "- for a request from " + std::to_string(offset_)};
          }
          if (range->total) state_.total = range->total;
          return {};
        }
        // 200: the whole file, from the start (a resume the server did not honour included).
        if (ranged) {
          log(current + " sent the whole file again; starting over");
          if (auto r = start_over(); !r) return r;
        }
        state_.url = url_;
        state_.validator = etag && strong ? "\"" + validator + "\"" : "";
        if (state_.validator.empty())
          if (const std::string* lm = head.find("last-modified")) state_.validator = *lm;
        state_.total = 0;
        if (const std::string* cl = head.find("content-length"))
          if (auto n = parse_u64(*cl)) state_.total = *n;
        if (state_.total) {
          if (auto r = file_->allocate(state_.total); !r)
            return r.error().with_context("reserving " + mib(state_.total) + " for " + part_path_);
          log("downloading " + url_ + " (" + mib(state_.total) + ")");
        }
        return save_sidecar(env_, sidecar_path_, state_);
      };
      auto on_body = [&](std::span<const uint8_t> bytes) -> Result<void> {
        if (redirect || complete) {
          redirect_body += bytes.size();
          if (redirect_body > kMaxRedirectBody)
            return Error{ErrorCode::InvalidArgument, current + ": a redirect with a body of over " + mib(kMaxRedirectBody)};
          return {};
        }
        for (size_t i = 0; offset_ + i < kGgufMagic.size() && i < bytes.size(); ++i)
          if (bytes[i] != static_cast<uint8_t>(kGgufMagic[offset_ + i]))
            return Error{ErrorCode::InvalidArgument, url_ + " is not a GGUF file (it does not start with \"GGUF\")"};
        if (state_.total && offset_ + bytes.size() > state_.total)
          return Error{ErrorCode::Corruption, current + " sent more than the " + std::to_string(state_.total) +
                                                  " bytes it announced"};
        if (auto r = file_->write_at(offset_, bytes); !r)
          return r.error().with_context("writing " + part_path_);
        offset_ += bytes.size();
        fetched_ += bytes.size();
        unsynced_ += bytes.size();
        if (unsynced_ >= o_.sync_bytes)
          if (auto r = make_durable(); !r) return r;
        progress(false);
        return {};
      };
      auto got = http_.get(request, on_head, on_body);
      if (!got && restart && !restarted) {
        restarted = true;
        log(got.error().message + "; starting over");
        if (auto r = start_over(); !r) return r;
        current = url_;
        continue;
      }
      if (!got) {
        if (!redirect)
          if (auto r = make_durable(); !r) return r.error().with_context(got.error().message);
        return got.error();
      }
      if (redirect) {
        if (++hops > o_.max_redirects)
          return Error{ErrorCode::InvalidArgument,
                       url_ + ": more than " + std::to_string(o_.max_redirects) + " redirects"};
        std::string next = resolve_location(current, location);
        const std::string scheme = scheme_of(next);
        if (scheme != "http" && scheme != "https")
          return Error{ErrorCode::InvalidArgument, current + " redirects to " + next + ", not an http(s) URL"};
        if (scheme_of(current) == "https" && scheme == "http")
          return Error{ErrorCode::InvalidArgument, current + " redirects from https to plain http (" + next + ")"};
        current = std::move(next);
        continue;
      }
      if (auto r = make_durable(); !r) return r;
      if (!complete && state_.total && offset_ < state_.total)
        return Error{ErrorCode::Unavailable, current + " ended the body after " + std::to_string(offset_) + " of " +
                                                 std::to_string(state_.total) + " bytes"};
      if (offset_ < kGgufMagic.size())
        return Error{ErrorCode::InvalidArgument, url_ + " is not a GGUF file (" + std::to_string(offset_) + " bytes)"};
      state_.total = offset_;
      progress(true);
      file_.reset();
      return save_sidecar(env_, sidecar_path_, state_);
    }
  }

  std::string url_, part_path_, sidecar_path_, label_;
  const ModelFetchOptions& o_;
  Env& env_;
  HttpClient& http_;
  Sidecar state_;
  std::unique_ptr<File> file_;
  uint64_t offset_ = 0, resumed_ = 0, fetched_ = 0, unsynced_ = 0;
  std::optional<Digest> expected_;
  std::string expected_from_;
  bool pinned_ = false;
};

// The blob a models/ symlink points to, if it is there.
std::optional<Cid> linked_blob(const std::string& link) {
  char target[512];
  const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  if (n <= 0) return std::nullopt;
  std::string_view t(target, static_cast<size_t>(n));
  auto cid = Cid::parse(t.substr(t.rfind('/') + 1));
  if (!cid || ::access(link.c_str(), R_OK) != 0) return std::nullopt;
  return *cid;
}

// Points models/<key>/<name> at the blob, replacing any older link atomically.
Result<void> link_blob(Env& env, const std::string& store_dir, const std::string& key, const std::string& name,
                       const Cid& cid) {
  const std::string dir = store_dir + "/models/" + key;
  for (const std::string& d : {store_dir + "/models", dir})
    if (auto r = env.make_dir(d); !r) return r.error();
  const std::string link = dir + "/" + name, tmp = link + ".new";
  ::unlink(tmp.c_str());
  if (::symlink(("../../blobs/" + cid.to_string()).c_str(), tmp.c_str()) != 0)
    return errno_error(errno, tmp + ": cannot create the link");
  if (auto r = env.rename(tmp, link); !r) return r.error();
  return env.sync_dir(dir);
}

}  // namespace

Result<Digest> parse_sha256_hex(std::string_view text) {
  const Error bad{ErrorCode::InvalidArgument, "'" + std::string(text) + "' is not a SHA-256 (64 hex digits)"};
  if (text.size() != 64) return bad;
  auto bytes = hex_decode(lower(text));
  if (!bytes) return bad;
  Digest d;
  std::copy(bytes->begin(), bytes->end(), d.begin());
  return d;
}

Result<FetchedModel> fetch_model_url(const std::string& url, const std::string& file_name,
                                     const ModelFetchOptions& o) {
  const std::string scheme = scheme_of(url);
  if ((scheme != "http" && scheme != "https") || host_of(url).empty())
    return Error{ErrorCode::InvalidArgument, "'" + url + "' is not an http:// or https:// URL"};
  if (file_name.empty() || file_name.find('/') != std::string::npos || file_name == "." || file_name == "..")
    return Error{ErrorCode::InvalidArgument, "'" + file_name + "' is not a file name"};
  if (o.store_dir.empty()) return Error{ErrorCode::InvalidArgument, "no store directory to download " + url + " into"};
  Env& env = o.env ? *o.env : Env::Default();
  const std::string key = hex_encode(sha256(std::span(reinterpret_cast<const uint8_t*>(url.data()), url.size()))).substr(0, 32);
  const std::string link = o.store_dir + "/models/" + key + "/" + file_name;

  // From an earlier fetch: no network, no lock.
  if (auto cid = linked_blob(link); cid && (!o.sha256 || cid->digest == *o.sha256)) {
    auto size = env.stat(link);
    if (size) return FetchedModel{link, *cid, size->size, 0, true};
  }

  std::error_code ec;
  std::filesystem::create_directories(o.store_dir, ec);  // the store makes its own directory, not its parents
  if (ec) return errno_error(ec.value(), o.store_dir + ": cannot create");
  auto opened = BlobStore::open(o.store_dir, StoreOptions{.limit_bytes = 0, .env = &env});
  if (!opened) return opened.error();
  BlobStore& store = **opened;
  // The pinned content is in the store already (another URL's): only the link is new.
  if (o.sha256 && store.has(Cid::from_digest(*o.sha256))) {
    const Cid cid = Cid::from_digest(*o.sha256);
    if (auto r = store.pin(cid); !r) return r.error();
    if (auto r = link_blob(env, o.store_dir, key, file_name, cid); !r) return r.error();
    auto size = store.size(cid);
    if (!size) return size.error();
    return FetchedModel{link, cid, *size, 0, true};
  }

  const std::string downloads = o.store_dir + "/downloads";
  if (auto r = env.make_dir(downloads); !r) return r.error();
  const std::string part = downloads + "/" + key + ".part", sidecar = downloads + "/" + key + ".json";
  std::unique_ptr<HttpClient> own_http;
  if (!o.http) own_http = std::make_unique<CurlHttpClient>();
  Download download(url, part, sidecar, file_name, o, env, o.http ? *o.http : *own_http);
  if (o.sha256) download.pin(*o.sha256);
  if (auto r = download.run(); !r) return r.error();

  auto drop_download = [&] {
    (void)env.remove(part);
    (void)env.remove(sidecar);
  };
  if (auto expected = download.expected()) {
    if (o.log) o.log("checking the sha256 of " + file_name);
    auto actual = hash_file(env, part);
    if (!actual) return actual.error().with_context("hashing " + part);
    if (*actual != *expected) {
      drop_download();
      return Error{ErrorCode::Corruption, "sha256 mismatch for " + url + ": " + download.expected_from() + " says " +
                                              hex_encode(*expected) + ", the downloaded file has " +
                                              hex_encode(*actual) + "; the download was deleted"};
    }
  }
  const std::string tmp = store.temp_path(file_name);
  if (auto r = env.rename(part, tmp); !r) return r.error();
  auto imported = store.import_file(tmp, kDefaultChunkSize);
  (void)env.remove(sidecar);
  if (!imported) return imported.error().with_context("storing " + file_name);
  if (auto r = store.pin(imported->cid); !r) return r.error();
  if (auto r = link_blob(env, o.store_dir, key, file_name, imported->cid); !r) return r.error();
  if (o.log)
    o.log("stored " + url + " as " + imported->cid.to_string() +
          (download.expected() ? " (sha256 checked against " + download.expected_from() + ")" : " (no sha256 published)"));
  return FetchedModel{link, imported->cid, imported->size, download.fetched(), false};
}

}  // namespace omni::store
