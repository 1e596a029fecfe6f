#include "gateway/access_policy.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <fstream>

#include "net/peer_id.h"

namespace omni::gateway {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool iequals(std::string_view a, std::string_view b) { return a.size() == b.size() && lower(a) == lower(b); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// "name[:port]" or "[v6][:port]" -> name (brackets kept) and port ("" when absent). nullopt when
// it is no authority: empty, or bytes a host name cannot hold.
std::optional<std::pair<std::string, std::string>> split_authority(std::string_view a) {
  if (a.empty()) return std::nullopt;
  for (char c : a)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7F || c == '/' || c == '@' ||
        c == '?' || c == '#' || c == '\\')
      return std::nullopt;
  std::string_view name = a, port;
  if (a.front() == '[') {
    const size_t close = a.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    name = a.substr(0, close + 1);
    const std::string_view rest = a.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
    }
  } else if (const size_t colon = a.rfind(':'); colon != std::string_view::npos) {
    if (a.find(':') != colon) return std::nullopt;  // an IPv6 address must be in brackets
    name = a.substr(0, colon);
    port = a.substr(colon + 1);
  }
  if (name.empty() || name == "[]") return std::nullopt;
  if (!port.empty() && !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  if (a.back() == ':') return std::nullopt;
  return std::make_pair(lower(name), std::string(port));
}

// "Scheme://Host[:port]" -> "scheme://host[:port]" without the scheme's default port; nullopt for
// anything else ("null", a path, another scheme).
std::optional<std::string> normalize_origin(std::string_view origin) {
  const size_t sep = origin.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  const std::string scheme = lower(origin.substr(0, sep));
  if (scheme != "http" && scheme != "https") return std::nullopt;
  auto authority = split_authority(origin.substr(sep + 3));
  if (!authority) return std::nullopt;
  auto& [name, port] = *authority;
  if ((scheme == "http" && port == "80") || (scheme == "https" && port == "443")) port.clear();
  return scheme + "://" + name + (port.empty() ? "" : ":" + port);
}

bool is_loopback(std::string_view host) {
  const std::string h = lower(host);
  return h == "localhost" || h == "::1" || h == "[::1]" || h.rfind("127.", 0) == 0;
}

// The APIs (OpenAI's under /v1, Ollama's under /api) and the metrics.
bool needs_key(std::string_view path) {
  return path == "/v1" || path.rfind("/v1/", 0) == 0 || path == "/api" || path.rfind("/api/", 0) == 0 ||
         path == "/metrics";
}

bool valid_key(std::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) { return c > 0x20 && c < 0x7F; });
}

ApiError forbidden(std::string message, std::string code) {
  return ApiError{403, std::move(message), "invalid_request_error", std::nullopt, std::move(code), 0};
}

ApiError unauthorized(std::string message) {
  return ApiError{401, std::move(message), "invalid_request_error", std::nullopt, std::string("invalid_api_key"), 0};
}

}  // namespace

Result<AccessPolicy> AccessPolicy::create(const AccessOptions& options, std::string_view listen_host) {
  AccessPolicy p;
  for (const std::string& entry : options.api_keys) {
    std::string key = entry, node;
    // KEY=NODEID binds the key to a node; a key that merely contains '=' (base64 padding) does not
    // end in a peer id.
    if (const size_t eq = entry.rfind('='); eq != std::string::npos && eq > 0 && net::is_peer_id(entry.substr(eq + 1))) {
      key = entry.substr(0, eq);
      node = entry.substr(eq + 1);
    }
    if (!valid_key(key))
      return Error{ErrorCode::InvalidArgument,
                   "an API key must be printable ASCII without spaces (a header carries it), and not empty"};
    Digest d{};
    unsigned int len = 0;
    if (EVP_Digest(key.data(), key.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 || len != d.size())
      return Error{ErrorCode::Internal, "cannot hash the API keys (SHA-256 unavailable)"};
    if (node.empty())
      p.key_digests_.push_back(d);
    else
      p.node_keys_.emplace_back(d, node);
  }
  bool any_host = false;
  for (const std::string& host : options.allowed_hosts) {
    if (host == "*") {
      any_host = true;
      continue;
    }
    auto a = split_authority(host);
    if (!a) return Error{ErrorCode::InvalidArgument, "'" + host + "' is not a host name (NAME or NAME:PORT)"};
    p.hosts_.push_back(a->first + (a->second.empty() ? "" : ":" + a->second));
  }
  if (any_host) p.hosts_.clear();
  else if (options.allowed_hosts.empty() && is_loopback(listen_host)) {
    p.hosts_ = {"localhost", "127.0.0.1", "[::1]"};
    std::string own = lower(listen_host);
    if (own.find(':') != std::string::npos && own.front() != '[') own = "[" + own + "]";
    if (std::find(p.hosts_.begin(), p.hosts_.end(), own) == p.hosts_.end()) p.hosts_.push_back(own);
  }
  for (const std::string& origin : options.allowed_origins) {
    if (origin == "*") {
      p.any_origin_ = true;
      continue;
    }
    auto o = normalize_origin(origin);
    if (!o) return Error{ErrorCode::InvalidArgument, "'" + origin + "' is not an origin (http[s]://HOST[:PORT], no path)"};
    p.origins_.push_back(*o);
  }
  return p;
}

bool AccessPolicy::host_allowed(std::string_view host_header) const {
  if (hosts_.empty()) return true;
  auto a = split_authority(host_header);
  if (!a) return false;
  const std::string with_port = a->first + (a->second.empty() ? "" : ":" + a->second);
  return std::any_of(hosts_.begin(), hosts_.end(),
                     [&](const std::string& h) { return h == a->first || h == with_port; });
}

bool AccessPolicy::origin_allowed(std::string_view origin) const {
  auto o = normalize_origin(origin);
  if (!o) return false;  // "null" (a sandboxed or file: page) is nobody's origin
  if (any_origin_) return true;
  return std::find(origins_.begin(), origins_.end(), *o) != origins_.end();
}

std::string AccessPolicy::node_of(std::optional<std::string_view> authorization) const {
  if (!authorization || node_keys_.empty()) return {};
  const std::string_view value = trim(*authorization);
  if (value.size() <= 7 || !iequals(value.substr(0, 7), "bearer ")) return {};
  return node_of_key(trim(value.substr(7)));
}

std::string AccessPolicy::node_of_key(std::string_view presented) const {
  Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(presented.data(), presented.size(), d.data(), &len, EVP_sha256(), nullptr) != 1) return {};
  const std::string* node = nullptr;
  for (const auto& [k, id] : node_keys_)
    if (CRYPTO_memcmp(k.data(), d.data(), d.size()) == 0) node = &id;
  return node ? *node : std::string();
}

bool AccessPolicy::key_matches(std::string_view presented) const {
  Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(presented.data(), presented.size(), d.data(), &len, EVP_sha256(), nullptr) != 1) return false;
  int matched = 0;
  for (const Digest& k : key_digests_) matched |= CRYPTO_memcmp(k.data(), d.data(), d.size()) == 0;
  return matched != 0;
}

AccessDecision AccessPolicy::decide(const AccessRequest& r) const {
  AccessDecision out;
  if (r.host && !host_allowed(*r.host)) {
    out.refusal = forbidden("requests for the host '" + std::string(r.host->substr(0, 256)) +
                                "' are not served here (allowed: --allowed-host)",
                            "host_not_allowed");
    return out;
  }
  if (r.origin) {
    const auto own = r.host ? normalize_origin("http://" + std::string(*r.host)) : std::nullopt;
    const auto own_tls = r.host ? normalize_origin("https://" + std::string(*r.host)) : std::nullopt;
    const auto origin = normalize_origin(*r.origin);
    const bool same_origin = origin && ((own && *origin == *own) || (own_tls && *origin == *own_tls));
    if (!same_origin) {
      if (!origin_allowed(*r.origin)) {
        out.refusal = forbidden("requests from the origin '" + std::string(r.origin->substr(0, 256)) +
                                    "' are not allowed (allowed: this gateway's own pages and --allowed-origin)",
                                "origin_not_allowed");
        return out;
      }
      out.headers.emplace_back("Access-Control-Allow-Origin", std::string(*r.origin));
      out.headers.emplace_back("Vary", "Origin");
      if (r.method == "OPTIONS" && r.preflight_method) {
        out.preflight = true;
        out.headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        out.headers.emplace_back("Access-Control-Allow-Headers", "Authorization, Content-Type");
        out.headers.emplace_back("Access-Control-Max-Age", "600");
        return out;
      }
      out.headers.emplace_back("Access-Control-Expose-Headers", "Retry-After");
    }
  }
  if ((requires_key() || !node_keys_.empty()) && needs_key(r.path)) {
    std::string_view presented;
    bool bearer = false;
    if (r.authorization) {
      const std::string_view value = trim(*r.authorization);
      if (value.size() > 7 && iequals(value.substr(0, 7), "bearer ")) {
        presented = trim(value.substr(7));
        bearer = true;
      }
    }
    if (bearer) out.node_id = node_of_key(presented);
    const bool anonymous_allowed = !requires_key() && !bearer;
    if (!anonymous_allowed && out.node_id.empty() && !(bearer && key_matches(presented))) {
      out.refusal = unauthorized(bearer ? "the API key is not valid"
                                        : "an API key is required: send the header 'Authorization: Bearer KEY'");
      out.headers.emplace_back("WWW-Authenticate", "Bearer");
    }
  }
  return out;
}

Result<std::vector<std::string>> read_api_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    const int e = errno;
    return Error{e == EACCES ? ErrorCode::PermissionDenied : ErrorCode::NotFound,
                 "cannot read the API key file " + path};
  }
  std::vector<std::string> keys;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    const std::string_view key = trim(line);
    if (key.empty() || key.front() == '#') continue;
    if (!valid_key(key))
      return Error{ErrorCode::InvalidArgument,
                   path + ":" + std::to_string(n) + ": an API key must be printable ASCII without spaces"};
    keys.emplace_back(key);
  }
  if (keys.empty()) return Error{ErrorCode::InvalidArgument, "the API key file " + path + " holds no key"};
  return keys;
}

}  // namespace omni::gateway
