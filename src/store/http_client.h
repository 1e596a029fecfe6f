// HttpClient: the seam between the model downloader (model_download.h) and HTTP. One GET per call,
// redirects not followed (the downloader follows them itself, bounded, so every client behaves the
// same), the response streamed to the caller. CurlHttpClient (curl_http_client.h) is the real one;
// tests put in their own to fail a transfer at any point.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace omni::store {

struct HttpRequest {
  std::string url;                                           // http:// or https://
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. {"Range", "bytes=100-"}
};

struct HttpResponseHead {
  int status = 0;                             // 200, 206, 302, 404, ...
  std::map<std::string, std::string> headers;  // names in lower case; a repeated header's last value
  const std::string* find(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? nullptr : &it->second;
  }
};

class HttpClient {
 public:
  // on_head sees the status and headers before any byte of the body; on_body then gets the body in
  // pieces as it arrives. An error returned by either ends the transfer and is get()'s error.
  using HeadSink = std::function<Result<void>(const HttpResponseHead&)>;
  using BodySink = std::function<Result<void>(std::span<const uint8_t>)>;

  virtual ~HttpClient() = default;
  // Errors: the server cannot be reached, or the connection broke, also mid-body (Unavailable); no
  // progress for the client's stall timeout (DeadlineExceeded); a URL it cannot fetch
  // (InvalidArgument); the sinks' own errors as they returned them. An HTTP error status is not an
  // error here: on_head sees it.
  virtual Result<void> get(const HttpRequest& request, const HeadSink& on_head, const BodySink& on_body) = 0;
};

}  // namespace omni::store
