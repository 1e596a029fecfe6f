#include "store/model_source.h"

#include <sys/stat.h>

#include <cctype>
#include <cstdlib>
#include <vector>

namespace omni::store {
namespace {

bool starts_with_nocase(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i]) return false;
  return true;
}

bool unreserved(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' || c == '~';
}

std::string percent_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    if (unreserved(c)) {
      out += c;
    } else {
      const auto b = static_cast<unsigned char>(c);
      out += '%', out += kHex[b >> 4], out += kHex[b & 15];
    }
  }
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0 && hex_digit(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_digit(s[i + 1]) << 4 | hex_digit(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t end = s.find(sep, start);
    parts.push_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

// The last segment of a URL's path, decoded: the name its file is kept under.
Result<std::string> url_file_name(std::string_view url) {
  const size_t authority = url.find("://") + 3;
  const size_t path = url.find_first_of("/?#", authority);
  if (authority == url.size() || path == authority)
    return Error{ErrorCode::InvalidArgument, "'" + std::string(url) + "' has no host"};
  std::string_view p = path == std::string_view::npos || url[path] != '/' ? "" : url.substr(path);
  p = p.substr(0, p.find_first_of("?#"));
  const std::string name = percent_decode(p.substr(p.rfind('/') + 1));
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos)
    return Error{ErrorCode::InvalidArgument, "'" + std::string(url) + "' names no file (its path must end in a file name)"};
  return name;
}

}  // namespace

Result<std::string> hugging_face_url(std::string_view name, std::string_view endpoint) {
  auto bad = [&](const std::string& why) {
    return Error{ErrorCode::InvalidArgument, "hf:" + std::string(name) + ": " + why +
                                                 " (want hf:ORG/REPO/FILE.gguf or hf:ORG/REPO/FILE.gguf@REVISION)"};
  };
  std::string_view path = name, revision = "main";
  if (const size_t at = name.rfind('@'); at != std::string_view::npos) {
    path = name.substr(0, at);
    revision = name.substr(at + 1);
    if (revision.empty()) return bad("empty revision");
  }
  const auto parts = split(path, '/');
  if (parts.size() < 3) return bad("no file");
  while (endpoint.ends_with('/')) endpoint.remove_suffix(1);
  std::string url(endpoint);
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string_view part = parts[i];
    if (part.empty() || part == "." || part == "..") return bad("an empty, '.' or '..' path segment");
    if (i < 2)
      for (char c : part)
        if (!unreserved(c) || c == '~') return bad("'" + std::string(part) + "' is not an organisation or repository name");
    url += "/" + percent_encode(part);
    if (i == 1) url += "/resolve/" + percent_encode(revision);
  }
  return url;
}

Result<ModelSource> parse_model_source(std::string_view text) {
  ModelSource s;
  s.text = std::string(text);
  struct stat st;
  if (::stat(s.text.c_str(), &st) == 0) return s;  // a file, whatever its name looks like
  if (starts_with_nocase(text, "http://") || starts_with_nocase(text, "https://")) {
    s.kind = ModelSource::Kind::Url;
    s.url = s.text;
  } else if (starts_with_nocase(text, "hf:")) {
    const char* env = std::getenv("HF_ENDPOINT");
    const std::string_view endpoint = env && *env ? env : kHuggingFaceEndpoint;
    if (!starts_with_nocase(endpoint, "http://") && !starts_with_nocase(endpoint, "https://"))
      return Error{ErrorCode::InvalidArgument, "HF_ENDPOINT '" + std::string(endpoint) + "' is not an http(s) URL"};
    auto url = hugging_face_url(text.substr(3), endpoint);
    if (!url) return url.error();
    s.kind = ModelSource::Kind::Url;
    s.url = std::move(*url);
    s.hugging_face = true;
  } else if (auto cid = Cid::parse(text)) {
    s.kind = ModelSource::Kind::Cid;
    s.cid = *cid;
    return s;
  } else {
    return s;  // a missing file: loading it says so
  }
  auto name = url_file_name(s.url);
  if (!name) return name.error();
  s.file_name = std::move(*name);
  return s;
}

Result<ResolvedModel> resolve_model_source(std::string_view text, const ModelFetchOptions& options) {
  auto source = parse_model_source(text);
  if (!source) return source.error();
  ResolvedModel out;
  out.source = std::move(*source);
  if (out.source.kind != ModelSource::Kind::Url) {
    out.model = out.source.text;
    return out;
  }
  ModelFetchOptions fetching = options;
  if (const char* token = std::getenv("HF_TOKEN"); token && *token && out.source.hugging_face) {
    fetching.bearer_token = token;
    const std::string& url = out.source.url;
    const size_t host = url.find("://") + 3;
    fetching.token_host = url.substr(host, url.find_first_of(":/", host) - host);
  }
  auto fetched = fetch_model_url(out.source.url, out.source.file_name, fetching);
  if (!fetched) return fetched.error();
  out.model = fetched->path;
  out.downloaded = !fetched->from_cache;
  return out;
}

}  // namespace omni::store
