// AccessPolicy: who may use the gateway from where. Checked on every request before it is routed,
// in this order:
//
//   1. Host: the Host header's name must be on the allow-list, else 403 (code "host_not_allowed").
//      A page on attacker.example whose name is rebound to 127.0.0.1 (DNS rebinding) sends
//      "Host: attacker.example", so a loopback gateway is out of its reach. Default: when the
//      gateway listens on a loopback address, localhost, 127.0.0.1, [::1] and the listen host
//      (any port); otherwise any host.
//   2. Origin: a request that carries an Origin header (a browser's cross-site or same-site
//      request) must come from the gateway's own origin (scheme://Host) or from an allowed origin,
//      else 403 (code "origin_not_allowed") and no CORS headers, so a web page the user visits
//      cannot make the gateway generate. Requests without Origin (curl, SDKs) pass.
//   3. CORS: for an allowed foreign origin, the answer carries Access-Control-Allow-Origin (that
//      origin) and Vary: Origin; its preflight (OPTIONS with Access-Control-Request-Method) is
//      answered 204 with the allowed methods and headers, and needs no key (browsers send none).
//   4. API key: with keys configured, the APIs (/v1/... and Ollama's /api/...) and /metrics need
//      "Authorization: Bearer KEY" with one of them, else 401 (code "invalid_api_key",
//      WWW-Authenticate: Bearer). /health and the web UI's static files stay open: they reveal
//      nothing a key protects, and the UI must load to ask for the key. Keys are compared in
//      constant time (their SHA-256 digests, with CRYPTO_memcmp, against every key).
//   5. Node keys (fair use, fair_use.h): a key written KEY=NODEID, NODEID a peer id (what follows
//      the last '='), is bound to that node: a request presenting KEY is the node's (the decision
//      names it) and is served by its contribution. Node keys alone do not make keys required:
//      anonymous requests get the free tier. But a request that presents a Bearer key matching no
//      key is refused 401 whenever any key is configured (a wrong or forged key is never silently
//      served as anonymous).
//
// Immutable once created; decide() may be called from many threads.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "gateway/api_error.h"

namespace omni::gateway {

struct AccessOptions {
  std::vector<std::string> api_keys;         // empty: no key needed; KEY=NODEID: a node key (5.)
  // Host names ("example.com", "10.0.0.5", "[::1]"), optionally with ":PORT" to allow that port
  // only; "*" allows any. Empty: the default above.
  std::vector<std::string> allowed_hosts;
  // Origins ("https://app.example.com", "http://localhost:5173") besides the gateway's own; "*"
  // allows any.
  std::vector<std::string> allowed_origins;
};

// What decide() needs of a request; absent headers are nullopt.
struct AccessRequest {
  std::string_view method;
  std::string_view path;
  std::optional<std::string_view> host;
  std::optional<std::string_view> origin;
  std::optional<std::string_view> authorization;
  std::optional<std::string_view> preflight_method;  // Access-Control-Request-Method
};

struct AccessDecision {
  std::optional<ApiError> refusal;  // 401 or 403: answer this and nothing else
  bool preflight = false;           // an allowed CORS preflight: answer 204 with `headers`
  std::string node_id;              // the request presented a node key: that node's peer id
  std::vector<std::pair<std::string, std::string>> headers;  // to add to the answer, whatever it is
};

class AccessPolicy {
 public:
  // `listen_host` (the --listen host) picks the default Host allow-list. InvalidArgument: a key
  // that a header cannot carry (empty, spaces, control or non-ASCII bytes), a host or origin
  // that is not one (an origin with a path, a scheme other than http/https).
  static Result<AccessPolicy> create(const AccessOptions& options, std::string_view listen_host);

  AccessDecision decide(const AccessRequest& request) const;

  bool requires_key() const { return !key_digests_.empty(); }
  size_t node_keys() const { return node_keys_.size(); }
  // The node bound to the Bearer key in `authorization`, or empty (for a request decide() let in).
  std::string node_of(std::optional<std::string_view> authorization) const;
  // The Host allow-list in force, for the startup line; empty: any host.
  const std::vector<std::string>& allowed_hosts() const { return hosts_; }

 private:
  using Digest = std::array<unsigned char, 32>;

  bool host_allowed(std::string_view host_header) const;
  bool origin_allowed(std::string_view origin) const;  // a foreign origin, on the list
  bool key_matches(std::string_view presented) const;
  // The node bound to the key presented, or empty; every node key is compared (constant time).
  std::string node_of_key(std::string_view presented) const;

  std::vector<Digest> key_digests_;
  std::vector<std::pair<Digest, std::string>> node_keys_;  // digest of KEY, node id
  std::vector<std::string> hosts_;    // lowercase "name" or "name:port"; empty: any
  std::vector<std::string> origins_;  // lowercase "scheme://name[:port]", default ports removed
  bool any_origin_ = false;
};

// The keys in `path`, one a line; blank lines and lines starting with '#' are skipped, spaces
// around a key trimmed. NotFound/PermissionDenied: the file cannot be read; InvalidArgument: a
// line that is no valid key, or no key at all (a key file that grants nothing is a mistake).
Result<std::vector<std::string>> read_api_key_file(const std::string& path);

}  // namespace omni::gateway
