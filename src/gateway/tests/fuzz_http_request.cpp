// libFuzzer target: any byte stream must frame into requests and at most one error, never crash or
// hang, and:
//   - the outcome does not depend on how the bytes are split (all at once, one by one, in pieces);
//   - a decoded body never exceeds the limit, an error is one of the documented statuses;
//   - a framed request is well framed: reframing it gives the same request back.
// The first two bytes pick the limits, so small ones are reached too.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "gateway/request_framer.h"

namespace {

using omni::gateway::FramedRequest;
using omni::gateway::FramingLimits;
using omni::gateway::RequestFramer;

struct Event {
  bool failed = false;
  int status = 0;
  FramedRequest request;
  bool operator==(const Event& o) const {
    return failed == o.failed && status == o.status && request.head == o.request.head &&
           request.body == o.request.body && request.keep_alive == o.request.keep_alive;
  }
};

// Frames every request in `input`, fed in pieces of the sizes `piece` gives (0: the rest).
template <typename Piece>
std::vector<Event> frame_all(const FramingLimits& limits, std::string_view input, Piece piece) {
  std::vector<Event> events;
  RequestFramer framer(limits);
  while (!input.empty()) {
    const size_t n = piece();
    const std::string_view part = input.substr(0, n == 0 ? input.size() : n);
    input.remove_prefix(framer.feed(part));
    if (framer.state() == RequestFramer::State::Failed) {
      events.push_back({true, framer.error().status, {}});
      return events;
    }
    if (framer.state() == RequestFramer::State::Complete) events.push_back({false, 0, framer.take()});
  }
  return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  FramingLimits limits;
  limits.max_body_bytes = static_cast<size_t>(data[0]) * 16;
  limits.head.max_header_lines = 1 + data[1] % 32;
  limits.head.max_head_bytes = 32 + static_cast<size_t>(data[1]) * 16;
  limits.max_chunk_line_bytes = 8 + data[0] % 64;
  limits.max_trailer_bytes = 8 + data[1] % 128;
  const std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  const auto whole = frame_all(limits, input, [] { return size_t{0}; });
  const auto bytewise = frame_all(limits, input, [] { return size_t{1}; });
  uint32_t seed = data[0] * 257u + data[1];
  const auto pieces = frame_all(limits, input, [&seed] {
    seed = seed * 1103515245u + 12345u;
    return size_t{1} + (seed >> 16) % 97;
  });
  if (!(whole == bytewise) || !(whole == pieces)) std::abort();

  FramingLimits roomier = limits;  // a reframed head gains a Content-Length line
  roomier.head.max_header_lines += 1;
  roomier.head.max_head_bytes += 64;
  for (const Event& e : whole) {
    if (e.failed) {
      if (e.status != 400 && e.status != 413 && e.status != 431 && e.status != 501 && e.status != 505) std::abort();
      continue;
    }
    if (e.request.body.size() > limits.max_body_bytes) std::abort();
    if (e.request.head.size() < 4 || e.request.head.compare(e.request.head.size() - 4, 4, "\r\n\r\n") != 0) std::abort();
    const std::string again = e.request.head + e.request.body;
    const auto reframed = frame_all(roomier, again, [] { return size_t{0}; });
    if (reframed.size() != 1 || reframed[0].failed || reframed[0].request.head != e.request.head ||
        reframed[0].request.body != e.request.body)
      std::abort();
  }
  return 0;
}
