// ConnectionLimits: how many connections the gateway holds and how long a client may take to send
// a request. Over a cap a new connection is answered 503 and closed at once; past a deadline the
// client gets 408 and the connection is closed.
#pragma once

#include <chrono>
#include <cstddef>

namespace omni::gateway {

struct ConnectionLimits {
  size_t max_connections = 512;                   // open at once, all clients together
  size_t max_connections_per_ip = 64;             // open at once from one client address
  // The whole request head: from the accept, or on a kept-alive connection from the request's first byte.
  std::chrono::milliseconds head_timeout{10000};
  std::chrono::milliseconds body_timeout{60000};  // the whole body, once the head is in
  std::chrono::milliseconds idle_timeout{5000};   // a kept-alive connection waiting for a request
};

}  // namespace omni::gateway
