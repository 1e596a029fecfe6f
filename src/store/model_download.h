// Fetching a GGUF file from an http(s) URL into the blob store: resumable, verified, cached.
//
// Beside the blob store's own layout (blob_store.h), in its directory:
//   downloads/<key>.part  the bytes received so far from the URL (<key>: the first 32 hex digits of
//                         the SHA-256 of the URL); never loaded as a model
//   downloads/<key>.json  its sidecar: the URL, the validator sent as If-Range on resume (a strong
//                         ETag, else Last-Modified), the total size, the SHA-256 the host publishes,
//                         and how many bytes of .part are durable (fsynced); a resume starts there
//   models/<key>/<FILE>   a symlink to ../../blobs/<cid>: the verified file, named as in the URL
//
// A fetch follows redirects (at most max_redirects, never from https to http), resumes with a
// Range request and If-Range (a server that answers 200 instead sends the whole file again, which
// replaces the partial one), retries a broken or stalled transfer (`attempts`, each resuming), and
// checks the first bytes are a GGUF file. The expected SHA-256 is the pinned one (--model-sha256)
// and the one the host publishes: Hugging Face's X-Linked-Etag, or on a Hugging Face host an ETag
// of 64 hex digits; when both exist they must agree, before any byte of the body is taken. The
// finished file is hashed, and only a match becomes a blob (pinned, so never evicted); a mismatch
// deletes the download. A later fetch of the same URL finds the symlink and uses no network.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/env.h"
#include "base/result.h"
#include "store/cid.h"
#include "store/fetch.h"
#include "store/hash.h"
#include "store/http_client.h"

namespace omni::store {

struct ModelFetchOptions {
  std::string store_dir;                // the blob store to keep the file in
  HttpClient* http = nullptr;           // null: a CurlHttpClient
  Env* env = nullptr;                   // file operations; null: Env::Default()
  std::optional<Digest> sha256;         // pinned: the file must have this SHA-256
  // Sent as "Authorization: Bearer TOKEN" to requests for token_host only, never to the hosts it
  // redirects to (a Hugging Face token, for gated repositories).
  std::string bearer_token, token_host;
  uint32_t max_redirects = 10;
  uint32_t attempts = 4;                // tries of a transfer that broke or stalled, each resuming
  std::chrono::milliseconds retry_delay{1000};  // before the second try; doubled after each
  uint64_t sync_bytes = 8ull << 20;     // bytes between durability points of the partial file
  std::function<void(const std::string&)> log;          // one line per step (resume, verify, ...)
  std::function<void(const FetchProgress&, bool done)> progress;  // active_peers is 0
};

struct FetchedModel {
  std::string path;            // models/<key>/<FILE> in the store
  Cid cid;                     // the file's blob
  uint64_t size = 0;
  uint64_t fetched_bytes = 0;  // body bytes received by this call (0 from the cache)
  bool from_cache = false;     // found from an earlier fetch; no network used
};

// Fetches `url` (http or https) into the store as `file_name` (a plain name, no '/'), or finds it
// there. Errors: an HTTP error status, named with its number (404 NotFound; 401 and 403
// PermissionDenied; 5xx and 429 Unavailable after the retries; others InvalidArgument); too many
// redirects, or one to plain http from https, or a body that is not a GGUF file (InvalidArgument);
// the connection broke or stalled on every try (Unavailable, DeadlineExceeded; the partial file is
// kept for the next call to resume); a SHA-256 mismatch naming both hashes (Corruption; the
// download is deleted); a full disk or store (ResourceExhausted; the partial file is kept); the
// store locked by another process (Unavailable).
Result<FetchedModel> fetch_model_url(const std::string& url, const std::string& file_name,
                                     const ModelFetchOptions& options);

// 64 hex digits (either case) as a digest; InvalidArgument otherwise.
Result<Digest> parse_sha256_hex(std::string_view text);

}  // namespace omni::store
