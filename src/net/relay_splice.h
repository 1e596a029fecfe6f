// Splice: copies bytes both ways between two streams until the conversation is over. The relay
// uses it between a client and a node's dial-back connection, and a relayed node between that
// connection and its own listener. It never looks at the bytes (they are TLS records).
//
// An end of input on one side is passed on as shutdownWrite() of the other (half-close). The
// splice ends when both directions have ended; when one has ended and the other has not within
// `linger` (a peer that never closes its side must not hold the connection: its partner is gone);
// when either side fails (the other is then dropped); when no byte has moved either way for
// `idle_timeout`; and, with a `first_byte_timeout`, when side b has sent nothing within it (a
// client that connects and stays silent). Never fails: the result says how it ended. Runs on the
// calling thread's event loop; the streams are owned by the splice, and closed when it ends.
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

struct SpliceOptions {
  kj::Duration idle_timeout = 300 * kj::SECONDS;
  kj::Duration linger = 2 * kj::SECONDS;          // after one direction's end, for the other's
  kj::Duration first_byte_timeout = 0 * kj::SECONDS;  // for b's first byte; 0: none
};

struct SpliceResult {
  uint64_t a_to_b = 0;
  uint64_t b_to_a = 0;
  // "closed" (both sides ended), "idle for N s", "one side closed, the other did not within N s",
  // "no first byte within N s", or the failure's description.
  std::string ended;
};

kj::Promise<SpliceResult> splice(kj::Own<kj::AsyncIoStream> a, kj::Own<kj::AsyncIoStream> b, kj::Timer& timer,
                                 const SpliceOptions& options,
                                 std::shared_ptr<SpliceCounters> counters = std::make_shared<SpliceCounters>());

}  // namespace omni::net
