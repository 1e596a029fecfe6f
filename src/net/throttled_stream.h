// The node's bandwidth caps (bandwidth.h) applied to one connection: a stream that moves bytes only
// as fast as the node's shared token buckets allow. It wraps the TCP stream under TLS, so the caps
// count what goes over the wire (TLS records, not only payload).
//
// Writes are cut into pieces of a fraction of the burst and each piece waits for its tokens before
// it is handed to the socket; a read takes at most a piece and waits for its tokens before it
// returns, so a capped node reads no further while over its download rate and TCP's flow control
// slows the sender. Lives on the event loop of the stream it wraps.
#pragma once

#include <kj/async-io.h>
#include <kj/timer.h>

#include <memory>

#include "net/bandwidth.h"

namespace omni::net {

// `stream` limited by `bandwidth`; `stream` itself when `bandwidth` is null or caps nothing.
kj::Own<kj::AsyncIoStream> throttle(kj::Own<kj::AsyncIoStream> stream, std::shared_ptr<Bandwidth> bandwidth,
                                    kj::Timer& timer);

}  // namespace omni::net
