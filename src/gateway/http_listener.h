// HttpListener: the gateway's httplib::Server, hardened against hostile clients where httplib
// 0.11.4 (Debian 12's, a compiled library whose limits cannot be changed by defines) is not.
//
//   - The listening socket is bound with SO_REUSEADDR only, never SO_REUSEPORT, so a second
//     server on a port in use fails to bind instead of silently splitting the traffic.
//   - The listen backlog is SOMAXCONN, not httplib's 5, so a burst of connects is queued.
//   - httplib's accept loop hands each socket to a ConnectionReader (one thread, epoll) instead of
//     a thread: requests are received there, framed strictly (RequestFramer: head caps, body cap
//     for chunked bodies too, deadlines, connection caps) and only a complete request goes to one
//     of `worker_threads` threads, which runs httplib's routing on it from memory and writes the
//     response to the socket. A kept-alive connection then goes back to the reader, so neither a
//     slow client nor an idle one holds a thread; pipelined requests are answered in order.
//
// Routing, handlers and responses are httplib's; so are the write timeout and the keep-alive
// request count. The body limit is set_payload_max_length()'s, enforced before httplib reads.
// Once a request with a body of kLargeRequestBytes or more is answered, the allocator's free
// memory is given back to the system (malloc_trim).
#pragma once

#include <httplib.h>

#include <memory>
#include <string>

#include "base/result.h"
#include "gateway/connection_limits.h"
#include "gateway/connection_reader.h"
#include "gateway/head_limits.h"

namespace omni::gateway {

class HttpListener final : public httplib::Server {
 public:
  HttpListener(HeadLimits head_limits, ConnectionLimits connection_limits);
  ~HttpListener() override;

  // Threads that answer complete requests (a streamed generation holds one while it streams).
  // Takes effect at the next listen.
  void set_worker_threads(size_t n) { worker_threads_ = n; }

  static constexpr size_t kLargeRequestBytes = 1 << 20;

  // Binds and listens on host:port (0: any free port); returns the port. AlreadyExists when the
  // address is in use (another gateway, say); Unavailable when it cannot be bound otherwise or the
  // connection reader cannot be created. Call after set_payload_max_length(), then serve with
  // listen_after_bind() (httplib's listen() would bypass it, and closes every connection).
  Result<int> bind_listener(const std::string& host, int port);
  // Before bind_listener(): see ConnectionReader::set_head_screen.
  void set_head_screen(ConnectionReader::HeadScreen screen) { head_screen_ = std::move(screen); }

 private:
  class Serving;

  bool process_and_close_socket(socket_t sock) override;
  void answer(std::unique_ptr<ClientConnection> connection);

  HeadLimits head_limits_;
  ConnectionLimits connection_limits_;
  size_t worker_threads_ = 16;
  socket_t listening_ = INVALID_SOCKET;  // the socket bind_to_port() made, for its backlog
  std::unique_ptr<ConnectionReader> reader_;
  ConnectionReader::HeadScreen head_screen_;
  Serving* serving_ = nullptr;           // while listen_after_bind() runs
};

}  // namespace omni::gateway
