// RequestFramer: finds where one HTTP/1.x request ends in a byte stream, strictly by RFC 9112, and
// turns it into one httplib can only read one way: the head as received minus its framing
// (Content-Length, Transfer-Encoding, Expect), plus one `Content-Length` of the decoded body.
// httplib never sees chunked input, a list of lengths or any other ambiguous framing.
//
// Bytes are fed as they arrive, in any split; the outcome does not depend on the split. Memory is
// bounded by the limits: the head is held up to FramingLimits::head, the decoded body up to
// max_body_bytes, and nothing else (chunk lines and trailers are checked in passing, not kept).
//
// Errors carry the HTTP status to answer with, after which the connection must be closed:
//   400  malformed or ambiguous framing: bad request line, whitespace before a header's colon,
//        obs-fold, bare CR or LF, NUL or another control byte, Content-Length with
//        Transfer-Encoding, more than one Content-Length or a list, a non-numeric or overflowing
//        length, a Transfer-Encoding whose last coding is not chunked, any Transfer-Encoding in
//        HTTP/1.0, HTTP/1.1 without exactly one Host, bad chunk syntax
//   413  a body (declared, or decoded so far plus the next chunk) over max_body_bytes
//   431  a head over HeadLimits, a chunk line or the trailers over their caps
//   501  a transfer coding other than chunked before the final chunked
//   505  an HTTP version other than 1.0 and 1.1
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/head_limits.h"

namespace omni::gateway {

struct FramingLimits {
  HeadLimits head;
  size_t max_body_bytes = 4 << 20;       // decoded body
  size_t max_chunk_line_bytes = 4096;    // a chunk-size line with its (ignored) extensions
  size_t max_trailer_bytes = 16 << 10;   // all trailer lines of a chunked body
};

// One complete request, reframed.
struct FramedRequest {
  std::string head;        // request line and headers, CRLF line ends, Content-Length last, then CRLF
  std::string body;        // decoded
  bool keep_alive = true;  // HTTP/1.1 without "Connection: close", or HTTP/1.0 with keep-alive
};

struct FramingError {
  int status = 0;          // 400, 413, 431, 501 or 505
  std::string reason;      // for the client: what was wrong
};

class RequestFramer {
 public:
  enum class State { NeedMore, Complete, Failed };

  explicit RequestFramer(FramingLimits limits);

  // Takes bytes of the current request from the front of `bytes` and returns how many it took:
  // all of them unless the request ended inside (the rest belongs to the next one) or it failed.
  // Feeding in Complete or Failed takes nothing.
  size_t feed(std::string_view bytes);

  State state() const { return state_; }
  // Whether any byte of the current request has arrived (blank lines before it do not count).
  bool started() const { return started_; }
  // Whether the head is complete (the body, if any, is still arriving while NeedMore).
  bool head_complete() const { return phase_ != Phase::Head; }
  // Whether the client sent "Expect: 100-continue" and now waits for the body to be invited.
  bool expects_continue() const { return expects_continue_ && state_ == State::NeedMore && head_complete(); }
  const FramingError& error() const { return error_; }
  // Once head_complete() and until take(): the request line and headers as reframed (no framing
  // headers, no blank line), for a look at the request before its body arrives.
  std::string_view head() const { return request_.head; }

  // In Complete: the request; the framer then starts on the next one.
  FramedRequest take();

 private:
  enum class Phase { Head, LengthBody, ChunkLine, ChunkData, ChunkDataEnd, Trailers };

  size_t feed_head(std::string_view bytes);
  size_t feed_chunk_line(std::string_view bytes);
  size_t feed_trailers(std::string_view bytes);
  void parse_head();
  void parse_chunk_size(std::string_view line);
  void fail(int status, std::string reason);
  void complete();
  void reset();

  FramingLimits limits_;
  State state_ = State::NeedMore;
  Phase phase_ = Phase::Head;
  FramingError error_;
  bool started_ = false;

  // The head while it arrives, and what it counts.
  std::string head_;
  size_t head_bytes_ = 0;       // with the blank lines before the request line
  size_t head_lines_ = 0;       // header lines, not counting the request line
  size_t line_start_ = 0;       // where the current line begins in head_
  bool after_cr_ = false;       // the last byte was a CR (in the head, a chunk line or the trailers)

  // The request being framed.
  FramedRequest request_;
  bool expects_continue_ = false;
  uint64_t left_ = 0;           // body bytes to come (LengthBody) or in this chunk (ChunkData)
  std::string line_;            // the chunk-size line so far
  size_t line_bytes_ = 0;       // trailer: bytes of the current line
  size_t trailer_bytes_ = 0;
};

}  // namespace omni::gateway
