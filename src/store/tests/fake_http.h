// FakeHttp: an HttpClient that serves files from memory as an HTTP server would (Range and
// If-Range against a strong ETag, redirects, any status), and fails on demand: it can cut a body
// after N bytes, answer a fixed status, or refuse every request. It records what was asked and how
// many body bytes the client took.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "store/hash.h"
#include "store/http_client.h"

namespace omni::store::testing {

class FakeHttp : public HttpClient {
 public:
  struct Resource {
    std::vector<uint8_t> body;
    std::string etag;              // strong, with quotes; empty: none
    std::string linked_etag;       // X-Linked-Etag value; empty: none
    std::string redirect_to;       // a Location: the answer is 302
    int status = 0;                // a fixed answer (404, 503, ...) instead of the body
    bool content_length = true;    // false: the length is not announced
  };
  struct Request {
    std::string url;
    std::map<std::string, std::string> headers;
    uint64_t body_bytes = 0;  // taken by the client
  };

  std::map<std::string, Resource> resources;
  std::optional<uint64_t> cut_after;  // the next body ends with an error after this many bytes
  bool cut_quietly = false;           // ...or just ends, short of its Content-Length
  bool refuse_all = false;
  size_t piece = 64 << 10;
  std::vector<Request> requests;

  Result<void> get(const HttpRequest& request, const HeadSink& on_head, const BodySink& on_body) override {
    Request rec{request.url, {}, 0};
    for (const auto& [k, v] : request.headers) rec.headers[k] = v;
    requests.push_back(rec);
    Request& r = requests.back();
    if (refuse_all) return Error{ErrorCode::Unavailable, request.url + ": connection refused"};
    auto it = resources.find(request.url);
    HttpResponseHead head;
    if (it == resources.end()) {
      head.status = 404;
      return on_head(head);
    }
    const Resource& res = it->second;
    if (!res.linked_etag.empty()) head.headers["x-linked-etag"] = res.linked_etag;
    if (!res.redirect_to.empty()) {
      head.status = 302;
      head.headers["location"] = res.redirect_to;
      return on_head(head);
    }
    if (res.status) {
      head.status = res.status;
      return on_head(head);
    }
    if (!res.etag.empty()) head.headers["etag"] = res.etag;
    uint64_t first = 0;
    const auto range = r.headers.find("Range");
    const auto if_range = r.headers.find("If-Range");
    const bool honour = range != r.headers.end() && (if_range == r.headers.end() || if_range->second == res.etag);
    if (honour) {
      first = std::stoull(range->second.substr(6));
      if (first >= res.body.size()) {
        head.status = 416;
        return on_head(head);
      }
      head.status = 206;
      head.headers["content-range"] = "bytes " + std::to_string(first) + "-" + std::to_string(res.body.size() - 1) +
                                      "/" + std::to_string(res.body.size());
    } else {
      head.status = 200;
    }
    if (res.content_length) head.headers["content-length"] = std::to_string(res.body.size() - first);
    if (auto h = on_head(head); !h) return h;
    uint64_t limit = res.body.size() - first;
    std::optional<uint64_t> cut = cut_after;
    cut_after.reset();
    if (cut) limit = std::min(limit, *cut);
    for (uint64_t off = 0; off < limit;) {
      const uint64_t n = std::min<uint64_t>(piece, limit - off);
      if (auto b = on_body(std::span(res.body.data() + first + off, n)); !b) return b;
      off += n;
      r.body_bytes += n;
    }
    if (cut && !cut_quietly && limit < res.body.size() - first)
      return Error{ErrorCode::Unavailable, request.url + ": connection reset"};
    return {};
  }
};

}  // namespace omni::store::testing
