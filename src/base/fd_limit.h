// The process's limit on open file descriptors. Every listener (node, relay, gateway) holds one
// descriptor per connection, and the default soft limit (often 1024, or whatever a shell's
// `ulimit -n` left) is far below what the kernel allows the process (the hard limit), so servers
// raise the soft limit to the hard one at start. Running out anyway is handled by each accept loop
// (it backs off and keeps serving); this only makes it rarer.
#pragma once

#include <cstdint>

#include "base/result.h"

namespace omni {

struct FdLimit {
  uint64_t soft = 0;  // the limit in force
  uint64_t hard = 0;  // the most the soft limit may be raised to without privileges
};

// Raises the soft RLIMIT_NOFILE to the hard limit (no change when it is there already) and returns
// the limits now in force. Errors: getrlimit/setrlimit failed (errno_error codes).
Result<FdLimit> raise_fd_limit();

}  // namespace omni
