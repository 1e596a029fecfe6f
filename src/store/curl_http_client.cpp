#include "store/curl_http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>
#include <optional>

namespace omni::store {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return std::string(s);
}

// The state of one transfer, shared with libcurl's callbacks.
struct Transfer {
  CURL* curl = nullptr;
  const HttpClient::HeadSink* on_head = nullptr;
  const HttpClient::BodySink* on_body = nullptr;
  HttpResponseHead head;
  bool head_sent = false;
  std::optional<Error> sink_error;  // why a callback stopped the transfer
  uint64_t body_bytes = 0;

  bool send_head() {
    if (head_sent) return true;
    head_sent = true;
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    head.status = static_cast<int>(status);
    if (auto r = (*on_head)(head); !r) {
      sink_error = r.error();
      return false;
    }
    return true;
  }
};

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    t->head.headers.clear();  // an interim response (100 Continue) before the real one
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    t->head.headers[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 1));
  }
  return size * count;
}

size_t on_write(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  if (!t->send_head()) return 0;
  const size_t n = size * count;
  if (auto r = (*t->on_body)(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data), n)); !r) {
    t->sink_error = r.error();
    return 0;  // libcurl ends the transfer with CURLE_WRITE_ERROR
  }
  t->body_bytes += n;
  return n;
}

Error curl_error(CURLcode code, const std::string& url, const char* detail, uint64_t body_bytes) {
  std::string what = detail[0] ? detail : curl_easy_strerror(code);
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return Error{ErrorCode::DeadlineExceeded, url + ": no data for too long (" + what + ")"};
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return Error{ErrorCode::InvalidArgument, url + ": " + what};
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
      return Error{ErrorCode::Unavailable,
                   url + ": the connection broke after " + std::to_string(body_bytes) + " bytes of the body (" + what + ")"};
    default:
      return Error{ErrorCode::Unavailable, url + ": " + what};
  }
}

}  // namespace

CurlHttpClient::CurlHttpClient(CurlOptions options) : options_(options) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Result<void> CurlHttpClient::get(const HttpRequest& request, const HeadSink& on_head, const BodySink& on_body) {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  if (!curl) return Error{ErrorCode::ResourceExhausted, "cannot start an HTTP transfer (libcurl)"};
  curl_slist* list = nullptr;
  for (const auto& [name, value] : request.headers) {
    curl_slist* grown = curl_slist_append(list, (name + ": " + value).c_str());
    if (!grown) {
      curl_slist_free_all(list);
      return Error{ErrorCode::ResourceExhausted, "cannot build the HTTP request (libcurl)"};
    }
    list = grown;
  }
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(list, &curl_slist_free_all);
  Transfer t;
  t.curl = curl.get();
  t.on_head = &on_head;
  t.on_body = &on_body;
  char detail[CURL_ERROR_SIZE] = "";
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_USERAGENT, "omni-model-download");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(options_.connect_timeout_s));
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.stall_timeout_s));
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, detail);
  const CURLcode rc = curl_easy_perform(c);
  if (t.sink_error) return *t.sink_error;
  if (rc != CURLE_OK) return curl_error(rc, request.url, detail, t.body_bytes);
  // A response without a body (a redirect, a 416) has not been shown yet.
  if (!t.send_head()) return *t.sink_error;
  return {};
}

}  // namespace omni::store
