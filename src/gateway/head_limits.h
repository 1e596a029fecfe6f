// HeadLimits: how large a request's head (request line and headers) the gateway reads. A head
// over either limit is answered 431 and its connection closed, before more of it is held.
#pragma once

#include <cstddef>

namespace omni::gateway {

struct HeadLimits {
  size_t max_header_lines = 100;     // header lines, not counting the request line
  size_t max_head_bytes = 16 << 10;  // request line, headers and their line ends
};

}  // namespace omni::gateway
