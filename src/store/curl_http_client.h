// CurlHttpClient: HttpClient over libcurl (http and https only; TLS certificates checked against
// the system's CA store; proxies from the usual environment variables, as curl does).
#pragma once

#include <cstdint>

#include "store/http_client.h"

namespace omni::store {

struct CurlOptions {
  uint32_t connect_timeout_s = 30;
  // A transfer that receives nothing for this long is DeadlineExceeded.
  uint32_t stall_timeout_s = 60;
};

class CurlHttpClient : public HttpClient {
 public:
  explicit CurlHttpClient(CurlOptions options = {});
  Result<void> get(const HttpRequest& request, const HeadSink& on_head, const BodySink& on_body) override;

 private:
  CurlOptions options_;
};

}  // namespace omni::store
