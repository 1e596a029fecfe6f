// Splice: copies bytes both ways between two streams until the conversation is over. The relay
// uses it between a client and a node's dial-back connection, and a relayed node between that
// connection and its own listener. It never looks at the bytes (they are TLS records).
//
// An end of input on one side is passed on as shutdownWrite() of the other (half-close), and the
// splice ends when both directions have ended, when either side fails (the other is then dropped),
// or when no byte has moved either way for `idle_timeout`. Never fails: the result says how it
// ended. Runs on the calling thread's event loop; the streams are owned by the splice.
#pragma once

#include <kj/async-io.h>
#include <kj/timer.h>

#include <cstdint>
#include <memory>
#include <string>

namespace omni::net {

// Live byte counts, readable (same thread) while the splice runs.
struct SpliceCounters {
  uint64_t a_to_b = 0;
  uint64_t b_to_a = 0;
};

struct SpliceResult {
  uint64_t a_to_b = 0;
  uint64_t b_to_a = 0;
  std::string ended;  // "closed" (both sides ended), "idle for N s", or the failure's description
};

kj::Promise<SpliceResult> splice(kj::Own<kj::AsyncIoStream> a, kj::Own<kj::AsyncIoStream> b, kj::Timer& timer,
                                 kj::Duration idle_timeout,
                                 std::shared_ptr<SpliceCounters> counters = std::make_shared<SpliceCounters>());

}  // namespace omni::net
