#include "gateway/request_framer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace omni::gateway {
namespace {

using namespace std::string_literals;

struct Outcome {
  RequestFramer::State state = RequestFramer::State::NeedMore;
  int status = 0;  // in Failed
  FramedRequest request;
  size_t taken = 0;
};

// Feeds `bytes` `step` bytes at a time (0: all at once) until the request completes or fails.
Outcome frame(const std::string& bytes, size_t step = 0, FramingLimits limits = {}) {
  RequestFramer framer(limits);
  Outcome out;
  const size_t n = step == 0 ? bytes.size() : step;
  for (size_t pos = 0; pos < bytes.size() && framer.state() == RequestFramer::State::NeedMore; pos += n) {
    const std::string_view piece = std::string_view(bytes).substr(pos, n);
    const size_t used = framer.feed(piece);
    out.taken += used;
    if (framer.state() == RequestFramer::State::NeedMore) {
      EXPECT_EQ(used, piece.size());
    }
  }
  out.state = framer.state();
  if (out.state == RequestFramer::State::Failed) out.status = framer.error().status;
  if (out.state == RequestFramer::State::Complete) out.request = framer.take();
  return out;
}

int status_of(const std::string& bytes) {
  const Outcome whole = frame(bytes);
  const Outcome bytewise = frame(bytes, 1);
  EXPECT_EQ(whole.state, bytewise.state) << bytes;
  EXPECT_EQ(whole.status, bytewise.status) << bytes;
  if (whole.state == RequestFramer::State::Complete) return 200;
  if (whole.state == RequestFramer::State::NeedMore) return 0;
  return whole.status;
}

const std::string kGet = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";

TEST(RequestFramer, AGetIsReframedWithAZeroLength) {
  for (size_t step : {0, 1, 7}) {
    const Outcome o = frame(kGet, step);
    ASSERT_EQ(o.state, RequestFramer::State::Complete);
    EXPECT_EQ(o.request.head, "GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(o.request.body, "");
    EXPECT_TRUE(o.request.keep_alive);
    EXPECT_EQ(o.taken, kGet.size());
  }
}

TEST(RequestFramer, HeaderValuesAreTrimmedAndFramingHeadersReplaced) {
  const std::string r =
      "POST /v1/x HTTP/1.1\r\nHost:  a \r\nContent-Length: 5\r\nExpect: 100-continue\r\nX-A:\tb c\t\r\n\r\nhello";
  const Outcome o = frame(r);
  ASSERT_EQ(o.state, RequestFramer::State::Complete);
  EXPECT_EQ(o.request.head, "POST /v1/x HTTP/1.1\r\nHost: a\r\nX-A: b c\r\nContent-Length: 5\r\n\r\n");
  EXPECT_EQ(o.request.body, "hello");
}

TEST(RequestFramer, PipelinedRequestsAreSplitAtTheirEnds) {
  const std::string post = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
  const std::string both = post + kGet;
  RequestFramer framer({});
  const size_t first = framer.feed(both);
  EXPECT_EQ(first, post.size());
  ASSERT_EQ(framer.state(), RequestFramer::State::Complete);
  EXPECT_EQ(framer.take().body, "abc");
  EXPECT_EQ(framer.state(), RequestFramer::State::NeedMore);
  EXPECT_FALSE(framer.started());
  EXPECT_EQ(framer.feed(std::string_view(both).substr(first)), kGet.size());
  ASSERT_EQ(framer.state(), RequestFramer::State::Complete);
  EXPECT_EQ(framer.take().head.rfind("GET /health", 0), 0u);
}

TEST(RequestFramer, ChunkedBodiesAreDecoded) {
  const std::string r =
      "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;name=value\r\nhello\r\n1A \t;x\r\n" + std::string(26, 'z') + "\r\n0\r\nTrailer: t\r\n\r\n";
  for (size_t step : {0, 1, 3}) {
    const Outcome o = frame(r, step);
    ASSERT_EQ(o.state, RequestFramer::State::Complete) << o.status;
    EXPECT_EQ(o.request.body, "hello" + std::string(26, 'z'));
    EXPECT_EQ(o.request.head, "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 31\r\n\r\n");
    EXPECT_EQ(o.taken, r.size());
  }
  EXPECT_EQ(status_of("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n"), 200);
}

TEST(RequestFramer, BodiesOverTheLimitAre413BeforeTheyArrive) {
  FramingLimits limits;
  limits.max_body_bytes = 100;
  // A declared length over the limit fails with the head.
  Outcome o = frame("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", 0, limits);
  EXPECT_EQ(o.state, RequestFramer::State::Failed);
  EXPECT_EQ(o.status, 413);
  EXPECT_EQ(frame("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'x'), 0, limits).state,
            RequestFramer::State::Complete);
  // Chunked: the chunk that would pass the limit fails on its size line, before its data.
  const std::string head = "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  o = frame(head + "40\r\n" + std::string(64, 'x') + "\r\n25\r\n", 0, limits);
  EXPECT_EQ(o.state, RequestFramer::State::Failed);
  EXPECT_EQ(o.status, 413);
  EXPECT_EQ(frame(head + "40\r\n" + std::string(64, 'x') + "\r\n24\r\n" + std::string(36, 'x') + "\r\n0\r\n\r\n", 0,
                  limits).state,
            RequestFramer::State::Complete);
  // A size with very many digits saturates rather than wrapping round to a small one.
  o = frame(head + "10000000000000000000000000000000a\r\n", 0, limits);
  EXPECT_EQ(o.status, 413);
}

TEST(RequestFramer, AmbiguousFramingIs400) {
  const std::string h = "POST /a HTTP/1.1\r\nHost: a\r\n";
  for (const std::string& r : std::vector<std::string>{
           h + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
           h + "Content-Length: 3\r\nContent-Length: 3\r\n\r\n",
           h + "Content-Length: 3, 3\r\n\r\n",
           h + "Content-Length: +3\r\n\r\n",
           h + "Content-Length: 0x3\r\n\r\n",
           h + "Content-Length: \r\n\r\n",
           h + "Content-Length: 99999999999999999999999\r\n\r\n",
           h + "Transfer-Encoding: xchunked\r\n\r\n",
           h + "Transfer-Encoding: chunked, gzip\r\n\r\n",
           h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
           h + "Transfer-Encoding: chunked, chunked\r\n\r\n",
           "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
           "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nX-Fold: a\r\n b\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"s,
           "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
           "GET / HTTP/1.1\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
           "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
           "GET / http/1.1\r\nHost: a\r\n\r\n",
           "GET /\r\nHost: a\r\n\r\n",
           "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
       })
    EXPECT_EQ(status_of(r), 400) << r;
  // Chunk syntax.
  const std::string c = h + "Transfer-Encoding: chunked\r\n\r\n";
  for (const std::string body : {"x\r\n", "-1\r\n", " 5\r\nhello\r\n0\r\n\r\n", "5 \r\nhello\r\n0\r\n\r\n",
                                  "5\nhello\r\n0\r\n\r\n", "5\r\nhelloXY0\r\n\r\n", "5\r\nhello\r\n0\r\nT\n\r\n",
                                  "5;a\x01\r\nhello\r\n0\r\n\r\n"})
    EXPECT_EQ(status_of(c + body), 400) << body;
}

TEST(RequestFramer, UnsupportedCodingsAre501AndVersions505) {
  EXPECT_EQ(status_of("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
  EXPECT_EQ(status_of("POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501);
  EXPECT_EQ(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
  EXPECT_EQ(status_of("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505);
  EXPECT_EQ(status_of("GET / HTTP/1.0\r\n\r\n"), 200);  // HTTP/1.0 needs no Host
}

TEST(RequestFramer, HeadsOverTheCapsAre431) {
  const HeadLimits caps;
  std::string lines = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (size_t i = 1; i < caps.max_header_lines; ++i) lines += "X-" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(status_of(lines + "\r\n"), 200);
  EXPECT_EQ(status_of(lines + "X-Last: v\r\n\r\n"), 431);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(caps.max_head_bytes, 'v') + "\r\n\r\n"), 431);
  // A flood fails as soon as it passes the cap, without taking the rest.
  RequestFramer framer({});
  const std::string flood = "GET / HTTP/1.1\r\nX: " + std::string(1 << 20, 'v');
  EXPECT_LE(framer.feed(flood), caps.max_head_bytes + 1);
  EXPECT_EQ(framer.error().status, 431);
  // Trailers and chunk lines are capped too.
  const std::string c = "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(status_of(c + "1;" + std::string(5000, 'e') + "\r\n"), 431);
  EXPECT_EQ(status_of(c + "0\r\nT: " + std::string(20000, 't') + "\r\n\r\n"), 431);
}

TEST(RequestFramer, ConnectionOptionsDecideKeepAlive) {
  EXPECT_TRUE(frame(kGet).request.keep_alive);
  EXPECT_FALSE(frame("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n").request.keep_alive);
  EXPECT_FALSE(frame("GET / HTTP/1.0\r\n\r\n").request.keep_alive);
  EXPECT_TRUE(frame("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").request.keep_alive);
}

TEST(RequestFramer, ExpectContinueIsReportedUntilTheBodyArrives) {
  RequestFramer framer({});
  framer.feed("POST /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  EXPECT_TRUE(framer.expects_continue());
  framer.feed("ab");
  EXPECT_FALSE(framer.expects_continue());
  EXPECT_EQ(framer.state(), RequestFramer::State::Complete);
}

TEST(RequestFramer, BlankLinesBeforeARequestAreIgnored) {
  RequestFramer framer({});
  framer.feed("\r\n\r\n");
  EXPECT_FALSE(framer.started());
  framer.feed(kGet);
  EXPECT_EQ(framer.state(), RequestFramer::State::Complete);
}

}  // namespace
}  // namespace omni::gateway
