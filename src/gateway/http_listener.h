// HttpListener: the gateway's httplib::Server, hardened against hostile clients where httplib
// 0.11.4 (Debian 12's, a compiled library whose limits cannot be changed by defines) is not.
//
//   - The listening socket is bound with SO_REUSEADDR only, never SO_REUSEPORT, so a second
//     server on a port in use fails to bind instead of silently splitting the traffic.
//   - The listen backlog is SOMAXCONN, not httplib's 5, so a burst of connects is queued.
//   - Each request's head (request line and headers) is capped in lines and bytes while it is
//     read: a client over the cap gets 431 and its connection is closed, so no header flood is
//     ever held in memory. httplib itself caps neither.
//
// Connections are otherwise served as httplib serves them (keep-alive, timeouts, routing).
#pragma once

#include <httplib.h>

#include <string>

#include "base/result.h"
#include "gateway/head_limits.h"

namespace omni::gateway {

class HttpListener final : public httplib::Server {
 public:
  explicit HttpListener(HeadLimits limits);

  // Binds and listens on host:port (0: any free port); returns the port. AlreadyExists when the
  // address is in use (another gateway, say); Unavailable when it cannot be bound otherwise.
  Result<int> bind_listener(const std::string& host, int port);

 private:
  bool process_and_close_socket(socket_t sock) override;

  HeadLimits limits_;
  socket_t listening_ = INVALID_SOCKET;  // the socket bind_to_port() made, for its backlog
};

}  // namespace omni::gateway
