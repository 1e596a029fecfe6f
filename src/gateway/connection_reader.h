// ConnectionReader: receives requests for the gateway on one thread (epoll), so that no thread is
// held by a client that is slow to send, or idle between requests.
//
// It owns every accepted connection while a request arrives on it or it waits for one: bytes are
// read without blocking and fed to the connection's RequestFramer, under ConnectionLimits'
// deadlines. A complete request (head and body in memory, at most max_body_bytes) is handed to
// `dispatch` with its connection; whoever answers it gives the connection back with resume() to
// wait for the next request, or destroys it to close it.
//
// Answers it gives itself, closing the connection after each: 503 to a connection over
// max_connections or max_connections_per_ip (at accept), 408 past the head or body deadline, and
// the RequestFramer's 400/413/431/501/505, and whatever the head screen refuses (set_head_screen:
// a request refused by its head, e.g. without a valid API key, is answered before its body is read).
// A connection idle past idle_timeout is closed silently.
// Memory: at most max_connections requests in memory, each bounded by FramingLimits.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/result.h"
#include "gateway/client_connection.h"
#include "gateway/connection_limits.h"
#include "gateway/request_framer.h"

namespace omni::gateway {

class ConnectionReader {
 public:
  // Runs on the reader's thread: must not block (hand the connection to another thread).
  using Dispatch = std::function<void(std::unique_ptr<ClientConnection>)>;
  // Looks at a request's head (RequestFramer::head()) while its body is still to come; returns a
  // complete HTTP response to refuse it with (the connection is closed after it), or nothing to
  // read the body. Runs on the reader's thread: must be quick and must not block.
  using HeadScreen = std::function<std::optional<std::string>(std::string_view head)>;

  // Unavailable when the process cannot create an epoll or event descriptor.
  static Result<std::unique_ptr<ConnectionReader>> create(ConnectionLimits limits, FramingLimits framing,
                                                          Dispatch dispatch);
  ~ConnectionReader();

  // Starts and stops the reading thread. stop() closes every connection the reader holds; the
  // ones being answered are closed when they are given back. It may be started again.
  void start();
  // Before start(): screens the head of every request that has a body still to come.
  void set_head_screen(HeadScreen screen) { screen_ = std::move(screen); }
  void stop();

  // A newly accepted socket (any thread): admitted under the limits, or answered 503 and closed.
  void adopt(int fd);
  // A connection whose answer was sent and that stays open (any thread). Closed when stopped.
  void resume(std::unique_ptr<ClientConnection> connection);

 private:
  ConnectionReader(ConnectionLimits limits, FramingLimits framing, Dispatch dispatch, int epoll_fd, int wake_fd);

  struct Held {
    std::unique_ptr<ClientConnection> connection;
    bool draining = false;  // answered with an error: the rest of what it sends is read and dropped
    size_t drain_left = 0;
  };

  void run();
  void take_inbox();
  void hold(std::unique_ptr<ClientConnection> connection);
  void on_readable(int fd);
  // Feeds `bytes` to the connection; false when it left the reader (dispatched or closing).
  bool advance(Held& held, std::string_view bytes);
  void refuse(Held& held, int status, const std::string& reason);
  void refuse_with(Held& held, const std::string& response);
  void close_held(int fd);
  void sweep_deadlines();

  const ConnectionLimits limits_;
  const FramingLimits framing_;
  const Dispatch dispatch_;
  HeadScreen screen_;
  const std::shared_ptr<ConnectionSlots> slots_;
  const int epoll_fd_;
  const int wake_fd_;  // an eventfd: written to wake the thread for the inbox or stop

  std::mutex mutex_;
  bool running_ = false;
  std::vector<std::unique_ptr<ClientConnection>> inbox_;  // adopted or resumed, not yet held

  std::thread thread_;
  std::map<int, Held> held_;  // the reader thread's own
};

}  // namespace omni::gateway
