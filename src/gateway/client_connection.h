// ClientConnection: one accepted client socket and what has been read from it. At any time it is
// owned by exactly one of the ConnectionReader (while a request arrives or the connection idles)
// or a worker (while the request is answered); destroying it closes the socket and gives its place
// back to the ConnectionSlots it was admitted by.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "gateway/connection_limits.h"
#include "gateway/request_framer.h"

namespace omni::gateway {

// How many connections are open, in all and per client address, against ConnectionLimits.
// Thread-safe: the acceptor takes places, whichever thread closes a connection gives them back.
class ConnectionSlots {
 public:
  explicit ConnectionSlots(const ConnectionLimits& limits) : limits_(limits) {}
  // Whether a connection from `ip` fits; if so its place is taken until release(ip).
  bool try_take(const std::string& ip);
  void release(const std::string& ip);

 private:
  ConnectionLimits limits_;
  std::mutex mutex_;
  size_t total_ = 0;
  std::map<std::string, size_t> per_ip_;
};

struct ClientConnection {
  ClientConnection(int fd, std::string ip, int port, const FramingLimits& framing, std::shared_ptr<ConnectionSlots> slots)
      : fd(fd), ip(std::move(ip)), port(port), framer(framing), slots(std::move(slots)) {}
  ~ClientConnection();
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  const int fd;                 // non-blocking
  const std::string ip;         // the client's address, numeric
  const int port;
  RequestFramer framer;
  std::string unread;           // bytes received past the request being answered (pipelined)
  FramedRequest request;        // the complete request a worker answers
  size_t requests_served = 0;
  bool continue_sent = false;   // "100 Continue" went out for the current request
  enum class Awaiting { NextRequest, Head, Body } awaiting = Awaiting::Head;
  std::chrono::steady_clock::time_point deadline;  // of what it awaits
  std::shared_ptr<ConnectionSlots> slots;
};

}  // namespace omni::gateway
